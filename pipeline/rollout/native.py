"""BLUE_GREEN, LINEAR and CANARY: ECS's native strategies, followed through the service deployment.

ECS carries these deployments itself through its lifecycle stages (green tasks beside
blue, test traffic to green, production traffic to green — at once, in linear steps, or a
canary share then all — a bake, then clean-up) and says where it is in
DescribeServiceDeployments: status, lifecycleStage, the traffic weights, rollback{reason}
and each hook's status. The engine reads that once per round beside DescribeServices, and
`judge` (pure) turns it into an Outcome.

The smoke gate: with a PAUSE hook at POST_TEST_TRAFFIC_SHIFT, the deployment waits there
while green answers on the test listener only. The engine then smoke-tests green through
the test listener and continues (CONTINUE) or sends it back (ROLLBACK), so production
traffic never reaches a revision that fails it. A hook's own timeout action is ROLLBACK
(`invoke setup` sets it so): a pipeline that dies at the gate never promotes an unchecked
revision. A way back (rollback) passes any hook without a gate: it returns to a revision
that was verified before.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from .. import ecs, smoke
from ..clients import Clients, aws_errors
from ..context import Context
from ..errors import PipelineError
from .model import Outcome, StartedNothing, State, Unit, Watch, Way

GATE_STAGE = "POST_TEST_TRAFFIC_SHIFT"
ROLLING_BACK = ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
GOING = ("PENDING", "IN_PROGRESS")


class Native:
    """One of ECS's native strategies (the Strategy protocol in rollout/strategy.py); ECS
    runs the stages, so the three differ here only in name."""

    reads_service_deployments = True

    def __init__(self, name: str) -> None:
        self.name = name

    def start(self, clients: Clients, unit: Unit) -> Watch:
        """UpdateService to the unit's revision; the Watch of the service deployment ECS started,
        with the gate (the test listener's URL and the smoke settings) when the unit has one."""
        arn, since = _update(clients, unit, unit.arn)
        return Watch(
            unit.key,
            unit.cluster,
            unit.service,
            unit.arn,
            arn,
            unit.previous,
            since,
            self.name,
            gate_url=unit.test_url,
            gate_smoke=unit.smoke if unit.url or unit.test_url else None,
            production_url=unit.url,
        )

    def observe(
        self, answer: dict[str, Any], watch: Watch, deployment: dict[str, Any] | None = None
    ) -> Outcome:
        return judge(answer, deployment, watch)

    def recover(
        self, clients: Clients, unit: Unit, outcome: Outcome, allowed: bool
    ) -> tuple[Way, Watch] | None:
        """The way back: ECS's own rollback of the service deployment when one runs (the gate's
        ROLLBACK, a failed health check, a hook's timeout); while it is still going forward, a
        StopServiceDeployment(ROLLBACK) (traffic back to blue at once, green stopped); after it
        finished, a deployment of the previous revision, through the same stages."""
        deployment = outcome.service_deployment or {}
        arn = str(deployment.get("serviceDeploymentArn", ""))
        status = str(deployment.get("status", ""))
        back_to = unit.previous or "?"
        if outcome.rolled_back_by_ecs is not None or status in ROLLING_BACK:
            return Way.BY_ECS, _way_back(unit, self.name, back_to, arn)
        if not allowed or unit.previous is None:
            return None
        if status in GOING and arn:
            with aws_errors("ecs:StopServiceDeployment"):
                clients.aws("ecs").stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
            return Way.ROLLED_BACK, _way_back(unit, self.name, back_to, arn)
        new, since = _update(clients, unit, unit.previous)
        return Way.ROLLED_BACK, Watch(
            unit.key, unit.cluster, unit.service, unit.previous, new, since=since, strategy=self.name
        )


def _way_back(unit: Unit, strategy: str, back_to: str, arn: str) -> Watch:
    """Waiting for a service deployment's own rollback to end."""
    return Watch(unit.key, unit.cluster, unit.service, back_to, arn, strategy=strategy, rolling_back=True)


def _update(clients: Clients, unit: Unit, arn: str) -> tuple[str, datetime | None]:
    """UpdateService to `arn`; the service deployment ECS started and when."""
    client = clients.aws("ecs")
    with aws_errors("ecs:UpdateService"):
        updated = client.update_service(cluster=unit.cluster, service=unit.service, taskDefinition=arn)[
            "service"
        ]
    current = updated.get("currentServiceDeployment")
    if current:
        return str(current), None
    # Not in the answer (it is eventually consistent): the newest one listed for the service.
    with aws_errors("ecs:ListServiceDeployments"):
        listed = client.list_service_deployments(
            cluster=unit.cluster, service=unit.service, status=["PENDING", "IN_PROGRESS"]
        )["serviceDeployments"]
    if not listed:
        raise StartedNothing(f"UpdateService started no service deployment of {ecs.short(arn)}")
    newest = max(listed, key=lambda d: d.get("createdAt") or datetime.min)
    return str(newest["serviceDeploymentArn"]), newest.get("createdAt")


def awaiting(deployment: dict[str, Any]) -> dict[str, Any] | None:
    """The PAUSE hook the service deployment waits at for an action, if any. Pure."""
    for hook in deployment.get("lifecycleHookDetails") or []:
        if hook.get("targetType") == "PAUSE" and hook.get("status") == "AWAITING_ACTION":
            return dict(hook)
    return None


def judge(service: dict[str, Any], deployment: dict[str, Any] | None, watch: Watch) -> Outcome:
    """What one read of the service and its service deployment says about ours. Pure."""
    if service.get("status") not in (None, "ACTIVE"):
        return Outcome(State.FAILED, f"the service is {service.get('status')}")
    if deployment is None:
        return Outcome(State.FAILED, f"service deployment {watch.deployment_id} is gone")
    status, name = str(deployment.get("status", "")), _name(watch.deployment_id)
    reason = str((deployment.get("rollback") or {}).get("reason") or deployment.get("statusReason") or "")
    if watch.rolling_back:  # waiting for a service deployment's own rollback
        if status == "ROLLBACK_SUCCESSFUL":
            return Outcome(State.SUCCEEDED, f"{name} ROLLBACK_SUCCESSFUL", service_deployment=deployment)
        if status in ("ROLLBACK_FAILED", "SUCCESSFUL", "STOPPED"):
            return Outcome(
                State.FAILED, f"{name} {status}: {reason}".rstrip(": "), service_deployment=deployment
            )
        return _going(deployment)
    if status == "SUCCESSFUL":
        return Outcome(State.SUCCEEDED, f"{name} SUCCESSFUL", service_deployment=deployment)
    if status in (*ROLLING_BACK, "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"):
        back = ecs.Deployment(name, "PRIMARY", watch.previous or "?", 0, 0, 0, 0, status, reason)
        why = reason or f"{name} {status}"
        return Outcome(State.FAILED, why, rolled_back_by_ecs=back, service_deployment=deployment)
    if status in ("STOPPED", "STOP_REQUESTED"):
        current = str(service.get("currentServiceDeployment") or "")
        if current and current != watch.deployment_id:
            primary = next((d for d in ecs.deployments(service) if d.status == "PRIMARY"), None)
            return Outcome(
                State.REPLACED,
                f"{name} was stopped and replaced by service deployment {_name(current)}, which we did not start",
                replaced_by=primary,
                service_deployment=deployment,
            )
        return Outcome(State.FAILED, f"{name} {status}: {reason}".rstrip(": "), service_deployment=deployment)
    return _going(deployment)


def _going(deployment: dict[str, Any]) -> Outcome:
    hook = awaiting(deployment)
    if hook is not None:
        return Outcome(State.PAUSED, f"paused at {deployment.get('lifecycleStage')}", hook=hook,
                       service_deployment=deployment)  # fmt: skip
    return Outcome(State.ROLLING, service_deployment=deployment)


def _name(arn: str) -> str:
    """A service deployment's id, from its ARN (…/cluster/service/ID)."""
    return "service deployment " + arn.rsplit("/", 1)[-1]


def line(deployment: dict[str, Any]) -> str:
    """One progress line: status, stage, traffic weights, hooks. Pure."""
    target = deployment.get("targetServiceRevision") or {}
    parts = [str(deployment.get("status", "?")), str(deployment.get("lifecycleStage", "?"))]
    production, test = (
        target.get("requestedProductionTrafficWeight"),
        target.get("requestedTestTrafficWeight"),
    )
    if production is not None or test is not None:
        parts.append(f"new revision: production {production or 0:g}%, test {test or 0:g}%")
    parts.append(f"tasks {target.get('runningTaskCount', 0)}/{target.get('requestedTaskCount', 0)}")
    hook = awaiting(deployment)
    if hook is not None:
        parts.append(
            f"hook {hook.get('hookId')} AWAITING_ACTION (on timeout: {hook.get('timeoutAction', '?')})"
        )
    return "; ".join(parts)


def at_hook(
    clients: Clients,
    watch: Watch,
    outcome: Outcome,
    say: Callable[[str], None],
    sleep: Callable[[float], None],
) -> str | None:
    """Answer the PAUSE hook the deployment waits at (once: the engine remembers). At the gate
    (POST_TEST_TRAFFIC_SHIFT, a watch with a gate URL), smoke-test the new revision through
    the test listener: CONTINUE when it passes, ROLLBACK when it fails (and why, returned).
    Any other hook, or no gate (a way back, --no-smoke): CONTINUE."""
    hook = outcome.hook or {}
    stage = str((outcome.service_deployment or {}).get("lifecycleStage", "?"))
    if watch.gate_url is None or watch.gate_smoke is None or stage != GATE_STAGE:
        say(f"hook {hook.get('hookId')} at {stage}: continuing (no smoke gate here)")
        proceed(clients, watch, hook, "CONTINUE")
        return None
    say(f"gate: smoke-testing the new revision through the test listener: {watch.gate_url}")
    try:
        smoke.check(watch.gate_url, watch.gate_smoke, say, sleep=sleep)
    except PipelineError as exc:
        say(f"gate: failed ({exc.message}); ROLLBACK: production traffic never reaches it")
        proceed(clients, watch, hook, "ROLLBACK")
        return f"the smoke test at the gate failed: {exc.message}; production traffic never reached it"
    say("gate: passed; CONTINUE to production traffic")
    proceed(clients, watch, hook, "CONTINUE")
    return None


def split_weight(deployment: dict[str, Any]) -> float | None:
    """The new revision's share of production while traffic is split (a linear step, a
    canary's bake), else None. Pure."""
    if deployment.get("status") != "IN_PROGRESS":
        return None
    weight = (deployment.get("targetServiceRevision") or {}).get("requestedProductionTrafficWeight")
    return float(weight) if weight is not None and 0 < float(weight) < 100 else None


def at_step(
    clients: Clients, watch: Watch, weight: float, say: Callable[[str], None], *, first: bool
) -> str | None:
    """While production is split (a linear step, a canary's bake), each round: sample the
    production URL (ten GETs: the split means one passing answer proves nothing); on a
    failure stop the deployment with ROLLBACK (ECS sends production back at once) and say
    why, returned. A share's first sample says so; later ones speak only when they fail."""
    if watch.production_url is None or watch.gate_smoke is None:
        return None
    if first:
        say(
            f"step: the new revision has {weight:g}% of production; sampling {watch.production_url} until it moves"
        )
    bad = smoke.sample(watch.production_url, watch.gate_smoke)
    if bad is None:
        if first:
            say(f"step: {weight:g}% passed its first sample")
        return None
    say(f"step: GET {watch.production_url}: {bad.describe()}; StopServiceDeployment(ROLLBACK)")
    with aws_errors("ecs:StopServiceDeployment"):
        clients.aws("ecs").stop_service_deployment(
            serviceDeploymentArn=watch.deployment_id, stopType="ROLLBACK"
        )
    return (
        f"the smoke test of production at {weight:g}% on the new revision failed: GET {watch.production_url}: "
        f"{bad.describe()}; production went back to the previous revision"
    )


def proceed(clients: Clients, watch: Watch, hook: dict[str, Any], action: str) -> None:
    """Answer a PAUSE hook: CONTINUE or ROLLBACK."""
    with aws_errors("ecs:ContinueServiceDeployment"):
        clients.aws("ecs").continue_service_deployment(
            serviceDeploymentArn=watch.deployment_id, hookId=str(hook.get("hookId")), action=action
        )


def describe(clients: Clients, arns: list[str]) -> dict[str, dict[str, Any] | None]:
    """Every service deployment ARN → its description (None where ECS lists a failure); 20 per
    call, ECS's limit."""
    found: dict[str, dict[str, Any] | None] = dict.fromkeys(arns)
    client = clients.aws("ecs")
    for i in range(0, len(arns), 20):
        with aws_errors("ecs:DescribeServiceDeployments"):
            answer = client.describe_service_deployments(serviceDeploymentArns=arns[i : i + 20])
        for deployment in answer.get("serviceDeployments", []):
            found[deployment["serviceDeploymentArn"]] = deployment
    return found


def stop_and_roll_back(
    clients: Clients, cluster: str, service: str, timeout: float, sleep: Callable[[float], None]
) -> str:
    """After an interrupt (Ctrl-C, CI's cancel): StopServiceDeployment(ROLLBACK) on the service's
    deployment still going forward (at the gate or in a bake: production must not keep a
    revision nobody is watching), and wait up to `timeout` for its end; what happened."""
    live = ecs.describe_service(clients, cluster, service)
    arn = str(live.get("currentServiceDeployment") or "")
    deployment = describe(clients, [arn]).get(arn) if arn else None
    if deployment is None or deployment.get("status") not in GOING:
        return "no service deployment was going forward"
    with aws_errors("ecs:StopServiceDeployment"):
        clients.aws("ecs").stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    waited = 0.0
    while waited < timeout:
        status = str((describe(clients, [arn]).get(arn) or {}).get("status", "gone"))
        if status in ("ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED", "STOPPED", "gone"):
            return f"{_name(arn)} was stopped with ROLLBACK: {status}"
        sleep(1.0)
        waited += 1.0
    return f"{_name(arn)} was stopped with ROLLBACK and is still rolling back after {timeout:g}s"


def mark_stage(
    ctx: Context, kind: str, environment: str, watch: Watch, deployment: dict[str, Any], when: datetime
) -> None:
    """A Honeycomb marker for a lifecycle stage the rollout saw the service deployment enter (a
    stage shorter than a poll can pass unseen), carrying its ARN; never raises."""
    from .. import markers

    back = "rolling back " if watch.rolling_back else ""
    stage = deployment.get("lifecycleStage")
    message = f"{kind} {watch.service} {back}at {stage}: {line(deployment)}; {watch.deployment_id}"
    markers.post(
        ctx, markers.Marker(f"{kind}-stage", environment, "", watch.target, when, when, message=message)
    )
