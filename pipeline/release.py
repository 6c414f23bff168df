"""The release verb: several services as one unit — all run the new images, or none does.

`release_plan.check` decides (every problem at once, before any change); `execute` then
registers every revision, runs each service's migration (one at a time, in the file's
order; a failure stops the release before any service is updated), updates every
service with bounded parallelism, waits for all of them with batched polling
(the rollout engine, pipeline/rollout/) and smoke-tests those with a URL. On any failure it prints why each
failed service's new tasks stopped (reason, exit code, last log lines), then returns
every service this release changed to the revision that ran before — waiting on ECS's
own rollback where its circuit breaker already started one, never rolling back twice,
and never over a deploy another pipeline started (that service is left as it runs).
It ends with one table and one Honeycomb marker.

Exit codes: 0 all released; 1 a migration failed (nothing updated) or a service failed and
every changed service was rolled back; 4 a rollback failed too (a person must look);
6 another deploy replaced one of ours (left as it runs; the others rolled back);
130/143 interrupted by SIGINT/SIGTERM (CircleCI's cancel): during a migration nothing was
updated; later every changed service was rolled back, and a second signal stops that
rollback, saying what each service runs.
"""

from __future__ import annotations

import signal
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from . import ecs, lock, markers, prepare, runtask
from .arns import short
from .context import Context
from .errors import DeployFailed, MigrationFailed, PipelineError, RollbackFailed, ServiceLeftChanged
from .interrupts import signum_of
from .release_plan import ReleaseOptions, ReleasePlan, ServicePlan, check, describe, first_service
from .revisions import mark_verified
from .rollout import engine
from .rollout.model import Result, Unit, Way
from .safety import one_line

__all__ = [
    "ReleaseFailed",
    "ReleaseOptions",
    "ReleasePlan",
    "Row",
    "execute",
    "first_service",
    "release",
    "table",
    "to_json",
]


@dataclass
class Row:
    """One line of the closing table."""

    service: str
    old: str
    new: str = ""
    status: str = "not started"
    seconds: float = 0.0
    reason: str = ""


class ReleaseFailed(PipelineError):
    """A release that did not release; `rows` is its closing table (--json prints it)."""

    def __init__(self, message: str, rows: list[Row]) -> None:
        super().__init__(message)
        self.rows = rows


class RolledBack(ReleaseFailed, DeployFailed):
    """A service failed; every changed service is back on its previous revision (exit 1)."""


class MigrationStopped(ReleaseFailed, MigrationFailed):
    """A migration failed: no service was updated (exit 1)."""


class BackFailed(ReleaseFailed, RollbackFailed):
    """A rollback failed too: a person must look (exit 4)."""


class LeftChanged(ReleaseFailed, ServiceLeftChanged):
    """Another deploy replaced one of ours: it runs on, the others were rolled back (exit 6)."""


class MigrationInterrupted(ReleaseFailed, runtask.Interrupted):
    """Interrupted during a migration: no service was updated (exit 130)."""


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
    live = ecs.describe_many(ctx.clients, [(s.cluster, s.service) for s in plan.services])
    return any(
        (found := live[(s.cluster, s.service)]) is None
        or not ecs.same_revision(str(found.get("taskDefinition", "")), s.current)
        or ecs.in_progress(found)
        for s in plan.services
    )


def execute(ctx: Context, plan: ReleasePlan, options: ReleaseOptions) -> list[Row]:
    out = ctx.out
    started = datetime.now(UTC)
    rows = {s.name: Row(s.name, short(s.current)) for s in plan.services}
    arns = _register(ctx, plan, rows, options, started)
    _migrate(ctx, plan, arns, rows, options, started)
    units = [
        Unit(
            s.name,
            s.environment,
            arns[s.name],
            s.live_service,
            s.previous,
            s.strategy,
            s.url,
            s.smoke,
            s.test_url,
        )
        for s in plan.services
    ]
    rollout = engine.RolloutOptions(
        "release",
        plan.environment,
        options.timeout,
        options.parallel,
        rollback_timeout=options.rollback_timeout,
        sleep=options.sleep,
    )
    progress = engine.Progress(out, labelled=True)
    results = engine.advance(ctx, units, rollout, progress)
    for name, result in results.items():
        rows[name].seconds = result.seconds
        rows[name].status, rows[name].reason = (
            ("rolled out", "") if result.succeeded else ("failed", result.outcome.reason)
        )
    if all(r.succeeded for r in results.values()):
        engine.each(
            lambda s: mark_verified(ctx, arns[s.name], s.url is not None), plan.services, options.parallel
        )
        for row in rows.values():
            row.status = "released"
        _finish(ctx, plan, rows, started)
        return list(rows.values())

    broken = [name for name, r in results.items() if not r.succeeded]
    why = f"{broken[0]}: {results[broken[0]].outcome.reason}"
    engine.report_stopped(ctx, results, progress)
    try:
        engine.recover(ctx, results, rollout, progress)
    except KeyboardInterrupt as again:
        _stopped_rolling_back(ctx, plan, rows, started, again)
    interrupted = next((r.interrupted for r in results.values() if r.interrupted), None)
    for result in results.values():
        _row_after(rows[result.unit.key], result)
    changed = [r for r in results.values() if r.updated]
    failed_back = [r.unit.key for r in changed if r.way == Way.ROLLBACK_FAILED]
    replaced = [r for r in changed if r.way in (Way.REPLACED, Way.BACK_REPLACED)]
    if failed_back:
        _finish(ctx, plan, rows, started, "failed; a rollback failed too")
        raise BackFailed(
            f"release to {plan.environment} failed ({why}); the rollback of {', '.join(failed_back)} failed too",
            list(rows.values()),
        )
    if replaced:
        _finish(ctx, plan, rows, started, "failed; replaced by another deploy, not rolled back over it")
        names = ", ".join(r.unit.key for r in replaced)
        raise LeftChanged(
            f"release to {plan.environment} failed ({why}); {names} "
            f"{'was' if len(replaced) == 1 else 'were'} replaced by a deploy this release did not start: "
            f"left as it runs, not rolled back over it; the other {len(changed) - len(replaced)} changed "
            "services were rolled back to their previous revisions",
            list(rows.values()),
        )
    if interrupted is not None:
        _finish(ctx, plan, rows, started, "interrupted; changed services rolled back")
        error = RolledBack(
            f"release to {plan.environment} interrupted by {signal.Signals(interrupted).name}: all "
            f"{len(changed)} changed services were rolled back to their previous revisions",
            list(rows.values()),
        )
        error.exit_code = 128 + interrupted  # 130 SIGINT, 143 SIGTERM (CircleCI's cancel)
        raise error
    _finish(ctx, plan, rows, started, "failed; changed services rolled back")
    raise RolledBack(
        f"release to {plan.environment} failed ({why}; {len(broken)} of {len(rows)} services failed); "
        f"all {len(changed)} changed services were rolled back to their previous revisions",
        list(rows.values()),
    )


def _stopped_rolling_back(
    ctx: Context, plan: ReleasePlan, rows: dict[str, Row], started: datetime, again: KeyboardInterrupt
) -> NoReturn:
    """A second interrupt stopped the way back: the table, the marker, and what each service
    runs now, read fresh from AWS (never raises while saying so)."""
    try:
        live = ecs.describe_many(ctx.clients, [(s.cluster, s.service) for s in plan.services])
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
    signum = signum_of(again)
    error = ReleaseFailed(
        f"release to {plan.environment} interrupted again by {signal.Signals(signum).name} while rolling "
        f"back: stopped rolling back; the services now run: {runs}",
        list(rows.values()),
    )
    error.exit_code = 128 + signum
    raise error from None


def _row_after(row: Row, result: Result) -> None:
    """The row of a service after the way back."""
    row.seconds = result.seconds
    back = short(result.back_to or result.unit.previous or "?")
    failed = "" if result.succeeded else "failed, "
    if result.way == Way.ROLLED_BACK:
        row.status = f"{failed}rolled back to {back}"
    elif result.way == Way.BY_ECS:
        row.status = f"{failed}rolled back by ECS to {back}"
    elif result.way == Way.ROLLBACK_FAILED:
        row.status, row.reason = f"rollback failed ({back})", result.back_reason
    elif result.way in (Way.REPLACED, Way.BACK_REPLACED):
        row.status = "replaced by another deploy; not rolled back"
    elif result.way == Way.LEFT:
        row.status = f"{failed}not rolled back"


def _register(
    ctx: Context, plan: ReleasePlan, rows: dict[str, Row], options: ReleaseOptions, started: datetime
) -> dict[str, str]:
    """Every service's new revision, registered (at most `parallel` at once); none updated yet."""
    out = ctx.out
    ctx.clients.aws("ecs")  # made here: creating boto3 clients is not thread-safe

    def register(s: ServicePlan) -> str:
        return engine.retrying(lambda: prepare.register(ctx, s.request), options.sleep)

    with out.step(f"register {len(plan.services)} task definitions"):
        registered = engine.each(register, plan.services, options.parallel)
        arns: dict[str, str] = {}
        failed: dict[str, PipelineError] = {}
        for s, arn in zip(plan.services, registered, strict=True):
            if isinstance(arn, PipelineError):
                failed[s.name] = arn
                rows[s.name].status, rows[s.name].reason = "not registered", arn.message
            else:
                arns[s.name] = arn
                rows[s.name].new = short(arn)
                out.detail(f"{s.name}: registered {short(arn)}")
        if failed:
            _finish(ctx, plan, rows, started, "failed to register; nothing updated")
            raise next(iter(failed.values()))
    return arns


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
            runtask.migrate_with(
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
            kind = MigrationInterrupted if isinstance(exc, runtask.Interrupted) else MigrationStopped
            error = kind(message, list(rows.values()))
            error.exit_code = exc.exit_code if isinstance(exc, runtask.Interrupted) else error.exit_code
            raise error from None
        rows[s.name].status = "migrated"
        done.append(s.name)


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
    ended = f" ({failure})" if failure else ""
    message = f"release of {len(rows)} services to {plan.environment}{ended}: {revisions}"
    # A release has no one sha or revision: the message names every service's.
    now = datetime.now(UTC)
    markers.post(
        ctx, markers.Marker("release", plan.environment, "", "", started, now, not failure, message[:500])
    )


def to_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
