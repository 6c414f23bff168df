"""The engine's plain data: states, outcomes, what is watched and what each service came to."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ..config import Environment, SmokeSettings
from ..ecs import Deployment
from ..errors import DeployFailed, PipelineError
from ..smoke import Probe


class State(StrEnum):
    """What one read says about a deployment we started."""

    ROLLING = "rolling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REPLACED = "replaced"  # another deploy, not ECS, took over: never rolled back over
    PAUSED = "paused"  # a native deployment waits at a PAUSE hook for our action (the gate)


@dataclass(frozen=True)
class Outcome:
    state: State
    reason: str = ""
    # When ECS itself rolled back (circuit breaker): its deployment and revision.
    rolled_back_by_ecs: Deployment | None = None
    # When another deploy (not ECS) replaced ours: its deployment. Never undone by us.
    replaced_by: Deployment | None = None
    # Native strategies: the service deployment as last read, and the hook it waits at.
    service_deployment: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    hook: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    gate_failed: bool = False  # a smoke test at the gate or at a step failed: ECS was told to roll back

    @property
    def done(self) -> bool:
        return self.state not in (State.ROLLING, State.PAUSED)


@dataclass(frozen=True)
class Watch:
    """What observing one deployment needs: where it is, which deployment and revision,
    and (for telling ECS's rollback from another deploy) what ran before and since when."""

    key: str
    cluster: str
    service: str
    target: str  # the revision the deployment puts in
    deployment_id: str
    previous: str | None = None  # the revision that had COMPLETED before (ECS's rollback target)
    since: datetime | None = None  # when the deployment started (ECS's clock)
    strategy: str = "ROLLING"  # whose deployment it is: that strategy judges it
    # Native strategies: the gate's URL (the test listener) and smoke settings; None: no gate
    # (a way back, --no-smoke), and a PAUSE hook is continued at once.
    gate_url: str | None = None
    gate_smoke: SmokeSettings | None = field(default=None, repr=False)
    production_url: str | None = None  # sampled at each step of a linear or canary shift
    rolling_back: bool = False  # waiting for the service deployment's own rollback to end


@dataclass(frozen=True)
class Unit:
    """One service to put a revision into: everything the engine needs, decided beforehand."""

    key: str  # how lines and the table name it
    environment: Environment  # cluster, service, and the stopped-task report's log places
    arn: str  # the revision to roll out
    live: dict[str, Any] = field(repr=False)  # DescribeServices just before: events already seen
    previous: str | None  # what a rollback returns to: the last revision that COMPLETED
    strategy: str = "ROLLING"
    url: str | None = None  # smoke-tested there when set
    smoke: SmokeSettings | None = field(default=None, repr=False)
    test_url: str | None = None  # native strategies: the gate smoke-tests the new revision there

    @property
    def cluster(self) -> str:
        return self.environment.cluster

    @property
    def service(self) -> str:
        return self.environment.service


class Way(StrEnum):
    """How a service that did not stay on its new revision ended."""

    ROLLED_BACK = "rolled back"  # our UpdateService to the previous revision completed
    BY_ECS = "rolled back by ECS"  # the circuit breaker's rollback completed
    ROLLBACK_FAILED = "rollback failed"
    REPLACED = "replaced"  # another deploy runs: left alone
    BACK_REPLACED = "way back replaced"  # another deploy (a --force) took over our way back
    LEFT = "not rolled back"  # --no-rollback, or nothing had COMPLETED before


@dataclass
class Result:
    """What one service came to in a rollout."""

    unit: Unit
    outcome: Outcome = Outcome(State.FAILED, "not started")
    updated: bool = False  # UpdateService answered: the service changed
    error: PipelineError | None = None  # why it was never updated
    smoke_failed: bool = False
    probe: Probe | None = None  # the smoke test that passed
    watch: Watch | None = None
    started_at: float | None = None  # the clock time it was started
    seconds: float = 0.0
    finished: float | None = None  # the clock time its verdict was seen
    way: Way | None = None  # after a failure
    back_to: str | None = None  # the revision the way back went to
    back_reason: str = ""  # why the way back failed
    back_replaced_by: Deployment | None = None  # who took over the way back (Way.BACK_REPLACED)
    interrupted: int | None = None  # the signal (SIGINT/SIGTERM) that stopped the wait

    @property
    def succeeded(self) -> bool:
        return self.outcome.state == State.SUCCEEDED


class StartedNothing(DeployFailed):
    """UpdateService answered (the service changed) but no deployment of the revision is PRIMARY."""
