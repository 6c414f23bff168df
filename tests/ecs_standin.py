"""STAND-IN for ECS's rollout progress, the one thing the emulator cannot show on demand.

moto stores task definitions and service updates but never rolls a deployment, and
the emulator's own rollout model only ever succeeds. To test what a
deploy does when ECS reports stale deployments draining, FAILED, a circuit-breaker
rollback, a rollout that never ends or throttling, `ScriptedECS` wraps a real boto3
ECS client on the emulator and passes every call through, except DescribeServices
(and, when scripted, the stopped tasks): those answers are the emulator's own answer
with `deployments` and `events` replaced by the next scripted state, in the real
API's shapes. It is handed to the verbs at the one seam, `Clients(aws_factory=...)`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError


@dataclass
class Rollout:
    """The ids of one update: what the script is written against."""

    old_td: str
    old_id: str
    new_td: str = ""
    new_id: str = ""


State = Callable[[Rollout], "dict[str, Any] | Exception"]


def deployment(
    id: str,
    td: str,
    status: str = "PRIMARY",
    running: int = 1,
    desired: int = 1,
    pending: int = 0,
    failed: int = 0,
    state: str | None = "COMPLETED",
    reason: str = "",
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": id,
        "status": status,
        "taskDefinition": td,
        "desiredCount": desired,
        "pendingCount": pending,
        "runningCount": running,
        "failedTasks": failed,
        "createdAt": datetime.now(UTC),
        "updatedAt": datetime.now(UTC),
        "launchType": "FARGATE",
    }
    if state is not None:
        d["rolloutState"] = state
        d["rolloutStateReason"] = reason or f"ECS deployment {id} {state.lower().replace('_', ' ')}."
    return d


def event(message: str) -> dict[str, Any]:
    # One id per message: a state shown twice is the same event, as ECS would list it.
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, message)),
        "createdAt": datetime.now(UTC),
        "message": message,
    }


def throttling() -> ClientError:
    return ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}, "ResponseMetadata": {}},
        "DescribeServices",
    )


@dataclass
class ScriptedECS:
    """A real ECS client whose DescribeServices follows a script after each update.

    `scripts[n]` is the list of states shown after the n-th UpdateService (the last
    state repeats); `before` is the state shown before any update (default: the
    service's current revision COMPLETED, as a service that has run for a while).
    """

    real: Any
    scripts: list[list[State]]
    stopped_tasks: list[dict[str, Any]] = field(default_factory=list)
    before: State | None = None
    updates: list[Rollout] = field(default_factory=list)
    describe_calls: int = 0
    _step: int = 0
    _events: list[dict[str, Any]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def _old(self, service: dict[str, Any]) -> Rollout:
        return Rollout(old_td=service["taskDefinition"], old_id=service["deployments"][0]["id"])

    def update_service(self, **kwargs: Any) -> dict[str, Any]:
        current = self.real.describe_services(cluster=kwargs["cluster"], services=[kwargs["service"]])[
            "services"
        ][0]
        previous = self.updates[-1] if self.updates else self._old(current)
        answer = self.real.update_service(**kwargs)
        primary = answer["service"]["deployments"][0]
        self.updates.append(
            Rollout(
                old_td=previous.new_td or previous.old_td,
                old_id=previous.new_id or previous.old_id,
                new_td=primary["taskDefinition"],
                new_id=primary["id"],
            )
        )
        self._step = 0
        return answer

    def describe_services(self, **kwargs: Any) -> dict[str, Any]:
        self.describe_calls += 1
        answer = self.real.describe_services(**kwargs)
        service = answer["services"][0] if answer.get("services") else None
        if service is None:
            return answer
        if not self.updates:
            state = (self.before or (lambda r: {"deployments": [deployment(r.old_id, r.old_td)]}))(
                self._old(service)
            )
            rollout = None
        else:
            script = self.scripts[len(self.updates) - 1]
            state = script[min(self._step, len(script) - 1)]
            self._step += 1
            rollout = self.updates[-1]
        shown = state(rollout) if rollout is not None else state
        if isinstance(shown, Exception):
            raise shown
        known = {e["id"] for e in self._events}
        fresh = [e for e in shown.get("events", []) if e["id"] not in known]
        self._events = list(reversed(fresh)) + self._events  # newest first, as the API lists them
        service["deployments"] = shown["deployments"]
        service["events"] = list(self._events)
        primary = next(d for d in shown["deployments"] if d["status"] == "PRIMARY")
        service["taskDefinition"] = primary["taskDefinition"]
        service["runningCount"] = sum(d["runningCount"] for d in shown["deployments"])
        return answer

    def list_tasks(self, **kwargs: Any) -> dict[str, Any]:
        if kwargs.get("desiredStatus") == "STOPPED" and self.stopped_tasks:
            return {"taskArns": [t["taskArn"] for t in self.stopped_tasks]}
        return dict(self.real.list_tasks(**kwargs))

    def describe_tasks(self, **kwargs: Any) -> dict[str, Any]:
        wanted = set(kwargs["tasks"])
        scripted = [t for t in self.stopped_tasks if t["taskArn"] in wanted]
        return {"tasks": scripted, "failures": []} if scripted else dict(self.real.describe_tasks(**kwargs))


# --- the shapes of common rollouts, written against a Rollout's ids -------------------


def draining(r: Rollout) -> dict[str, Any]:
    return {
        "deployments": [
            deployment(r.new_id, r.new_td, running=0, pending=1, state="IN_PROGRESS"),
            deployment(r.old_id, r.old_td, status="ACTIVE"),
        ],
        "events": [event(f"(service svc) has started 1 tasks: (task {r.new_id[-6:]}).")],
    }


def half_way(r: Rollout) -> dict[str, Any]:
    return {
        "deployments": [
            deployment(r.new_id, r.new_td, running=1, state="IN_PROGRESS"),
            deployment(r.old_id, r.old_td, status="ACTIVE", running=0, desired=0),
        ],
        "events": [event("(service svc) has stopped 1 running tasks: (task old).")],
    }


def completed(r: Rollout) -> dict[str, Any]:
    return {
        "deployments": [deployment(r.new_id, r.new_td)],
        "events": [event("(service svc) has reached a steady state.")],
    }


def failed(r: Rollout) -> dict[str, Any]:
    """The circuit breaker's verdict, seen while the failed deployment is still listed."""
    return {
        "deployments": [
            deployment(r.old_id + "-rb", r.old_td, running=0, pending=1, state="IN_PROGRESS"),
            deployment(
                r.new_id,
                r.new_td,
                status="ACTIVE",
                running=0,
                failed=3,
                state="FAILED",
                reason="ECS deployment circuit breaker: tasks failed to start.",
            ),
        ],
        "events": [
            event(f"(service svc) (deployment {r.new_id}) deployment failed: tasks failed to start."),
            event(f"(service svc) rolling back to deployment {r.old_id}."),
        ],
    }


def rolled_back(r: Rollout) -> dict[str, Any]:
    """After the circuit breaker: our deployment gone, the old revision PRIMARY and stable.
    ECS's rollback event stays in the service's events (it keeps the last 100)."""
    return {
        "deployments": [deployment(r.old_id + "-rb", r.old_td)],
        "events": [
            event(f"(service svc) rolling back to deployment {r.old_id}."),
            event("(service svc) has reached a steady state."),
        ],
    }


def legacy_draining(r: Rollout) -> dict[str, Any]:
    """A service without rollout state (no circuit breaker): only counts to go by."""
    return {
        "deployments": [
            deployment(r.new_id, r.new_td, running=0, pending=1, state=None),
            deployment(r.old_id, r.old_td, status="ACTIVE", state=None),
        ]
    }


def legacy_done(r: Rollout) -> dict[str, Any]:
    return {"deployments": [deployment(r.new_id, r.new_td, state=None)]}


def throttled(_r: Rollout) -> Exception:
    return throttling()
