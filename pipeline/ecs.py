"""ECS, read: a service's deployments, the revision to return to, batched DescribeServices, task definitions.

What an answer means for a rollout we started is the strategy's to say
(pipeline/rollout/); this module reads and shapes what ECS answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .arns import short
from .clients import Clients, aws_errors
from .errors import NotFound

BATCH = 10  # ECS's limit of services per DescribeServices call


@dataclass(frozen=True)
class Deployment:
    id: str
    status: str  # PRIMARY | ACTIVE | INACTIVE
    task_definition: str
    desired: int
    running: int
    pending: int
    failed_tasks: int
    rollout_state: str | None  # IN_PROGRESS | COMPLETED | FAILED, absent without circuit breaker
    rollout_reason: str
    created_at: datetime | None = None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Deployment:
        return cls(
            id=d["id"],
            status=d.get("status", ""),
            task_definition=d.get("taskDefinition", ""),
            desired=d.get("desiredCount", 0),
            running=d.get("runningCount", 0),
            pending=d.get("pendingCount", 0),
            failed_tasks=d.get("failedTasks", 0),
            rollout_state=d.get("rolloutState"),
            rollout_reason=d.get("rolloutStateReason", ""),
            created_at=d.get("createdAt") if isinstance(d.get("createdAt"), datetime) else None,
        )

    def line(self) -> str:
        state = f" {self.rollout_state}" if self.rollout_state else ""
        failed = f" failed={self.failed_tasks}" if self.failed_tasks else ""
        return (
            f"{self.status:<7}{state} {short(self.task_definition)} running={self.running}/{self.desired} "
            f"pending={self.pending}{failed} ({self.id})"
        )


def same_revision(a: str, b: str) -> bool:
    """ARNs and family:revision forms name the same revision."""
    return short(a) == short(b)


def deployments(service: dict[str, Any]) -> list[Deployment]:
    return [Deployment.from_api(d) for d in service.get("deployments", [])]


def in_progress(service: dict[str, Any]) -> list[Deployment]:
    """Deployments still rolling out: IN_PROGRESS, or (without rollout state) any stale one
    still listed beside the PRIMARY. Empty when the service is steady. Pure."""
    current = deployments(service)
    rolling = [d for d in current if d.rollout_state == "IN_PROGRESS"]
    if rolling:
        return rolling
    if len(current) > 1:
        return [d for d in current if d.rollout_state != "COMPLETED"] or current[1:]
    return []


def last_known_good(service: dict[str, Any]) -> str | None:
    """The revision that was running and COMPLETED before a deploy (not "revision - 1").

    A deployment whose rollout COMPLETED; without rollout state, a lone steady PRIMARY.
    None when the service never finished a deployment: nothing safe to return to.
    """
    current = deployments(service)
    for d in current:
        if d.rollout_state == "COMPLETED":
            return d.task_definition
    if len(current) == 1 and current[0].rollout_state is None and current[0].running == current[0].desired:
        return current[0].task_definition
    return None


def describe_service(
    clients: Clients, cluster: str, service: str, handled: tuple[str, ...] = ()
) -> dict[str, Any]:
    ecs = clients.aws("ecs")
    with aws_errors("ecs:DescribeServices", handled=("ClusterNotFoundException", *handled)):
        try:
            found = ecs.describe_services(cluster=cluster, services=[service])
        except ecs.exceptions.ClusterNotFoundException:
            raise NotFound(
                f"ECS cluster {cluster!r} not found; create it with `invoke setup` "
                f"(or `aws ecs create-cluster --cluster-name {cluster}`)"
            ) from None
    services = [s for s in found.get("services", []) if s.get("status") != "INACTIVE"]
    if not services:
        raise NotFound(
            f"ECS service {service!r} not found in cluster {cluster!r}; create it with `invoke setup`"
        )
    return dict(services[0])


def batches(pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(cluster, up to 10 service names) per DescribeServices call, in first-seen order. Pure."""
    by_cluster: dict[str, list[str]] = {}
    for cluster, service in pairs:
        names = by_cluster.setdefault(cluster, [])
        if service not in names:
            names.append(service)
    return [
        (cluster, names[i : i + BATCH])
        for cluster, names in by_cluster.items()
        for i in range(0, len(names), BATCH)
    ]


def describe_many(
    clients: Clients, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any] | None]:
    """Every (cluster, service) → its DescribeServices answer, None where it is missing: one
    call per cluster per 10 services (ECS's limit). Throttling past botocore's retries raises
    Throttled (the caller decides what a lost round means), anything else one line."""
    client = clients.aws("ecs")
    found: dict[tuple[str, str], dict[str, Any] | None] = {pair: None for pair in pairs}
    for cluster, names in batches(pairs):
        with aws_errors("ecs:DescribeServices", handled=("ClusterNotFoundException",)):
            try:
                answer = client.describe_services(cluster=cluster, services=names)
            except client.exceptions.ClusterNotFoundException:
                continue
        for service in answer.get("services", []):
            if service.get("status") != "INACTIVE":
                found[(cluster, service["serviceName"])] = service
    return found


def drain_seconds(clients: Clients, service: dict[str, Any]) -> float:
    """The longest deregistration delay of the service's target groups (ELB's default 300 s);
    0 when it cannot be read — polling then just stays on the fast side."""
    from botocore.exceptions import BotoCoreError, ClientError

    longest = 0.0
    for balancer in service.get("loadBalancers", []):
        if not balancer.get("targetGroupArn"):
            continue
        try:
            attributes = clients.aws("elbv2").describe_target_group_attributes(
                TargetGroupArn=balancer["targetGroupArn"]
            )["Attributes"]
        except (BotoCoreError, ClientError):
            continue
        for attribute in attributes:
            if attribute["Key"] == "deregistration_delay.timeout_seconds":
                longest = max(longest, float(attribute["Value"]))
    return longest


def stopped_tasks(
    clients: Clients, cluster: str, service: str, target: str, limit: int = 5
) -> list[dict[str, Any]]:
    """The service's stopped tasks of the revision `target` (DescribeTasks shapes)."""
    ecs = clients.aws("ecs")
    with aws_errors("ecs:ListTasks"):
        arns = ecs.list_tasks(cluster=cluster, serviceName=service, desiredStatus="STOPPED").get(
            "taskArns", []
        )
    if not arns:
        return []
    with aws_errors("ecs:DescribeTasks"):
        tasks = ecs.describe_tasks(cluster=cluster, tasks=arns[:100]).get("tasks", [])
    return [t for t in tasks if same_revision(t.get("taskDefinitionArn", ""), target)][:limit]


def task_reason(task: dict[str, Any]) -> str:
    """Why one task stopped: stoppedReason and each container's exit. Pure.

    A container without exitCode never ran (a task that failed to start: a secret it could
    not read, an image it could not pull): it says so, never a made-up exit code."""
    containers = ", ".join(
        f"{c.get('name')}: "
        + (f"exit {c['exitCode']}" if c.get("exitCode") is not None else "never ran")
        + (f" ({c['reason']})" if c.get("reason") else "")
        for c in task.get("containers", [])
    )
    return f"task {short(task['taskArn'])}: {task.get('stoppedReason', 'stopped')}; {containers}"


@dataclass(frozen=True)
class Revision:
    """A registered task definition and its tags."""

    definition: dict[str, Any]
    tags: dict[str, str]

    @property
    def raw_tags(self) -> list[dict[str, str]]:
        return [{"key": k, "value": v} for k, v in self.tags.items()]


def describe_revision(clients: Clients, arn: str) -> Revision:
    with aws_errors("ecs:DescribeTaskDefinition"):
        found = clients.aws("ecs").describe_task_definition(taskDefinition=arn, include=["TAGS"])
    return Revision(found["taskDefinition"], {t["key"]: t["value"] for t in found.get("tags", [])})


def status(clients: Clients, cluster: str, service: str, events: int = 5) -> dict[str, Any]:
    """What runs where: revision, image, sha, rollout state, counts, last events."""
    from .taskdef import TAG_SHA, TAG_VERIFIED

    answer = describe_service(clients, cluster, service)
    arn = answer.get("taskDefinition", "")
    revision = describe_revision(clients, arn)
    tags = revision.tags
    primary = next((d for d in deployments(answer) if d.status == "PRIMARY"), None)
    strategy = (answer.get("deploymentConfiguration") or {}).get("strategy") or "ROLLING"
    current = answer.get("currentServiceDeployment")
    found = None
    if current and strategy != "ROLLING":  # the native strategies' progress lives there
        with aws_errors("ecs:DescribeServiceDeployments"):
            listed = clients.aws("ecs").describe_service_deployments(serviceDeploymentArns=[current])
        found = next(iter(listed.get("serviceDeployments", [])), None)
    return {
        "cluster": cluster,
        "service": service,
        "strategy": strategy,
        "serviceDeployment": None
        if found is None
        else {
            "arn": found.get("serviceDeploymentArn"),
            "status": found.get("status"),
            "lifecycleStage": found.get("lifecycleStage"),
            "statusReason": found.get("statusReason"),
            "rollbackReason": (found.get("rollback") or {}).get("reason"),
        },
        "taskDefinition": arn,
        "revision": short(arn),
        "images": [c["image"] for c in revision.definition.get("containerDefinitions", [])],
        "sha": tags.get(TAG_SHA),
        "verifiedAt": tags.get(TAG_VERIFIED),
        "rolloutState": primary.rollout_state if primary else None,
        "runningCount": answer.get("runningCount", 0),
        "desiredCount": answer.get("desiredCount", 0),
        "pendingCount": answer.get("pendingCount", 0),
        "deployments": [d.line() for d in deployments(answer)],
        "events": [
            {"at": _iso(e.get("createdAt")), "message": e["message"]}
            for e in answer.get("events", [])[:events]
        ],
    }


def _iso(at: Any) -> str | None:
    """An event's time for scripts: ISO 8601 in UTC, to the second."""
    return at.astimezone(UTC).isoformat(timespec="seconds") if isinstance(at, datetime) else None


@dataclass(frozen=True)
class Verified:
    """What the rollback rule needs of one revision: its number and pipeline tags."""

    arn: str
    number: int
    verified_at: datetime | None  # pipeline:verified-at: it rolled out and passed its smoke test
    created_at: datetime | None  # pipeline:created-at: when it was registered


def parse_stamp(value: str | None) -> datetime | None:
    """A tag's ISO time, or None when absent or not a time (tags are free text)."""
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo else None


def goes_back(running: Verified, candidate: Verified) -> bool:
    """The rollback rule. Pure.

    A candidate is "back" from the running revision when it was verified and is older:
    a lower revision number, or verified before the running revision was registered.
    So a rollback never returns to a revision that was verified after the running one
    appeared, and running it twice goes further back instead of forward again.
    """
    if candidate.verified_at is None or candidate.number == running.number:
        return False
    if candidate.number < running.number:
        return True
    return running.created_at is not None and candidate.verified_at < running.created_at
