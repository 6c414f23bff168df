"""The release verb: several services as one unit — all run the new images, or none does.

`release_plan.check` decides (every problem at once, before any change); `execute` then
registers every revision, runs each service's migration (one at a time, in the file's
order; a failure stops the release before any service is updated), updates every
service with bounded parallelism, waits for all of them with batched polling
(pipeline/fleet.py) and smoke-tests those with a URL. On any failure it prints why each
failed service's new tasks stopped (reason, exit code, last log lines), then returns
every service this release changed to the revision that ran before — waiting on ECS's
own rollback where its circuit breaker already started one, never rolling back twice.
It ends with one table and one Honeycomb marker.

Exit codes: 0 all released; 1 a migration failed (nothing updated) or a service failed and
every changed service was rolled back; 4 a rollback failed too (a person must look);
130/143 interrupted by SIGINT/SIGTERM (CircleCI's cancel): during a migration nothing was
updated; later every changed service was rolled back, and a second signal stops that
rollback, saying what each service runs.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, NoReturn

from . import ecs, fleet, lock, markers, migrate, runtask, smoke, stopped
from .arns import short
from .clients import aws_errors
from .context import Context
from .errors import DeployFailed, DeployInterrupted, PipelineError, RollbackFailed
from .interrupts import signum_of
from .release_plan import ReleaseOptions, ReleasePlan, ServicePlan, check, describe, each, first_service
from .revisions import mark_verified
from .safety import one_line, quietly
from .transient import calling

__all__ = ["ReleaseOptions", "ReleasePlan", "Row", "execute", "first_service", "release", "table", "to_json"]


@dataclass
class Row:
    """One line of the closing table."""

    service: str
    old: str
    new: str = ""
    status: str = "not started"
    seconds: float = 0.0
    reason: str = ""


def release(ctx: Context, options: ReleaseOptions) -> ReleasePlan | list[Row]:
    """Check, then (unless a dry run) execute; the plan after a dry run, else the table's rows."""
    with ctx.out.step(f"check release to {options.env}"):
        plan = check(ctx, options)
        for s in plan.services:
            ctx.out.detail(f"{s.name}: runs {short(s.current)}; {s.image} is in ECR")
    if options.dry_run:
        for line in describe(plan):
            ctx.out.say(line)
        return plan
    # Every service's deploy lock, in one order, for the whole window (pipeline/lock.py).
    locks = [lock.name(s.environment) for s in plan.services]
    with lock.held(ctx, locks, "release", "", sleep=options.sleep, timeout=options.timeout):
        if _changed_since(ctx, plan):  # another pipeline finished between the check and the lock
            with ctx.out.step(f"check release to {options.env} again (a service changed meanwhile)"):
                plan = check(ctx, options)
        return execute(ctx, plan, options)


def _changed_since(ctx: Context, plan: ReleasePlan) -> bool:
    live = fleet.describe_many(ctx.clients, [(s.cluster, s.service) for s in plan.services])
    return any(
        (found := live[(s.cluster, s.service)]) is None
        or not ecs.same_revision(str(found.get("taskDefinition", "")), s.current)
        or ecs.in_progress(found)
        for s in plan.services
    )


def _throttled(exc: PipelineError) -> bool:
    return "throttled" in exc.message


def _with_retry(fn: Any, sleep: Any, attempts: int = 5) -> Any:
    """Call fn; a call still throttled after boto3's own retries is tried again with backoff."""
    for attempt in range(attempts):
        try:
            return fn()
        except PipelineError as exc:
            if not _throttled(exc) or attempt == attempts - 1:
                raise
            sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def execute(ctx: Context, plan: ReleasePlan, options: ReleaseOptions) -> list[Row]:
    out, client = ctx.out, ctx.clients.aws("ecs")  # one client, shared by the worker threads
    started = datetime.now(UTC)
    rows = {s.name: Row(s.name, short(s.current)) for s in plan.services}
    parallel, sleep = options.parallel, options.sleep

    def register(s: ServicePlan) -> str:
        def call() -> str:
            with aws_errors("ecs:RegisterTaskDefinition"):
                return str(
                    client.register_task_definition(**s.request)["taskDefinition"]["taskDefinitionArn"]
                )

        return str(_with_retry(call, sleep))

    with out.step(f"register {len(plan.services)} task definitions"):
        arns = dict(
            zip([s.name for s in plan.services], each(register, plan.services, parallel), strict=True)
        )
        failed = {name: arn for name, arn in arns.items() if isinstance(arn, PipelineError)}
        for name, arn in arns.items():
            if isinstance(arn, str):
                rows[name].new = short(arn)
                out.detail(f"{name}: registered {short(arn)}")
        if failed:
            for name, exc in failed.items():
                rows[name].status, rows[name].reason = "not registered", exc.message
            _finish(ctx, plan, rows, started, "failed to register; nothing updated")
            raise next(iter(failed.values()))

    _migrate(ctx, plan, arns, rows, options, started)
    begun: dict[str, float] = {}
    touched: set[str] = set()

    def update(s: ServicePlan) -> str:
        def call() -> dict[str, Any]:
            with aws_errors("ecs:UpdateService"):
                return dict(
                    client.update_service(cluster=s.cluster, service=s.service, taskDefinition=arns[s.name])[
                        "service"
                    ]
                )

        begun[s.name] = time.monotonic()
        updated = _with_retry(call, sleep)
        touched.add(s.name)
        ours = [
            d
            for d in ecs.deployments(updated)
            if d.status == "PRIMARY" and ecs.same_revision(d.task_definition, arns[s.name])
        ]
        if not ours:
            raise DeployFailed(f"UpdateService started no deployment of {short(arns[s.name])}")
        return ours[0].id

    progress = fleet.Progress(out)
    started_ids: dict[str, Any] = {}
    outcomes: dict[str, ecs.Outcome] = {}
    finished: dict[str, float] = {}
    smoke_failed: set[str] = set()
    interrupted: KeyboardInterrupt | None = None
    try:
        with out.step(f"update {len(plan.services)} services, at most {parallel} at a time"):
            names = [s.name for s in plan.services]
            started_ids.update(zip(names, each(update, plan.services, parallel), strict=True))
            _fail_step(out, {n: e.message for n, e in started_ids.items() if isinstance(e, PipelineError)})
        outcomes.update(
            {
                name: ecs.Outcome("failed", exc.message if name in touched else f"not updated: {exc.message}")
                for name, exc in started_ids.items()
                if isinstance(exc, PipelineError)
            }
        )
        changed = [s for s in plan.services if s.name in touched]
        smoke_failed = _wait_and_smoke(
            ctx, plan, options, changed, started_ids, arns, outcomes, finished, progress
        )
    except KeyboardInterrupt as sig:
        # All or nothing holds for an interrupt (Ctrl-C, CI's cancel: SIGTERM) too: a
        # half-released fleet is the worst state to leave behind. A second one stops the rollback.
        interrupted = sig
        out.warn(f"interrupted by {_signal_name(sig)}: rolling back every service this release changed")
        for s in plan.services:
            outcomes.setdefault(s.name, ecs.Outcome("failed", "interrupted"))
    # Every service whose UpdateService was answered is changed, deployment seen or not.
    changed = [s for s in plan.services if s.name in touched]
    for s in plan.services:
        outcome, row = outcomes[s.name], rows[s.name]
        row.seconds = finished.get(s.name, time.monotonic()) - begun.get(s.name, time.monotonic())
        row.status, row.reason = (
            ("rolled out", "") if outcome.state == "succeeded" else ("failed", outcome.reason)
        )

    if all(o.state == "succeeded" for o in outcomes.values()):
        each(lambda s: mark_verified(ctx, arns[s.name], s.url is not None), plan.services, parallel)
        for row in rows.values():
            row.status = "released"
        _finish(ctx, plan, rows, started)
        return list(rows.values())

    broken = [name for name, outcome in outcomes.items() if outcome.state != "succeeded"]
    why = f"{broken[0]}: {outcomes[broken[0]].reason}"
    # Only a failed rollout has stopped tasks to explain; a failed smoke test's tasks run on.
    stopped_ones = [s for s in changed if s.name in broken and s.name not in smoke_failed]
    _report_stopped(ctx, stopped_ones, arns, outcomes)
    try:
        rolled_back_ok = _roll_back(ctx, plan, changed, outcomes, rows, options, progress)
    except KeyboardInterrupt as again:
        _stopped_rolling_back(ctx, plan, rows, started, again)
    how = "interrupted" if interrupted is not None else "failed"
    _finish(
        ctx,
        plan,
        rows,
        started,
        f"{how}; changed services rolled back" if rolled_back_ok else f"{how}; a rollback failed too",
    )
    error: PipelineError
    if not rolled_back_ok:
        bad = [r.service for r in rows.values() if "rollback failed" in r.status]
        error = RollbackFailed(
            f"release to {plan.environment} failed ({why}); the rollback of {', '.join(bad)} failed too"
        )
    elif interrupted is not None:
        error = DeployInterrupted(
            f"release to {plan.environment} interrupted by {_signal_name(interrupted)}: all {len(changed)} "
            "changed services were rolled back to their previous revisions",
            signum_of(interrupted),
        )
    else:
        error = DeployFailed(
            f"release to {plan.environment} failed ({why}; {len(broken)} of {len(rows)} services failed); "
            f"all {len(changed)} changed services were rolled back to their previous revisions"
        )
    setattr(error, "rows", list(rows.values()))  # noqa: B010 (--json prints them on failure too)
    raise error


def _signal_name(interrupt: BaseException) -> str:
    return signal.Signals(signum_of(interrupt)).name


def _stopped_rolling_back(
    ctx: Context, plan: ReleasePlan, rows: dict[str, Row], started: datetime, again: KeyboardInterrupt
) -> NoReturn:
    """A second interrupt stopped the way back: the table, the marker, and what each service
    runs now, read fresh from AWS (never raises while saying so)."""
    try:
        live = fleet.describe_many(ctx.clients, [(s.cluster, s.service) for s in plan.services])
        runs = ", ".join(
            f"{s.name} {short(str((live[(s.cluster, s.service)] or {}).get('taskDefinition', '?')))}"
            + (" (still rolling out)" if ecs.in_progress(live[(s.cluster, s.service)] or {}) else "")
            for s in plan.services
        )
    except Exception as exc:
        runs = f"unknown ({one_line(exc)})"
    for row in rows.values():
        if row.status in ("failed", "rolled out"):
            row.status = "rollback stopped"
    _finish(ctx, plan, rows, started, "interrupted twice; rollback stopped")
    error = DeployInterrupted(
        f"release to {plan.environment} interrupted again by {_signal_name(again)} while rolling back: "
        f"stopped rolling back; the services now run: {runs}",
        signum_of(again),
    )
    setattr(error, "rows", list(rows.values()))  # noqa: B010 (--json prints them)
    raise error from None


def _migrate(
    ctx: Context,
    plan: ReleasePlan,
    arns: dict[str, str],
    rows: dict[str, Row],
    options: ReleaseOptions,
    started: datetime,
) -> None:
    """Each service's migrate_command with its new revision, one at a time in the file's order
    (a later service's migration may need an earlier one's); the first failure ends the
    release before any UpdateService."""
    done: list[str] = []
    for s in [s for s in plan.services if s.migrate_command]:
        try:
            migrate.run(
                ctx, s.environment, s.live_service, s.current, arns[s.name], options.timeout, options.sleep
            )
        except PipelineError as exc:
            rows[s.name].status, rows[s.name].reason = "migration failed", exc.message
            _finish(ctx, plan, rows, started, f"stopped by {s.name}'s migration; nothing updated")
            ran = f"; the migrations of {', '.join(done)} had run" if done else ""
            message = (
                f"release to {plan.environment} stopped before any update: {s.name}: {exc.message}; "
                f"no service was updated{ran}"
            )
            error = (
                runtask.Interrupted(message, exc.exit_code - 128)
                if isinstance(exc, runtask.Interrupted)
                else DeployFailed(message)
            )
            setattr(error, "rows", list(rows.values()))  # noqa: B010 (--json prints them)
            raise error from None
        rows[s.name].status = "migrated"
        done.append(s.name)


def _report_stopped(
    ctx: Context, failed: list[ServicePlan], arns: dict[str, str], outcomes: dict[str, ecs.Outcome]
) -> None:
    """Why each failed service's new tasks stopped, with their last log lines, before the
    rollback replaces them (a report only: a failing read is a warning, never the error)."""
    failed = [s for s in failed if outcomes[s.name].reason != "interrupted"]
    if not failed:
        return
    with ctx.out.step(f"why the tasks of {len(failed)} failed services stopped"):
        for s in failed:
            quietly(ctx, f"find out why {s.name}'s tasks stopped", partial(_stopped, ctx, s, arns[s.name]))


def _stopped(ctx: Context, s: ServicePlan, arn: str) -> None:
    stopped.report(ctx, s.environment, arn, say=lambda line: ctx.out.detail(f"{s.name}: {line}"))


def _wait_and_smoke(
    ctx: Context,
    plan: ReleasePlan,
    options: ReleaseOptions,
    changed: list[ServicePlan],
    started_ids: dict[str, Any],
    arns: dict[str, Any],
    outcomes: dict[str, ecs.Outcome],
    finished: dict[str, float],
    progress: fleet.Progress,
) -> set[str]:
    """Wait for every started deployment (batched), then smoke-test all with a URL if all
    rolled out; each verdict lands in `outcomes`. Returns the services whose smoke test failed."""
    out, sleep = ctx.out, options.sleep
    watched = [s for s in changed if isinstance(started_ids[s.name], str)]
    if watched:
        with out.step(f"wait for {len(watched)} rollouts (one DescribeServices per cluster per round)"):
            watches = [
                fleet.Watch(s.name, s.cluster, s.service, started_ids[s.name], arns[s.name]) for s in watched
            ]
            outcomes.update(
                fleet.wait_all(ctx.clients, watches, progress, options.timeout, sleep, finished=finished)
            )
            _fail_step(
                out, {w.key: outcomes[w.key].reason for w in watches if outcomes[w.key].state != "succeeded"}
            )
    targets = [s for s in plan.services if s.url]
    if not targets or any(o.state != "succeeded" for o in outcomes.values()):
        return set()
    failed: dict[str, str] = {}
    with out.step(f"smoke test {len(targets)} services"):

        def probe(s: ServicePlan) -> None:
            smoke.check(str(s.url), s.smoke, lambda line: out.detail(f"{s.name}: {line}"), sleep=sleep)

        for s, problem in zip(targets, each(probe, targets, options.parallel), strict=True):
            if isinstance(problem, PipelineError):
                outcomes[s.name] = ecs.Outcome("failed", problem.message)
                failed[s.name] = problem.message
        _fail_step(out, failed)
    return set(failed)


def _fail_step(out: Any, failed: dict[str, str]) -> None:
    """End the current step "failed" when any of its services failed, naming the first."""
    if failed:
        name, reason = next(iter(failed.items()))
        out.fail(f"{len(failed)} services failed; {name}: {reason}")


def _roll_back(
    ctx: Context,
    plan: ReleasePlan,
    changed: list[ServicePlan],
    outcomes: dict[str, ecs.Outcome],
    rows: dict[str, Row],
    options: ReleaseOptions,
    progress: fleet.Progress,
) -> bool:
    """Return every changed service to its previous revision and wait; True when all are back."""
    if not changed:
        return True
    client = ctx.clients.aws("ecs")
    watches: list[fleet.Watch] = []
    begun: dict[str, float] = {}
    with ctx.out.step(f"roll back {len(changed)} services to their previous revisions"):

        def back(s: ServicePlan) -> fleet.Watch:
            begun[s.name] = time.monotonic()
            by_ecs = outcomes[s.name].rolled_back_by_ecs
            if by_ecs is not None:  # the circuit breaker is already on it: wait, don't roll twice
                ctx.out.detail(
                    f"{s.name}: ECS's circuit breaker is rolling back to {short(by_ecs.task_definition)}"
                )
                return fleet.Watch(s.name, s.cluster, s.service, by_ecs.id, by_ecs.task_definition)

            def call() -> dict[str, Any]:
                with aws_errors("ecs:UpdateService"):
                    return dict(
                        client.update_service(
                            cluster=s.cluster, service=s.service, taskDefinition=s.previous
                        )["service"]
                    )

            # The way back rides out a blip until its own deadline (pipeline/transient.py).
            deadline = time.monotonic() + options.timeout
            updated = calling(lambda: _with_retry(call, options.sleep), deadline, ctx.out.detail)
            ours = next(
                (
                    d
                    for d in ecs.deployments(updated)
                    if d.status == "PRIMARY" and ecs.same_revision(d.task_definition, s.previous)
                ),
                None,
            )
            if ours is None:
                raise DeployFailed(f"UpdateService started no deployment of {short(s.previous)}")
            ctx.out.detail(f"{s.name}: rolling back to {short(s.previous)}")
            return fleet.Watch(s.name, s.cluster, s.service, ours.id, s.previous)

        ok = True
        for s, watch in zip(changed, each(back, changed, options.parallel), strict=True):
            if isinstance(watch, PipelineError):
                rows[s.name].status, ok = "rollback failed", False
                rows[s.name].reason = watch.message
            else:
                watches.append(watch)
        finished: dict[str, float] = {}
        results = fleet.wait_all(
            ctx.clients, watches, progress, options.timeout, options.sleep, finished=finished
        )
        for watch in watches:
            row, result = rows[watch.key], results[watch.key]
            by_ecs = outcomes[watch.key].rolled_back_by_ecs is not None
            if result.state == "succeeded":
                what = "rolled back by ECS" if by_ecs else "rolled back"
                row.status = (
                    f"{'failed, ' if row.status != 'rolled out' else ''}{what} to {short(watch.target)}"
                )
            else:
                row.status, row.reason, ok = f"rollback failed ({short(watch.target)})", result.reason, False
            row.seconds += finished.get(watch.key, time.monotonic()) - begun[watch.key]
        _fail_step(
            ctx.out, {r.service: r.reason for r in rows.values() if r.status.startswith("rollback failed")}
        )
    return ok


def table(rows: list[Row]) -> list[str]:
    """The closing table: service, old → new revision, status, duration. Pure."""
    header = ("service", "revision", "status", "duration")
    body = [(r.service, f"{r.old} → {r.new or '-'}", r.status, f"{r.seconds:.1f}s") for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    ]
    reasons = [f"{r.service}: {r.reason}" for r in rows if r.reason]
    return [lines[0], "  ".join("-" * w for w in widths), *lines[1:], *reasons]


def _finish(
    ctx: Context, plan: ReleasePlan, rows: dict[str, Row], started: datetime, failure: str = ""
) -> None:
    """The closing table and the release's one marker; `failure` ("": released) says how it
    ended, so the marker never claims a rollback that did not happen."""
    for line in table(list(rows.values())):
        ctx.out.say(line)
    revisions = ", ".join(f"{r.service} {r.old} → {r.new or '-'}" for r in rows.values())
    markers.post(
        ctx,
        "release",
        plan.environment,
        "",
        "",
        started,
        datetime.now(UTC),
        not failure,
        message=(
            f"release of {len(rows)} services to {plan.environment}{f' ({failure})' if failure else ''}: "
            f"{revisions}"
        )[:500],
    )


def to_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
