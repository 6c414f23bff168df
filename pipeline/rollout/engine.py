"""The engine: start every service's rollout, wait for all with one read per round, smoke-test, recover.

Each round makes one read (`RolloutOptions.read`: DescribeServices per cluster per 10
services) and hands each answer to the service's strategy to judge; a throttled round is
no verdict, only a round lost within the same timeout. A read that fails otherwise ends the
wait for every service still rolling (the failure is the verdict), so the way back runs.
Wrapping `read` (a retry policy for transient faults) changes no strategy.

On any failure, `recover` returns every service this rollout changed to where it was —
all or nothing — except a service another deploy took over (State.REPLACED): undoing that
would undo someone else's change.
"""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from .. import ecs, smoke, stopped
from ..clients import Clients
from ..context import Context
from ..errors import PipelineError, Throttled, Transient
from ..interrupts import signum_of
from ..output import Output
from ..pace import Pace
from ..safety import one_line, quietly
from ..transient import calling, outlast
from . import native
from .model import Outcome, Result, StartedNothing, State, Unit, Watch, Way
from .strategy import STRATEGIES

Answers = dict[tuple[str, str], dict[str, Any] | None]
Read = Callable[[Clients, list[tuple[str, str]]], Answers]
T = TypeVar("T")


@dataclass(frozen=True)
class RolloutOptions:
    """How the engine runs: the verbs' options map onto this."""

    kind: str = "deploy"  # deploy | rollback | release: how steps and lines name the rollout
    environment: str = ""  # what markers name
    timeout: float = 600.0  # for the rollouts
    parallel: int = 4  # UpdateService calls and smoke tests at once
    # For the ways back (None: `timeout` again). A short timeout fails a rollout fast; the
    # rollback that follows must still be given the time to end safe.
    rollback_timeout: float | None = None
    rollback: bool = (
        True  # on failure, return to the previous revision (ECS's own rollback is always waited for)
    )
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    read: Read = ecs.describe_many  # the round's one AWS read

    @property
    def fleet(self) -> bool:
        """A release: steps over all services, lines labelled with the service."""
        return self.kind == "release"


@dataclass
class Progress:
    """Prints each service's deployments when they change and each new event once."""

    out: Output
    labelled: bool = False
    seen: dict[str, set[str]] = field(default_factory=dict)
    lines: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def say(self, key: str, line: str) -> None:
        self.out.detail(f"{key}: {line}" if self.labelled else line)

    def note(self, key: str, line: str) -> None:
        """A line that is printed only when it differs from this key's last note."""
        if self.notes.get(key) != line:
            self.notes[key] = line
            self.say(key, line)

    def prime(self, key: str, service: dict[str, Any]) -> None:
        """The events already listed are history: print only what comes after."""
        self.seen.setdefault(key, set()).update(e["id"] for e in service.get("events", []))

    def show(self, key: str, service: dict[str, Any]) -> None:
        lines = tuple(d.line() for d in ecs.deployments(service))
        if lines != self.lines.get(key):
            self.lines[key] = lines
            for line in lines:
                self.say(key, line)
        seen = self.seen.setdefault(key, set())
        for event in reversed(service.get("events", [])):  # the API lists newest first
            if event["id"] not in seen:
                seen.add(event["id"])
                self.say(key, f"event: {event['message']}")


def each(fn: Callable[[Any], T], items: Iterable[Any], parallel: int) -> list[T | PipelineError]:
    """fn over items with at most `parallel` at once; a pipeline error is returned, not raised."""

    def safe(item: Any) -> T | PipelineError:
        try:
            return fn(item)
        except PipelineError as exc:
            return exc

    return _pool(safe, list(items), parallel)


def retrying(fn: Callable[[], T], sleep: Callable[[float], None], attempts: int = 5) -> T:
    """Call fn; a call still throttled after botocore's own retries is tried again with backoff
    (a throttled call changed nothing)."""
    for attempt in range(attempts):
        try:
            return fn()
        except Throttled:
            if attempt == attempts - 1:
                raise
            sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def wait_all(
    ctx: Context, watches: list[Watch], options: RolloutOptions, progress: Progress
) -> tuple[dict[str, Outcome], dict[str, float]]:
    """Poll in rounds until every watched deployment has an outcome or the timeout passes;
    the outcomes, and the clock time each was seen."""
    clock = options.clock
    started = clock()
    paces = {w.key: Pace(drain_lookup=lambda s: ecs.drain_seconds(ctx.clients, s)) for w in watches}
    outcomes: dict[str, Outcome] = {}
    finished: dict[str, float] = {}
    answered: set[tuple[str, str]] = set()  # (deployment, hook) we answered: ECS moves on
    stages: dict[str, str] = {}  # service deployment → the lifecycle stage last seen
    gate_failed: dict[str, str] = {}  # watch key → why its gate sent it back
    while True:
        pending = [w for w in watches if w.key not in outcomes]
        answers: Answers | None = None
        deployments: dict[str, dict[str, Any] | None] = {}
        try:
            answers, deployments = _read_round(ctx, pending, options)
        except Throttled:
            progress.out.detail("DescribeServices throttled; polling again")
        except Transient as fault:  # a network blip is no verdict: ride it out until the deadline
            answers, deployments = outlast(
                functools.partial(_read_round, ctx, pending, options),
                started + options.timeout,
                progress.out.detail,
                fault,
                clock,
                options.sleep,
            )
        except PipelineError as exc:  # the read itself failed: that is every pending verdict
            for watch in pending:
                outcomes[watch.key], finished[watch.key] = Outcome(State.FAILED, exc.message), clock()
            return outcomes, finished
        now, wall = clock(), datetime.now(UTC)
        waits = []
        for watch in pending:
            service = None if answers is None else answers[(watch.cluster, watch.service)]
            if answers is not None and service is None:
                outcomes[watch.key] = Outcome(
                    State.FAILED, f"ECS service {watch.service!r} is gone from cluster {watch.cluster!r}"
                )
                finished[watch.key] = now
                continue
            if service is not None:
                progress.show(watch.key, service)
                say = functools.partial(progress.say, watch.key)
                strategy = STRATEGIES[watch.strategy]
                deployment = deployments.get(watch.deployment_id)
                if deployment is not None:
                    progress.note(watch.key, native.line(deployment))
                    stage = str(deployment.get("lifecycleStage") or "")
                    if stage and stages.get(watch.deployment_id) != stage:
                        stages[watch.deployment_id] = stage
                        native.mark_stage(ctx, options.kind, options.environment, watch, deployment, wall)
                outcome = strategy.observe(service, watch, deployment)
                hook = (watch.deployment_id, str((outcome.hook or {}).get("hookId")))
                if outcome.state == State.PAUSED and hook not in answered:
                    answered.add(hook)
                    why = native.at_hook(ctx.clients, watch, outcome, say, options.sleep)
                    if why is not None:
                        gate_failed[watch.key] = why
                weight = (
                    native.split_weight(deployment) if deployment and outcome.state == State.ROLLING else None
                )
                # Every round while production is split, not once: a revision can turn bad
                # after its first answers (under production's load), and the bake is when.
                if weight is not None and watch.key not in gate_failed:
                    step = (watch.deployment_id, f"{weight:g}%")
                    why = native.at_step(ctx.clients, watch, weight, say, first=step not in answered)
                    answered.add(step)
                    if why is not None:
                        gate_failed[watch.key] = why
                if outcome.done:
                    if watch.key in gate_failed and outcome.state == State.FAILED:
                        outcome = replace(outcome, reason=gate_failed[watch.key], gate_failed=True)
                    outcomes[watch.key], finished[watch.key] = outcome, now
                    continue
            waits.append(paces[watch.key].next(service, watch.deployment_id, now, wall))
        if len(outcomes) == len(watches):
            return outcomes, finished
        left = options.timeout - (now - started)
        if left <= 0:
            for watch in watches:
                if watch.key not in outcomes:
                    outcomes[watch.key] = Outcome(
                        State.FAILED,
                        f"timed out after {options.timeout:g}s waiting for deployment {watch.deployment_id}",
                    )
                    finished[watch.key] = now
            return outcomes, finished
        options.sleep(min(min(waits), left))


def _read_round(
    ctx: Context, pending: list[Watch], options: RolloutOptions
) -> tuple[Answers, dict[str, dict[str, Any] | None]]:
    """The round's reads: DescribeServices (options.read), and the service deployments of
    the watches whose strategy ECS runs as one (20 per DescribeServiceDeployments)."""
    answers = options.read(ctx.clients, [(w.cluster, w.service) for w in pending])
    arns = [w.deployment_id for w in pending if STRATEGIES[w.strategy].reads_service_deployments]
    return answers, (native.describe(ctx.clients, arns) if arns else {})


def advance(
    ctx: Context, units: list[Unit], options: RolloutOptions, progress: Progress
) -> dict[str, Result]:
    """Start every unit's rollout (at most `parallel` at once), wait for all, and smoke-test
    those with a URL once all rolled out; every verdict lands in its Result. Changes nothing
    after a failure: that is `recover`'s."""
    out, clock = ctx.out, options.clock
    results = {u.key: Result(u) for u in units}
    for unit in units:
        progress.prime(unit.key, unit.live)

    def start(unit: Unit) -> Started:
        """One unit's start, as a value: the workers share nothing."""
        at = clock()
        try:
            watch = retrying(lambda: STRATEGIES[unit.strategy].start(ctx.clients, unit), options.sleep)
        except StartedNothing as exc:  # UpdateService answered: the service changed
            return Started(unit.key, at, None, exc, updated=True)
        except PipelineError as exc:
            return Started(unit.key, at, None, exc, updated=False)
        return Started(unit.key, at, watch, None, updated=True)

    if options.fleet:
        with out.step(f"update {len(units)} services, at most {options.parallel} at a time"):
            started = _pool(start, units, options.parallel)
            _fail_step(out, {s.key: s.error.message for s in started if s.error is not None})
        with out.step(f"wait for {len(units)} rollouts (one DescribeServices per cluster per round)"):
            _started(results, started)
            try:
                _wait(ctx, results, options, progress)
            except KeyboardInterrupt as sig:
                # All or nothing holds for an interrupt (Ctrl-C, CI's cancel: SIGTERM) too: a
                # half-released fleet is the worst state to leave behind. A second one stops
                # the rollback as well.
                signum = signum_of(sig)
                name = signal.Signals(signum).name
                out.warn(f"interrupted by {name}: rolling back every service this {options.kind} changed")
                for result in results.values():
                    result.interrupted = signum
                    if not result.outcome.done:
                        result.outcome = Outcome(State.FAILED, "interrupted")
            _fail_step(
                out, {k: r.outcome.reason for k, r in results.items() if r.updated and not r.succeeded}
            )
    else:
        (unit,) = units
        with out.step(f"{options.kind} {ecs.short(unit.arn)} to {unit.service}"):
            started = [start(unit)]
            _started(results, started)
            _wait(ctx, results, options, progress)
            if not results[unit.key].succeeded:
                out.fail(results[unit.key].outcome.reason)
    try:
        if all(r.succeeded for r in results.values()):
            _smoke_all(ctx, [r for r in results.values() if r.unit.url], options, progress)
    finally:
        now = clock()
        for result in results.values():
            result.seconds = (result.finished or now) - (result.started_at or now)
    return results


@dataclass(frozen=True)
class Started:
    """What starting one unit came to."""

    key: str
    at: float  # the clock time it was started
    watch: Watch | None
    error: PipelineError | None
    updated: bool  # UpdateService answered: the service changed


def _pool(fn: Callable[[Any], T], items: list[Any], parallel: int) -> list[T]:
    """fn over items with at most `parallel` at once; fn returns what happened, never raises."""
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(fn, items))


def _started(results: dict[str, Result], started: list[Started]) -> None:
    for s in started:
        result = results[s.key]
        result.started_at, result.updated, result.watch, result.error = s.at, s.updated, s.watch, s.error
        if s.error is None:
            result.outcome = Outcome(State.ROLLING)
        else:
            what = s.error.message if s.updated else f"not updated: {s.error.message}"
            result.outcome = Outcome(State.FAILED, what)


def _wait(ctx: Context, results: dict[str, Result], options: RolloutOptions, progress: Progress) -> None:
    watches = [r.watch for r in results.values() if r.watch is not None]
    if not watches:
        return
    if not options.fleet:
        ctx.out.detail(
            f"deployment {watches[0].deployment_id} started; waiting for the stale deployments to drain"
        )
    outcomes, finished = _wait_safely(ctx, watches, options, progress)
    for key, outcome in outcomes.items():
        results[key].outcome = outcome
        results[key].finished = finished.get(key)
        results[key].smoke_failed = outcome.gate_failed  # its tasks ran; the answers were wrong


def _smoke_all(ctx: Context, targets: list[Result], options: RolloutOptions, progress: Progress) -> None:
    if not targets:
        return
    out = ctx.out
    with out.step(f"smoke test {len(targets)} services" if options.fleet else "smoke test"):

        def probe(result: Result) -> smoke.Probe | PipelineError:
            unit = result.unit
            assert unit.url is not None and unit.smoke is not None
            say = lambda line: progress.say(unit.key, line)  # noqa: E731
            try:
                return smoke.check(unit.url, unit.smoke, say, sleep=options.sleep)
            except PipelineError as exc:
                return exc

        # A single deploy's probe stays on this thread, where a signal interrupts it.
        probes = _pool(probe, targets, options.parallel) if options.fleet else [probe(targets[0])]
        failed = {}
        for result, answer in zip(targets, probes, strict=True):
            if isinstance(answer, PipelineError):
                result.outcome, result.smoke_failed = Outcome(State.FAILED, answer.message), True
                failed[result.unit.key] = answer.message
            else:
                result.probe = answer
        if failed:
            _fail_step(out, failed) if options.fleet else out.fail(next(iter(failed.values())))


def _fail_step(out: Output, failed: dict[str, str]) -> None:
    """End the current step "failed" when any of its services failed, naming the first."""
    if failed:
        name, reason = next(iter(failed.items()))
        out.fail(f"{len(failed)} services failed; {name}: {reason}")


def report_stopped(ctx: Context, results: dict[str, Result], progress: Progress) -> None:
    """Why each failed service's new tasks stopped, with their last log lines, before the way
    back replaces them (a report only: a failing read is a warning, never the error). A failed
    smoke test's tasks run on, and a replaced service's are someone else's concern."""
    failed = [
        r
        for r in results.values()
        if r.updated
        and r.outcome.state == State.FAILED
        and not r.smoke_failed
        and r.outcome.reason != "interrupted"
    ]
    if not failed:
        return

    def report(r: Result) -> None:
        stopped.report(ctx, r.unit.environment, r.unit.arn, say=lambda line: progress.say(r.unit.key, line))

    if not progress.labelled:
        quietly(ctx, "find out why tasks stopped", lambda: report(failed[0]))
        return
    with ctx.out.step(f"why the tasks of {len(failed)} failed services stopped"):
        for r in failed:
            quietly(ctx, f"find out why {r.unit.key}'s tasks stopped", lambda r=r: report(r))  # type: ignore[misc]


def recover(ctx: Context, results: dict[str, Result], options: RolloutOptions, progress: Progress) -> None:
    """Return every changed service to where it was, each through its strategy's way back;
    each Result gets its Way. A replaced service is left alone."""
    changed = [r for r in results.values() if r.updated]
    for r in changed:
        if r.outcome.state == State.REPLACED:
            r.way = Way.REPLACED
    going = [r for r in changed if r.way is None]
    if not going:
        return
    if options.fleet:
        with ctx.out.step(f"roll back {len(going)} services to their previous revisions"):
            _go_back(ctx, results, going, options, progress)
            _fail_step(
                ctx.out, {k: r.back_reason for k, r in results.items() if r.way == Way.ROLLBACK_FAILED}
            )
        return
    (r,) = going
    by_ecs = r.outcome.rolled_back_by_ecs
    if by_ecs is None and not _may_roll_back(r.unit, options):
        r.way = Way.LEFT
        return
    back_to = ecs.short(by_ecs.task_definition if by_ecs else str(r.unit.previous))
    with ctx.out.step(f"wait for ECS's rollback to {back_to}" if by_ecs else f"roll back to {back_to}"):
        _go_back(ctx, results, going, options, progress)
        if r.way == Way.ROLLBACK_FAILED:
            ctx.out.fail(r.back_reason)


def _may_roll_back(unit: Unit, options: RolloutOptions) -> bool:
    """Our own rollback: wanted, and to an earlier revision that had COMPLETED."""
    return options.rollback and unit.previous is not None and not ecs.same_revision(unit.previous, unit.arn)


def _go_back(
    ctx: Context, results: dict[str, Result], going: list[Result], options: RolloutOptions, progress: Progress
) -> None:
    # The way back has its own deadline, for starting it and for waiting on it.
    options = replace(options, timeout=options.rollback_timeout or options.timeout)

    def back(r: Result) -> tuple[float, tuple[Way, Watch] | None | PipelineError]:
        """One unit's way back, as a value: the workers share nothing. An unexpected error in
        starting it is a failed rollback too."""
        at, strategy, allowed = options.clock(), STRATEGIES[r.unit.strategy], _may_roll_back(r.unit, options)
        try:
            # The way back rides out a blip until its own deadline (pipeline/transient.py).
            return at, calling(
                lambda: retrying(
                    lambda: strategy.recover(ctx.clients, r.unit, r.outcome, allowed), options.sleep
                ),
                at + options.timeout,
                lambda line: progress.say(r.unit.key, line),
                options.clock,
                options.sleep,
            )
        except PipelineError as exc:
            return at, exc
        except Exception as exc:
            return at, PipelineError(one_line(exc))

    watches: list[Watch] = []
    begun: dict[str, float] = {}
    for r, (at, way) in zip(going, _pool(back, going, options.parallel), strict=True):
        begun[r.unit.key] = at
        if isinstance(way, PipelineError):
            r.way, r.back_reason = Way.ROLLBACK_FAILED, way.message
        elif way is None:
            r.way = Way.LEFT
        else:
            r.way, watch = way
            r.back_to = watch.target
            watches.append(watch)
            if options.fleet and r.way == Way.BY_ECS:
                progress.say(
                    r.unit.key, f"ECS's circuit breaker is rolling back to {ecs.short(watch.target)}"
                )
            elif options.fleet:
                progress.say(r.unit.key, f"rolling back to {ecs.short(watch.target)}")
    if not watches:
        return
    outcomes, finished = _wait_safely(ctx, watches, options, progress)
    for watch in watches:
        r, came = results[watch.key], outcomes[watch.key]
        if came.state == State.REPLACED and came.replaced_by is not None:
            # Another deploy (a --force) took over the way back: nothing is lost, and undoing
            # it would undo someone else's change.
            r.way, r.back_reason, r.back_replaced_by = Way.BACK_REPLACED, came.reason, came.replaced_by
        elif came.state != State.SUCCEEDED:
            r.way, r.back_reason = Way.ROLLBACK_FAILED, came.reason
        r.seconds += finished.get(watch.key, options.clock()) - begun[watch.key]


def _wait_safely(
    ctx: Context, watches: list[Watch], options: RolloutOptions, progress: Progress
) -> tuple[dict[str, Outcome], dict[str, float]]:
    """wait_all, where an unexpected error (a bug, a vanished service) is every open verdict:
    after UpdateService, any failure takes the same safe path."""
    try:
        return wait_all(ctx, watches, options, progress)
    except Exception as exc:
        reason = one_line(exc)
        return {w.key: Outcome(State.FAILED, reason) for w in watches}, {}
