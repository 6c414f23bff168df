"""ECS: read a service's deployments, decide what they mean (pure), and wait on them.

`observe` is the heart: it turns one DescribeServices answer into an Outcome for the
deployment we started. "Stable" is not success: a circuit-breaker rollback leaves a
stable service running the OLD revision, and that is a failed deploy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .arns import short
from .clients import THROTTLED, Clients, aws_errors
from .errors import NotFound, Transient
from .output import Output
from .transient import outlast


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


@dataclass(frozen=True)
class Outcome:
    state: str  # "succeeded" | "failed" | "replaced" | "rolling"
    reason: str = ""
    # When ECS itself rolled back (circuit breaker): its deployment and revision.
    rolled_back_by_ecs: Deployment | None = None
    # When another deploy (not ECS) replaced ours: its deployment. Never undone by us.
    replaced_by: Deployment | None = None

    @property
    def done(self) -> bool:
        return self.state != "rolling"


def same_revision(a: str, b: str) -> bool:
    """ARNs and family:revision forms name the same revision."""
    return short(a) == short(b)


def deployments(service: dict[str, Any]) -> list[Deployment]:
    return [Deployment.from_api(d) for d in service.get("deployments", [])]


def observe(
    service: dict[str, Any],
    deployment_id: str,
    target: str,
    previous: str | None = None,
    since: datetime | None = None,
) -> Outcome:
    """What one DescribeServices answer says about our deployment. Pure.

    `previous` is the revision that had COMPLETED before our update, `since` when our
    deployment started (ECS's clock). Another PRIMARY is ECS's rollback when ECS marked the
    failure (our deployment FAILED, or a rollback event since we started) and it runs an
    earlier revision: `previous`, any revision registered before `target`, or `target`
    itself — then ECS returns to the very revision we were putting back (our own
    rollback's target), and we follow it to its end. Any other PRIMARY is a deploy we did
    not start, and "replaced" means: never roll back over it.
    """
    if service.get("status") not in (None, "ACTIVE"):
        return Outcome("failed", f"the service is {service.get('status')}")
    current = deployments(service)
    ours = next((d for d in current if d.id == deployment_id), None)
    primary = next((d for d in current if d.status == "PRIMARY"), None)
    if primary is not None and primary.id != deployment_id:
        if ours is not None and ours.rollout_state == "COMPLETED":
            # Ours finished before the next deploy began (a --wait behind us, say): done.
            return Outcome(
                "succeeded",
                f"deployment {deployment_id} COMPLETED; deployment {primary.id} of "
                f"{short(primary.task_definition)} has started since",
            )
        by_ecs = is_ecs_rollback(service, ours, primary, previous, target, since)
        if by_ecs and same_revision(primary.task_definition, target):
            return _following(primary, len(current))
        if by_ecs:
            if ours is not None and ours.rollout_state == "FAILED" and ours.rollout_reason:
                return Outcome("failed", ours.rollout_reason, primary)
            return Outcome(
                "failed",
                f"deployment {deployment_id} {'is gone' if ours is None else 'FAILED'} "
                "(ECS's deployment circuit breaker)",
                primary,
            )
        return Outcome(
            "replaced",
            f"deployment {deployment_id} was replaced by deployment {primary.id} of "
            f"{short(primary.task_definition)}, which we did not start",
            replaced_by=primary,
        )
    if ours is None:
        return Outcome("failed", f"deployment {deployment_id} is gone and no deployment is PRIMARY")
    if ours.rollout_state == "FAILED":
        return Outcome("failed", ours.rollout_reason or f"deployment {ours.id} FAILED")
    if ours.status != "PRIMARY":
        return Outcome("failed", f"deployment {ours.id} is {ours.status}, no longer PRIMARY")
    if ours.rollout_state == "COMPLETED":
        return Outcome("succeeded", ours.rollout_reason)
    if (
        ours.rollout_state is None
        and len(current) == 1
        and ours.running == ours.desired
        and ours.pending == 0
    ):
        # No rollout state (no circuit breaker): the seed's test, stale deployments gone.
        return Outcome("succeeded", "no stale deployments left; running == desired")
    return Outcome("rolling")


def _following(ecs_deployment: Deployment, listed: int) -> Outcome:
    """ECS's own rollback runs the revision we were waiting for: its end is ours. Pure."""
    d = ecs_deployment
    name = f"ECS's rollback deployment {d.id} of {short(d.task_definition)}"
    if d.rollout_state == "COMPLETED":
        return Outcome("succeeded", f"{name} COMPLETED")
    if d.rollout_state == "FAILED":
        return Outcome("failed", d.rollout_reason or f"{name} FAILED")
    if d.rollout_state is None and listed == 1 and d.running == d.desired and d.pending == 0:
        return Outcome("succeeded", f"{name}: no stale deployments left; running == desired")
    return Outcome("rolling")


# What ECS writes in the service's events when its circuit breaker rolls back.
_ROLLBACK_EVENT_WORDS = ("rolling back to deployment", "circuit breaker")


def is_ecs_rollback(
    service: dict[str, Any],
    ours: Deployment | None,
    primary: Deployment,
    previous: str | None,
    target: str,
    since: datetime | None,
) -> bool:
    """Did ECS (not a person or another pipeline) make `primary` PRIMARY instead of ours?

    ECS's circuit breaker returns to the last deployment that COMPLETED by its own account
    (which need not be the revision we saw complete: any earlier one, or the one our
    rollback targets), marks ours FAILED and writes "rolling back to deployment ..." in
    the events. A deploy we did not start shows none of that, even when it deploys the
    same earlier revision; and ECS never returns to a revision registered after ours.
    """
    revision = primary.task_definition
    if not (
        (previous is not None and same_revision(revision, previous))
        or same_revision(revision, target)
        or registered_before(revision, target)
    ):
        return False
    if ours is not None and ours.rollout_state == "FAILED":
        return True
    for event in service.get("events", []):
        message = str(event.get("message", "")).lower()
        if any(words in message for words in _ROLLBACK_EVENT_WORDS) and _not_before(
            event.get("createdAt"), since
        ):
            return True
    return False


def registered_before(a: str, b: str) -> bool:
    """Revision `a` of the same family as `b` with a lower number. Pure."""
    (family_a, _, number_a), (family_b, _, number_b) = short(a).rpartition(":"), short(b).rpartition(":")
    return (
        family_a == family_b and number_a.isdigit() and number_b.isdigit() and int(number_a) < int(number_b)
    )


def _not_before(at: Any, since: datetime | None) -> bool:
    if since is None or not isinstance(at, datetime):
        return True
    try:
        return at >= since
    except TypeError:  # one naive, one aware: cannot tell, so count it
        return True


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


@dataclass
class Watcher:
    """Prints deployments when they change and each service event once."""

    out: Output
    seen_events: set[str] = field(default_factory=set)
    last_lines: tuple[str, ...] = ()

    def prime(self, service: dict[str, Any]) -> None:
        self.seen_events.update(e["id"] for e in service.get("events", []))

    def show(self, service: dict[str, Any]) -> None:
        lines = tuple(d.line() for d in deployments(service))
        if lines != self.last_lines:
            self.last_lines = lines
            for line in lines:
                self.out.detail(line)
        for event in reversed(service.get("events", [])):  # the API lists newest first
            if event["id"] not in self.seen_events:
                self.seen_events.add(event["id"])
                self.out.detail(f"event: {event['message']}")


def wait(
    clients: Clients,
    cluster: str,
    service: str,
    deployment_id: str,
    target: str,
    watcher: Watcher,
    timeout: float,
    max_interval: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    previous: str | None = None,
    since: datetime | None = None,
) -> Outcome:
    """Poll DescribeServices until the outcome is known, paced by what the service says
    (pipeline/pace.py: slowly while completion is impossible, quickly when it is near).

    Throttling is not an outcome: boto3 retries it first, and if it still fails the
    poll is simply tried again on the next interval, within the same overall timeout.
    Nor is a transient fault (connection lost, timeout, 5xx): it is retried with backoff
    until the timeout (pipeline/transient.py), saying so.
    """
    from botocore.exceptions import ClientError

    from .fleet import drain_seconds
    from .pace import Pace

    pace = Pace(slow=max_interval, drain_lookup=lambda answer: drain_seconds(clients, answer))
    started = time.monotonic()
    while True:  # a plain loop: tenacity's import alone cost a deploy ~50 ms
        polled_at, wall = time.monotonic(), datetime.now(UTC)
        answer: dict[str, Any] | None = None
        try:
            answer = describe_service(clients, cluster, service, handled=THROTTLED)
        except ClientError:  # only the THROTTLED codes get here
            watcher.out.detail("DescribeServices throttled; polling again")
        except Transient as fault:  # a network blip is no verdict: ride it out until the deadline
            answer = outlast(
                lambda: describe_service(clients, cluster, service, handled=THROTTLED),
                started + timeout,
                watcher.out.detail,
                fault,
                sleep=sleep,
            )
        if answer is not None:
            watcher.show(answer)
            outcome = observe(answer, deployment_id, target, previous, since)
            if outcome.done:
                return outcome
        if time.monotonic() - started >= timeout:
            return Outcome("failed", f"timed out after {timeout:g}s waiting for deployment {deployment_id}")
        pause = pace.next(answer, deployment_id, polled_at, wall)
        sleep(min(pause, max(0.0, started + timeout - time.monotonic())))


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
    return {
        "cluster": cluster,
        "service": service,
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
