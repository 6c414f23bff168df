"""The deploy verb: check image → render → register → update → wait → smoke → (roll back).

Everything that can be checked is checked before the first change (environment,
sha, template, image in ECR, cluster and service, the smoke URL). After the service
was updated, a failure rolls back to the last known good revision and says what runs
now. One options object drives it; a rollback is a preset of those options (an
earlier revision instead of a new image) and goes through the same path. `check`
decides and returns a DeployChange (plain data); dry-run prints it, the real run
executes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from . import ci_identity, ecr, ecs, git, interrupts, lock, markers, migrate, smoke, stopped, taskdef
from .clients import aws_errors
from .config import Environment, Settings
from .context import Context
from .errors import DeployFailed, DeployInterrupted, RollbackFailed, ServiceLeftChanged, StepFailed
from .revisions import last_verified, mark_verified, resolve_revision, revision_sha
from .safety import (
    idle_service,
    missing_image,
    name_deployment,
    one_line,
    quietly,
    require_images,
    running_now,
)
from .transient import calling

LAST_VERIFIED = "last-verified"  # DeployOptions.revision: the rollback target the rule picks


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
    dry_run: bool = False
    rollback: bool = True  # on failure, return to the revision that ran before
    smoke: bool = True
    smoke_url: str | None = None  # None: discover the load balancer's URL
    sleep: Callable[[float], None] = time.sleep
    # Another rollout of the service in progress: wait for it to end, or replace it
    # (default: refuse, naming it). See safety.idle_service.
    wait: bool = False
    force: bool = False

    @classmethod
    def rollback_to(cls, env: str, to: str | None = None, **rest: Any) -> DeployOptions:
        """`invoke rollback`: deploy an earlier revision (default: the last verified one)."""
        return cls(env=env, revision=to or LAST_VERIFIED, **rest)

    @property
    def kind(self) -> str:
        return "deploy" if self.revision is None else "rollback"


@dataclass(frozen=True)
class DeployChange:
    """A checked deploy, decided and ready to execute: nothing has changed yet.

    `request` is the RegisterTaskDefinition request of a new revision; a rollback has
    none and names its `target` instead.
    """

    kind: str
    environment: Environment
    sha: str
    service: dict[str, Any]
    smoke_url: str | None
    image: str | None = None
    request: dict[str, Any] | None = None
    target: str | None = None

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


def render_inputs(
    settings: Settings,
    environment: Environment,
    image: str,
    sha: str,
    account: str,
    created_at: datetime,
    build_url: str = "",
) -> taskdef.RenderInputs:
    """What a template's placeholders are filled with, for one environment and image."""
    return taskdef.RenderInputs(
        family=environment.family,
        container=environment.container,
        image=image,
        sha=sha,
        environment=environment.name,
        region=settings.region,
        account_id=account,
        prefix=settings.prefix,
        cluster=environment.cluster,
        service=environment.service,
        execution_role_arn=settings.execution_role_arn(account),
        log_group=settings.log_group,
        port=settings.container_port,
        base_path=settings.base_path,
        created_at=created_at,
        build_url=build_url,
        task_role_arn=settings.task_role_arn(account),
    )


def check(ctx: Context, options: DeployOptions) -> DeployChange:
    """Every check that needs no change: fails with one line before anything happens."""
    ci_identity.require_ci_ref(ctx.settings.ci, ctx.environ, options.env)
    if options.revision is not None:
        return _check_rollback(ctx, options)
    settings = ctx.settings
    environment = settings.environment(options.env)
    revision = options.built or ctx.revision(options.sha)
    template = taskdef.load_template(environment.template)
    values = taskdef.load_values(environment.values)
    record = ecr.require_image(settings, ctx.clients, revision.tag)
    # The account owns the registry DescribeImages answered from: no STS call on the path.
    account = settings.account_id or record.registry_id or ecr.account_id(settings, ctx.clients)
    registry = settings.ecr_endpoint or settings.registry(account)
    inputs = render_inputs(
        settings,
        environment,
        f"{registry}/{settings.repository}:{revision.tag}",
        revision.tag,
        account,
        datetime.now(UTC),
        ctx.environ.get("CIRCLE_BUILD_URL", ""),
    )

    def shown(path: Path) -> str:
        return str(path.relative_to(settings.root) if path.is_relative_to(settings.root) else path)

    where = shown(environment.template)
    request = taskdef.render(template, values, inputs, where, shown(environment.values))
    taskdef.validate_request(request, where, ctx.clients.aws("ecs").meta.service_model)
    service = _idle_service(ctx, environment, options)
    return DeployChange(
        "deploy",
        environment,
        revision.tag,
        service,
        _settle_smoke_url(ctx, environment, options.smoke, options.smoke_url),
        image=inputs.image,
        request=request,
    )


def _check_rollback(ctx: Context, options: DeployOptions) -> DeployChange:
    env = ctx.settings.environment(options.env)
    service = _idle_service(ctx, env, options)
    current = str(service.get("taskDefinition", ""))
    if options.revision == LAST_VERIFIED:
        target = last_verified(ctx, env.family, current)
    else:
        target = resolve_revision(ctx, env.family, str(options.revision))
    require_images(ctx, target)
    url = _settle_smoke_url(ctx, env, options.smoke, options.smoke_url)
    return DeployChange("rollback", env, revision_sha(ctx, target), service, url, target=target)


def _idle_service(ctx: Context, env: Environment, options: DeployOptions) -> dict[str, Any]:
    service = ecs.describe_service(ctx.clients, env.cluster, env.service)
    return idle_service(ctx, env, service, options.wait, options.force, options.timeout, options.sleep)


def describe(ctx: Context, change: DeployChange) -> list[str]:
    """What executing `change` would do, for --dry-run."""
    if change.request is None:
        return [
            f"would roll back {change.environment.service} from {ecs.short(change.current or 'none')} "
            f"to {ecs.short(str(change.target))} (sha {change.sha})",
            "dry run: nothing was updated",
        ]
    return [
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
    with lock.held(ctx, [lock.name(env)], options.kind, sha, options.wait, options.timeout, options.sleep):
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
    if options.dry_run:
        for line in describe(ctx, change):
            out.say(line)
        return None
    arn = change.target
    if change.request is not None:
        with out.step(f"register task definition {env.family}"):
            arn = register(ctx, change.request)
    assert arn is not None  # a change has a request or a target
    if change.request is not None and env.migrate_command:
        migrate.run(ctx, env, change.service, change.current, arn, options.timeout, options.sleep)
    return roll_out(ctx, change, arn, options)


def register(ctx: Context, request: dict[str, Any]) -> str:
    """Register a rendered revision (deploys and one-off tasks with --sha); its ARN."""
    with aws_errors("ecs:RegisterTaskDefinition"):
        registered = ctx.clients.aws("ecs").register_task_definition(**request)["taskDefinition"]
    arn = str(registered["taskDefinitionArn"])
    ctx.out.detail(f"registered {ecs.short(arn)}")
    return arn


def _update(ctx: Context, env: Environment, arn: str) -> ecs.Deployment:
    """UpdateService; the deployment ECS started for `arn`. An error here changed nothing."""
    with aws_errors("ecs:UpdateService"):
        updated = ctx.clients.aws("ecs").update_service(
            cluster=env.cluster, service=env.service, taskDefinition=arn
        )["service"]
    started = [
        d
        for d in ecs.deployments(updated)
        if d.status == "PRIMARY" and ecs.same_revision(d.task_definition, arn)
    ]
    if not started:
        raise DeployFailed(f"UpdateService started no deployment of {ecs.short(arn)}")
    ctx.out.detail(f"deployment {started[0].id} started; waiting for the stale deployments to drain")
    return started[0]


def _wait_for(
    ctx: Context,
    env: Environment,
    deployment: ecs.Deployment,
    arn: str,
    options: DeployOptions,
    watcher: ecs.Watcher,
    previous: str | None = None,
) -> ecs.Outcome:
    outcome = ecs.wait(
        ctx.clients,
        env.cluster,
        env.service,
        deployment.id,
        arn,
        watcher,
        options.timeout,
        sleep=options.sleep,
        previous=previous,
        since=deployment.created_at,
    )
    if outcome.state == "failed":
        # Only a report: a throttled or failing ListTasks/DescribeTasks/logs read must not hide the failure.
        quietly(ctx, "find out why tasks stopped", lambda: stopped.report(ctx, env, arn))
    return outcome


def roll_out(ctx: Context, change: DeployChange, arn: str, options: DeployOptions) -> Released:
    """Put `arn` into service, verify it, and on failure return to the revision that was
    running and COMPLETED in `change.service` (the service as it was just before).

    SIGINT/SIGTERM stop the wait and change nothing more (exit 130/143).
    """
    env = change.environment
    with interrupts.guard():
        try:
            return _roll_out(ctx, change, arn, options)
        except interrupts.Interrupted as sig:
            what = f"{change.kind} of {ecs.short(arn)} to {env.name}"
            message = (
                f"{what} interrupted by {sig.name}: stopped waiting and changed nothing more; "
                f"the service runs {running_now(ctx, env)}; follow it with `invoke status --env {env.name}`"
            )
            raise DeployInterrupted(message, sig.signum) from None


def _roll_out(ctx: Context, change: DeployChange, arn: str, options: DeployOptions) -> Released:
    out = ctx.out
    env, sha, service, kind = change.environment, change.sha, change.service, change.kind
    smoke_url = change.smoke_url
    probe = None
    started = datetime.now(UTC)
    previous = ecs.last_known_good(service)
    ecs_rollback: ecs.Deployment | None = None
    ours: ecs.Deployment | None = None
    watcher = ecs.Watcher(out)
    watcher.prime(service)  # its events are history; print only what comes after
    try:
        with out.step(f"{kind} {ecs.short(arn)} to {env.service}"):
            ours = _update(ctx, env, arn)
            outcome = _wait_for(ctx, env, ours, arn, options, watcher, previous)
            if outcome.state == "replaced" and outcome.replaced_by is not None:
                raise _Replaced(outcome.replaced_by)
            if outcome.state != "succeeded":
                ecs_rollback = outcome.rolled_back_by_ecs
                raise DeployFailed(outcome.reason)
        if smoke_url:
            with out.step("smoke test"):
                probe = smoke.check(smoke_url, ctx.settings.smoke, out.detail, sleep=options.sleep)
    except _Replaced as replaced:
        # Another deploy took over: undoing it would undo someone else's change.
        markers.post(ctx, kind, env.name, sha, arn, started, datetime.now(UTC), succeeded=False)
        raise ServiceLeftChanged(
            f"{kind} of {ecs.short(arn)} to {env.name} did not finish: it was replaced by "
            f"{name_deployment(ctx, replaced.by)}; not rolled back over that deploy; "
            f"the service now runs {running_now(ctx, env)}"
        ) from None
    except (DeployFailed, StepFailed) as exc:
        failure = exc.message
    except Exception as exc:
        if ours is None:
            raise  # UpdateService itself failed: nothing was changed
        failure = one_line(exc)  # AWS, network, a vanished service, a bug: the same safe path
    else:
        # Verified: a failing tag only costs this revision its place as a rollback target.
        quietly(ctx, "tag the revision's outcome", lambda: mark_verified(ctx, arn, bool(smoke_url)))
        markers.post(ctx, kind, env.name, sha, arn, started, datetime.now(UTC))
        out.say(
            f"{kind} of {ecs.short(arn)} to {env.name} succeeded"
            + (f": {smoke_url} answers" if smoke_url else "")
        )
        return Released(env.name, arn, smoke_url, probe)
    _recover(ctx, change, arn, options, failure, previous, ecs_rollback, started, watcher)


class _Replaced(Exception):  # noqa: N818 - a signal inside roll_out, never seen outside
    def __init__(self, by: ecs.Deployment) -> None:
        super().__init__(by.id)
        self.by = by


def _recover(
    ctx: Context,
    change: DeployChange,
    arn: str,
    options: DeployOptions,
    failure: str,
    previous: str | None,
    ecs_rollback: ecs.Deployment | None,
    started: datetime,
    watcher: ecs.Watcher,
) -> NoReturn:
    """After a failure past UpdateService: roll back where possible and always raise."""
    env, kind = change.environment, change.kind
    markers.post(ctx, kind, env.name, change.sha, arn, started, datetime.now(UTC), succeeded=False)
    what = f"{kind} of {ecs.short(arn)} to {env.name} failed: {failure.rstrip('.')}"
    if ecs_rollback is not None:
        # ECS's circuit breaker is already rolling back: wait for it rather than start a
        # second replacement of every task.
        back_to = ecs.short(ecs_rollback.task_definition)
        _go_back(
            ctx,
            change,
            ecs_rollback.task_definition,
            lambda: ecs_rollback,
            options,
            watcher,
            started,
            (what, f"wait for ECS's rollback to {back_to}", f"ECS's rollback to {back_to}"),
            f"ECS rolled back to {back_to}",  # the failure already names the circuit breaker
        )
    if not options.rollback or previous is None or ecs.same_revision(previous, arn):
        why = "--no-rollback" if not options.rollback else "no earlier revision had COMPLETED"
        raise ServiceLeftChanged(
            f"{what}; not rolled back ({why}); the service now runs {running_now(ctx, env)}"
        )
    # A target whose image is gone could never start: ECS would cycle through failing tasks.
    gone = quietly(ctx, "check the rollback target's image", lambda: missing_image(ctx, previous))
    if gone:
        raise ServiceLeftChanged(
            f"{what}; not rolled back: {ecs.short(previous)} runs {gone}, which is no longer in ECR; "
            f"the service now runs {running_now(ctx, env)}"
        )
    back_to = ecs.short(previous)
    _go_back(
        ctx,
        change,
        previous,
        lambda: calling(
            lambda: _update(ctx, env, previous), time.monotonic() + options.timeout, ctx.out.detail
        ),
        options,
        watcher,
        datetime.now(UTC),
        (what, f"roll back to {back_to}", f"the rollback to {back_to}"),
        f"rolled back to {back_to}",
    )


def _go_back(
    ctx: Context,
    change: DeployChange,
    target: str,
    start: Callable[[], ecs.Deployment],
    options: DeployOptions,
    watcher: ecs.Watcher,
    started: datetime,
    said: tuple[str, str, str],
    done: str,
) -> NoReturn:
    """Wait for the way back to `target` (ECS's rollback or ours) and raise what it came to."""
    env = change.environment
    what, step, name = said
    try:
        with ctx.out.step(step):
            back = _wait_for(ctx, env, start(), target, options, watcher)
            if back.state == "replaced" and back.replaced_by is not None:
                raise _Replaced(back.replaced_by)
            if back.state != "succeeded":
                raise DeployFailed(back.reason)
    except _Replaced as replaced:
        # Another deploy (a --force, a person) took over the way back: nothing is lost, and
        # undoing it would undo someone else's change.
        raise ServiceLeftChanged(
            f"{what}; {name} was replaced by {name_deployment(ctx, replaced.by)}; not rolled back "
            f"over that deploy; the service now runs {running_now(ctx, env)}"
        ) from None
    except Exception as exc:
        _post_rollback_marker(ctx, env, target, started, succeeded=False)
        raise RollbackFailed(
            f"{what}; {name} failed too: {one_line(exc)}; the service now runs {running_now(ctx, env)}"
        ) from None
    _post_rollback_marker(ctx, env, target, started, succeeded=True)
    raise DeployFailed(f"{what}; {done}, which runs now")


def _post_rollback_marker(
    ctx: Context, env: Environment, arn: str, started: datetime, succeeded: bool
) -> None:
    """Never raises: the sha is looked up only when a marker will be posted, and quietly."""
    if not ctx.environ.get("HONEYCOMB_API_KEY"):
        return
    sha = quietly(ctx, "look up the rolled-back revision's sha", lambda: revision_sha(ctx, arn)) or "unknown"
    markers.post(ctx, "rollback", env.name, sha, arn, started, datetime.now(UTC), succeeded)
