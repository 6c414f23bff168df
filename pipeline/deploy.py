"""The deploy verb: check image → render → register → update → wait → smoke → (roll back).

Everything that can be checked is checked before the first change (environment,
sha, template, image in ECR, cluster and service, the smoke URL): `gather` reads the
facts, `decide` (pure) turns them into a DeployChange, which dry-run prints and the real
run executes. The rollout itself is the engine's (pipeline/rollout/): a deploy is a
release of one service. After the service was updated, a failure rolls back to the last
known good revision and says what runs now. A rollback is a preset of the options (an
earlier revision instead of a new image) and goes through the same path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from . import ci_identity, ecs, git, interrupts, lock, markers, migrate, prepare, runtask, smoke, taskdef
from .config import Environment
from .context import Context
from .errors import (
    ConfigError,
    DeployFailed,
    DeployInterrupted,
    PipelineError,
    RollbackFailed,
    ServiceLeftChanged,
)
from .revisions import last_verified, mark_verified, resolve_revision, revision_sha
from .rollout import engine, native, strategy
from .rollout.model import Result, State, Unit, Way
from .safety import Busy, idle_service, missing_image, name_deployment, quietly, require_images, running_now

LAST_VERIFIED = "last-verified"  # DeployOptions.revision: the rollback target the rule picks


class Kind(StrEnum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class DeployOptions:
    """What to put into an environment's service and how; `deploy` takes nothing else."""

    env: str
    sha: str | None = None  # the image to deploy (default: CIRCLE_SHA1, else git HEAD)
    # The exact revision built earlier in this process (the demo): deployed as built, dirty
    # tag and all, even if HEAD has moved since; overrides `sha`.
    built: git.Revision | None = None
    # An existing revision to put back instead of a new one from the template: a number,
    # family:revision, an ARN, or LAST_VERIFIED.
    revision: str | None = None
    timeout: float = 600.0
    rollback_timeout: float | None = None  # the way back's wait (None: `timeout` again)
    dry_run: bool = False
    rollback: bool = True  # on failure, return to the revision that ran before
    smoke: bool = True
    smoke_url: str | None = None  # None: discover the load balancer's URL
    sleep: Callable[[float], None] = time.sleep
    busy: Busy = Busy.REFUSE  # another rollout of the service in progress (safety.idle_service)

    @classmethod
    def rollback_to(cls, env: str, to: str | None = None, **rest: Any) -> DeployOptions:
        """`invoke rollback`: deploy an earlier revision (default: the last verified one)."""
        return cls(env=env, revision=to or LAST_VERIFIED, **rest)

    @property
    def kind(self) -> Kind:
        return Kind.DEPLOY if self.revision is None else Kind.ROLLBACK


@dataclass(frozen=True)
class DeployFacts:
    """What `gather` read; `decide` decides from these alone."""

    environment: Environment
    service: dict[str, Any]  # DescribeServices, once no other rollout is in progress
    smoke_url: str | None
    new: prepare.NewRevision | None = None  # a deploy: the checked request
    target: str | None = None  # a rollback: the revision to put back
    target_sha: str = "unknown"
    test_url: str | None = None  # a native strategy's test listener: the smoke gate's URL


@dataclass(frozen=True)
class DeployChange:
    """A checked deploy, decided and ready to execute: nothing has changed yet.

    `request` is the RegisterTaskDefinition request of a new revision; a rollback has
    none and names its `target` instead.
    """

    kind: Kind
    environment: Environment
    sha: str
    service: dict[str, Any]
    smoke_url: str | None
    image: str | None = None
    request: dict[str, Any] | None = None
    target: str | None = None
    previous: str | None = None  # what a failure returns to: the last revision that COMPLETED
    strategy: str = "ROLLING"
    test_url: str | None = None  # native strategies: the smoke gate's URL (the test listener)

    @property
    def current(self) -> str:
        return str(self.service.get("taskDefinition", ""))


@dataclass(frozen=True)
class Released:
    environment: str
    task_definition: str
    url: str | None
    probe: smoke.Probe | None


def _settle_smoke_url(ctx: Context, environment: Environment, run_smoke: bool, url: str | None) -> str | None:
    if not run_smoke:
        return None
    return url or smoke.discover_url(
        ctx.settings, environment, ctx.clients, "pass --smoke-url URL (or --no-smoke)"
    )


def check(ctx: Context, options: DeployOptions) -> DeployChange:
    """Every check that needs no change: fails with one line before anything happens."""
    return decide(options, gather(ctx, options))


def gather(ctx: Context, options: DeployOptions) -> DeployFacts:
    """Read (and check) everything the decision needs: the CI ref, the template and image, or
    the rollback target and its images, the service once idle, the smoke URL."""
    ci_identity.require_ci_ref(ctx.settings.ci, ctx.environ, options.env)
    environment = ctx.settings.environment(options.env)
    new = None
    if options.revision is None:
        revision = options.built or ctx.revision(options.sha)
        settings = ctx.settings
        ci_identity.require_reviewed_commit(
            settings.root, settings.ci, ctx.environ, options.env, revision.sha
        )
        new = prepare.new_revision(ctx, environment, revision)
    live = ecs.describe_service(ctx.clients, environment.cluster, environment.service)
    service = idle_service(ctx, environment, live, options.busy, options.timeout, options.sleep)
    target, target_sha = None, "unknown"
    if options.revision is not None:
        current = str(service.get("taskDefinition", ""))
        if options.revision == LAST_VERIFIED:
            target = last_verified(ctx, environment.family, current)
        else:
            target = resolve_revision(ctx, environment.family, str(options.revision))
        require_images(ctx, target)
        target_sha = revision_sha(ctx, target)
    url = _settle_smoke_url(ctx, environment, options.smoke, options.smoke_url)
    test_url = smoke.test_listener_url(ctx.clients, service, url) if url else None
    return DeployFacts(environment, service, url, new, target, target_sha, test_url)


def decide(options: DeployOptions, facts: DeployFacts) -> DeployChange:
    """The deploy or rollback to execute, from the facts alone. Pure."""
    service = facts.service
    if service.get("status") not in (None, "ACTIVE"):
        raise ConfigError(
            f"ECS service {facts.environment.service!r} is {service.get('status')}; nothing was changed "
            "(recreate it with `invoke setup`)"
        )
    name = strategy.named(service)
    previous = ecs.last_known_good(service)
    if facts.new is not None:
        new = facts.new
        return DeployChange(
            Kind.DEPLOY,
            facts.environment,
            new.sha,
            service,
            facts.smoke_url,
            image=new.image,
            request=new.request,
            previous=previous,
            strategy=name,
            test_url=facts.test_url,
        )
    if facts.target is None:
        raise ConfigError(f"--env {options.env}: neither a new revision nor one to roll back to")
    return DeployChange(
        Kind.ROLLBACK,
        facts.environment,
        facts.target_sha,
        service,
        facts.smoke_url,
        target=facts.target,
        previous=previous,
        strategy=name,
        test_url=facts.test_url,
    )


def describe(ctx: Context, change: DeployChange) -> list[str]:
    """What executing `change` would do, for --dry-run."""
    how = [gate_line(change)[0]] if change.strategy != "ROLLING" else []
    if change.request is None:
        return [
            f"would roll back {change.environment.service} from {ecs.short(change.current or 'none')} "
            f"to {ecs.short(str(change.target))} (sha {change.sha})",
            *how,
            "dry run: nothing was updated",
        ]
    return [
        *how,
        json.dumps(change.request, indent=2, sort_keys=True),
        taskdef.diff(
            live_definition(ctx, change.current), change.request, ecs.short(change.current or "none")
        ),
        *(
            [f"the deploy {migrate.describe(change.environment.migrate_command)}"]
            if change.environment.migrate_command
            else []
        ),
        "dry run: nothing was registered or updated",
    ]


def gate_line(change: DeployChange) -> tuple[str, bool]:
    """How a native strategy's deployment is checked before production traffic, and whether a
    smoke test wanted there has no gate to run at (a warning). Pure."""
    hooks = (change.service.get("deploymentConfiguration") or {}).get("lifecycleHooks") or []
    paused = any(
        h.get("targetType") == "PAUSE" and native.GATE_STAGE in (h.get("lifecycleStages") or [])
        for h in hooks
    )
    if change.test_url and paused:
        return (
            f"{change.strategy}: ECS pauses at {native.GATE_STAGE}; the smoke test of {change.test_url} "
            "(the test listener) decides CONTINUE or ROLLBACK before production traffic"
        ), False
    if change.smoke_url:
        why = "no PAUSE hook at " + native.GATE_STAGE if change.test_url else "no test listener rule"
        return (
            f"{change.strategy}: no smoke gate ({why}; `invoke setup` adds it): "
            "the smoke test runs only after production traffic moved"
        ), True
    return f"{change.strategy}: no smoke test (--no-smoke): any PAUSE hook is continued at once", False


def live_definition(ctx: Context, arn: str | None) -> dict[str, Any]:
    if not arn:
        return {}
    revision = ecs.describe_revision(ctx.clients, arn)
    return taskdef.comparable(revision.definition, revision.raw_tags)


def deploy(ctx: Context, options: DeployOptions) -> Released | None:
    """Check, then register (a new revision) and roll it out; None after a dry run. A real run
    holds the environment's deploy lock (pipeline/lock.py) from its check to its end."""
    if options.dry_run:
        return _deploy(ctx, options)
    # Whatever can be refused without AWS is refused before the lock is taken.
    ci_identity.require_ci_ref(ctx.settings.ci, ctx.environ, options.env)
    env = ctx.settings.environment(options.env)
    sha = options.built.tag if options.built else options.sha or ctx.environ.get("CIRCLE_SHA1", "")
    wait = options.busy == Busy.WAIT
    with lock.held(ctx, [lock.name(env)], options.kind, sha, wait, options.timeout, options.sleep):
        return _deploy(ctx, options)


def _deploy(ctx: Context, options: DeployOptions) -> Released | None:
    out = ctx.out
    with out.step(f"check {options.kind} to {options.env}"):
        change = check(ctx, options)
        env = change.environment
        if change.image:
            out.detail(f"image {change.image} is in ECR")
        out.detail(f"service {env.service} in cluster {env.cluster} runs {ecs.short(change.current or '?')}")
        if change.target:
            out.detail(f"{ecs.short(change.current)} → {ecs.short(change.target)}")
        if change.strategy != "ROLLING":
            line, ungated = gate_line(change)
            out.warn(line) if ungated else out.detail(line)
    if options.dry_run:
        for line in describe(ctx, change):
            out.say(line)
        return None
    arn = change.target
    if change.request is not None:
        with out.step(f"register task definition {env.family}"):
            arn = prepare.register(ctx, change.request)
            out.detail(f"registered {ecs.short(arn)}")
    assert arn is not None  # a change has a request or a target
    if change.request is not None and env.migrate_command:
        runtask.migrate_with(ctx, env, change.service, change.current, arn, options.timeout, options.sleep)
    return roll_out(ctx, change, arn, options)


def roll_out(ctx: Context, change: DeployChange, arn: str, options: DeployOptions) -> Released:
    """Put `arn` into service through the engine, verify it, and on failure return to the
    revision that was running and COMPLETED in `change.service` (the service just before).

    SIGINT/SIGTERM stop the wait (exit 130/143): a rolling update is left to ECS, changed
    no further; a native (blue/green, linear, canary) deployment still going forward is
    stopped with ROLLBACK, so no unwatched revision reaches or stays in production.
    """
    env = change.environment
    with interrupts.guard():
        try:
            return _roll_out(ctx, change, arn, options)
        except interrupts.Interrupted as sig:
            what = f"{change.kind} of {ecs.short(arn)} to {env.name}"
            done = "stopped waiting and changed nothing more"
            if change.strategy != "ROLLING":  # a native deployment goes back rather than on unwatched
                done = (
                    quietly(
                        ctx,
                        "roll the service deployment back",
                        lambda: native.stop_and_roll_back(
                            ctx.clients, env.cluster, env.service, options.timeout, options.sleep
                        ),
                    )
                    or "could not stop the service deployment"
                )
            message = (
                f"{what} interrupted by {sig.name}: {done}; "
                f"the service runs {running_now(ctx, env)}; follow it with `invoke status --env {env.name}`"
            )
            raise DeployInterrupted(message, sig.signum) from None


def _roll_out(ctx: Context, change: DeployChange, arn: str, options: DeployOptions) -> Released:
    out, env, kind = ctx.out, change.environment, change.kind
    unit = Unit(
        env.service,
        env,
        arn,
        change.service,
        change.previous,
        change.strategy,
        change.smoke_url,
        ctx.settings.smoke,
        change.test_url,
    )
    rollout = engine.RolloutOptions(
        kind,
        env.name,
        options.timeout,
        rollback_timeout=options.rollback_timeout,
        rollback=options.rollback,
        sleep=options.sleep,
    )
    progress = engine.Progress(out)
    started = datetime.now(UTC)
    results = engine.advance(ctx, [unit], rollout, progress)
    result = results[unit.key]
    if result.error is not None and not result.updated:
        raise result.error  # UpdateService itself failed: nothing was changed
    if result.succeeded:
        # Verified: a failing tag only costs this revision its place as a rollback target.
        quietly(ctx, "tag the revision's outcome", lambda: mark_verified(ctx, arn, bool(change.smoke_url)))
        markers.post(ctx, markers.Marker(kind, env.name, change.sha, arn, started, datetime.now(UTC)))
        url = change.smoke_url
        out.say(f"{kind} of {ecs.short(arn)} to {env.name} succeeded" + (f": {url} answers" if url else ""))
        return Released(env.name, arn, url, result.probe)
    markers.post(ctx, markers.Marker(kind, env.name, change.sha, arn, started, datetime.now(UTC), False))
    replaced = result.outcome.replaced_by
    if result.outcome.state == State.REPLACED and replaced is not None:
        # Another deploy took over: undoing it would undo someone else's change.
        raise ServiceLeftChanged(
            f"{kind} of {ecs.short(arn)} to {env.name} did not finish: it was replaced by "
            f"{name_deployment(ctx, replaced)}; not rolled back over that deploy; "
            f"the service now runs {running_now(ctx, env)}"
        )
    engine.report_stopped(ctx, results, progress)
    _require_way_back(ctx, change, arn, options, result)
    going_back = datetime.now(UTC)
    engine.recover(ctx, results, rollout, progress)
    raise _failure(ctx, change, arn, options, result, going_back)


def _require_way_back(
    ctx: Context, change: DeployChange, arn: str, options: DeployOptions, result: Result
) -> None:
    """Before our own rollback: a target whose image is gone could never start (ECS would
    cycle through failing tasks), so none is started; the service stays as ECS left it."""
    previous, env = change.previous, change.environment
    if result.outcome.rolled_back_by_ecs is not None or not options.rollback or previous is None:
        return
    gone = quietly(ctx, "check the rollback target's image", lambda: missing_image(ctx, previous))
    if gone:
        raise ServiceLeftChanged(
            f"{change.kind} of {ecs.short(arn)} to {env.name} failed: {result.outcome.reason.rstrip('.')}; "
            f"not rolled back: {ecs.short(previous)} runs {gone}, which is no longer in ECR; "
            f"the service now runs {running_now(ctx, env)}"
        )


def _failure(
    ctx: Context, change: DeployChange, arn: str, options: DeployOptions, result: Result, since: datetime
) -> PipelineError:
    """What a failed deploy came to, as the one error its caller raises."""
    env = change.environment
    what = f"{change.kind} of {ecs.short(arn)} to {env.name} failed: {result.outcome.reason.rstrip('.')}"
    if result.way in (None, Way.LEFT, Way.REPLACED):
        why = "--no-rollback" if not options.rollback else "no earlier revision had COMPLETED"
        return ServiceLeftChanged(
            f"{what}; not rolled back ({why}); the service now runs {running_now(ctx, env)}"
        )
    by_ecs = result.outcome.rolled_back_by_ecs
    back = result.back_to or (by_ecs.task_definition if by_ecs else str(change.previous))
    name = f"ECS's rollback to {ecs.short(back)}" if by_ecs else f"the rollback to {ecs.short(back)}"
    if result.way == Way.BACK_REPLACED and result.back_replaced_by is not None:
        return ServiceLeftChanged(
            f"{what}; {name} was replaced by {name_deployment(ctx, result.back_replaced_by)}; "
            f"not rolled back over that deploy; the service now runs {running_now(ctx, env)}"
        )
    if result.way == Way.ROLLBACK_FAILED:
        _post_rollback_marker(ctx, env, back, since, succeeded=False)
        return RollbackFailed(
            f"{what}; {name} failed too: {result.back_reason}; the service now runs {running_now(ctx, env)}"
        )
    _post_rollback_marker(ctx, env, back, since, succeeded=True)
    done = f"ECS rolled back to {ecs.short(back)}" if by_ecs else f"rolled back to {ecs.short(back)}"
    return DeployFailed(f"{what}; {done}, which runs now")


def _post_rollback_marker(
    ctx: Context, env: Environment, arn: str, started: datetime, succeeded: bool
) -> None:
    """Never raises: the sha is looked up only when a marker will be posted, and quietly."""
    if not ctx.environ.get("HONEYCOMB_API_KEY"):
        return
    sha = quietly(ctx, "look up the rolled-back revision's sha", lambda: revision_sha(ctx, arn)) or "unknown"
    markers.post(ctx, markers.Marker("rollback", env.name, sha, arn, started, datetime.now(UTC), succeeded))
