"""ROLLING, ECS's rolling update: UpdateService, then judge our PRIMARY deployment until the stale ones are gone.

"Stable" is not success: a circuit-breaker rollback leaves a stable service running the
OLD revision, and that is a failed deploy. `judge` (pure) turns one DescribeServices
answer into an Outcome for the deployment we started; the way back is ECS's own
rollback when its circuit breaker started one, else an UpdateService to the revision
that ran before.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .. import ecs
from ..clients import Clients, aws_errors
from .model import Outcome, StartedNothing, State, Unit, Watch, Way


class Rolling:
    """The ROLLING strategy (the Strategy protocol in rollout/strategy.py)."""

    name = "ROLLING"
    reads_service_deployments = False

    def start(self, clients: Clients, unit: Unit) -> Watch:
        """UpdateService to the unit's revision; the Watch of the deployment ECS started."""
        ours = _update(clients, unit, unit.arn)
        # Telling ECS's rollback from another deploy needs what ran before and since when.
        return Watch(
            unit.key, unit.cluster, unit.service, unit.arn, ours.id, unit.previous, ours.created_at, self.name
        )

    def observe(
        self, answer: dict[str, Any], watch: Watch, deployment: dict[str, Any] | None = None
    ) -> Outcome:
        return judge(answer, watch.deployment_id, watch.target, watch.previous, watch.since)

    def recover(
        self, clients: Clients, unit: Unit, outcome: Outcome, allowed: bool
    ) -> tuple[Way, Watch] | None:
        """The way back after a failure: ECS's own rollback when its circuit breaker started
        one (waited for even when we may not roll back: a second replacement of every task
        helps nobody), else, when `allowed` (the engine's policy: wanted, and an earlier
        revision had COMPLETED), our UpdateService to the previous revision."""
        by_ecs = outcome.rolled_back_by_ecs
        if by_ecs is not None:
            return Way.BY_ECS, Watch(
                unit.key, unit.cluster, unit.service, by_ecs.task_definition, by_ecs.id, strategy=self.name
            )
        if not allowed or unit.previous is None:
            return None
        ours = _update(clients, unit, unit.previous)
        return Way.ROLLED_BACK, Watch(
            unit.key, unit.cluster, unit.service, unit.previous, ours.id, strategy=self.name
        )


def _update(clients: Clients, unit: Unit, arn: str) -> ecs.Deployment:
    """UpdateService to `arn`; the deployment ECS started. An error before the answer changed nothing."""
    with aws_errors("ecs:UpdateService"):
        updated = clients.aws("ecs").update_service(
            cluster=unit.cluster, service=unit.service, taskDefinition=arn
        )["service"]
    started = [
        d
        for d in ecs.deployments(updated)
        if d.status == "PRIMARY" and ecs.same_revision(d.task_definition, arn)
    ]
    if not started:
        raise StartedNothing(f"UpdateService started no deployment of {ecs.short(arn)}")
    return started[0]


def judge(
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
        return Outcome(State.FAILED, f"the service is {service.get('status')}")
    current = ecs.deployments(service)
    ours = next((d for d in current if d.id == deployment_id), None)
    primary = next((d for d in current if d.status == "PRIMARY"), None)
    if primary is not None and primary.id != deployment_id:
        if ours is not None and ours.rollout_state == "COMPLETED":
            # Ours finished before the next deploy began (a --wait behind us, say): done.
            return Outcome(
                State.SUCCEEDED,
                f"deployment {deployment_id} COMPLETED; deployment {primary.id} of "
                f"{ecs.short(primary.task_definition)} has started since",
            )
        by_ecs = is_ecs_rollback(service, ours, primary, previous, target, since)
        if by_ecs and ecs.same_revision(primary.task_definition, target):
            return _following(primary, len(current))
        if by_ecs:
            if ours is not None and ours.rollout_state == "FAILED" and ours.rollout_reason:
                return Outcome(State.FAILED, ours.rollout_reason, primary)
            return Outcome(
                State.FAILED,
                f"deployment {deployment_id} {'is gone' if ours is None else 'FAILED'} "
                "(ECS's deployment circuit breaker)",
                primary,
            )
        return Outcome(
            State.REPLACED,
            f"deployment {deployment_id} was replaced by deployment {primary.id} of "
            f"{ecs.short(primary.task_definition)}, which we did not start",
            replaced_by=primary,
        )
    if ours is None:
        return Outcome(State.FAILED, f"deployment {deployment_id} is gone and no deployment is PRIMARY")
    if ours.rollout_state == "FAILED":
        return Outcome(State.FAILED, ours.rollout_reason or f"deployment {ours.id} FAILED")
    if ours.status != "PRIMARY":
        return Outcome(State.FAILED, f"deployment {ours.id} is {ours.status}, no longer PRIMARY")
    if ours.rollout_state == "COMPLETED":
        return Outcome(State.SUCCEEDED, ours.rollout_reason)
    if (
        ours.rollout_state is None
        and len(current) == 1
        and ours.running == ours.desired
        and ours.pending == 0
    ):
        # No rollout state (no circuit breaker): the seed's test, stale deployments gone.
        return Outcome(State.SUCCEEDED, "no stale deployments left; running == desired")
    return Outcome(State.ROLLING)


def _following(ecs_deployment: ecs.Deployment, listed: int) -> Outcome:
    """ECS's own rollback runs the revision we were waiting for: its end is ours. Pure."""
    d = ecs_deployment
    name = f"ECS's rollback deployment {d.id} of {ecs.short(d.task_definition)}"
    if d.rollout_state == "COMPLETED":
        return Outcome(State.SUCCEEDED, f"{name} COMPLETED")
    if d.rollout_state == "FAILED":
        return Outcome(State.FAILED, d.rollout_reason or f"{name} FAILED")
    if d.rollout_state is None and listed == 1 and d.running == d.desired and d.pending == 0:
        return Outcome(State.SUCCEEDED, f"{name}: no stale deployments left; running == desired")
    return Outcome(State.ROLLING)


# What ECS writes in the service's events when its circuit breaker rolls back.
_ROLLBACK_EVENT_WORDS = ("rolling back to deployment", "circuit breaker")


def is_ecs_rollback(
    service: dict[str, Any],
    ours: ecs.Deployment | None,
    primary: ecs.Deployment,
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
        (previous is not None and ecs.same_revision(revision, previous))
        or ecs.same_revision(revision, target)
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
    (family_a, _, number_a), (family_b, _, number_b) = (
        ecs.short(a).rpartition(":"),
        ecs.short(b).rpartition(":"),
    )
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
