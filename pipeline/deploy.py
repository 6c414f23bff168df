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
from typing import Any

from . import ecr, ecs, markers, migrate, smoke, stopped, taskdef
from .clients import aws_errors
from .config import Environment
from .context import Context
from .errors import DeployFailed, NotFound, RollbackFailed, StepFailed

LAST_VERIFIED = "last-verified"  # DeployOptions.revision: the rollback target the rule picks


@dataclass(frozen=True)
class DeployOptions:
    """What to put into an environment's service and how; `deploy` takes nothing else."""

    env: str
    sha: str | None = None  # the image to deploy (default: CIRCLE_SHA1, else git HEAD)
    # An existing revision to put back instead of a new one from the template: a number,
    # family:revision, an ARN, or LAST_VERIFIED.
    revision: str | None = None
    timeout: float = 600.0
    dry_run: bool = False
    rollback: bool = True  # on failure, return to the revision that ran before
    smoke: bool = True
    smoke_url: str | None = None  # None: discover the load balancer's URL
    sleep: Callable[[float], None] = time.sleep

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
    return url or smoke.discover_url(ctx.settings, environment, ctx.clients)


def check(ctx: Context, options: DeployOptions) -> DeployChange:
    """Every check that needs no change: fails with one line before anything happens."""
    if options.revision is not None:
        return _check_rollback(ctx, options)
    settings = ctx.settings
    environment = settings.environment(options.env)
    revision = ctx.revision(options.sha)
    template = taskdef.load_template(environment.template)
    values = taskdef.load_values(environment.values)
    account = ecr.account_id(settings, ctx.clients)
    registry = settings.ecr_endpoint or settings.registry(account)
    inputs = taskdef.RenderInputs(
        family=environment.family,
        container=environment.container,
        image=f"{registry}/{settings.repository}:{revision.tag}",
        sha=revision.tag,
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
        created_at=datetime.now(UTC),
        build_url=ctx.environ.get("CIRCLE_BUILD_URL", ""),
    )
    where = str(
        environment.template.relative_to(settings.root)
        if environment.template.is_relative_to(settings.root)
        else environment.template
    )
    request = taskdef.render(template, values, inputs, where)
    taskdef.validate_request(request, where)
    ecr.require_image(settings, ctx.clients, revision.tag)
    service = ecs.describe_service(ctx.clients, environment.cluster, environment.service)
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
    service = ecs.describe_service(ctx.clients, env.cluster, env.service)
    current = str(service.get("taskDefinition", ""))
    if options.revision == LAST_VERIFIED:
        target = last_verified(ctx, env.family, current)
    else:
        target = resolve_revision(ctx, env.family, str(options.revision))
    url = _settle_smoke_url(ctx, env, options.smoke, options.smoke_url)
    return DeployChange("rollback", env, revision_sha(ctx, target), service, url, target=target)


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
    """Check, then register (a new revision) and roll it out; None after a dry run."""
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
        migrate.run(ctx, change, arn, options.timeout, options.sleep)
    return roll_out(ctx, change, arn, options)


def register(ctx: Context, request: dict[str, Any]) -> str:
    """Register a rendered revision (deploys and one-off tasks with --sha); its ARN."""
    with aws_errors("ecs:RegisterTaskDefinition"):
        registered = ctx.clients.aws("ecs").register_task_definition(**request)["taskDefinition"]
    arn = str(registered["taskDefinitionArn"])
    ctx.out.detail(f"registered {ecs.short(arn)}")
    return arn


def _update_and_wait(
    ctx: Context,
    env: Environment,
    arn: str,
    timeout: float,
    sleep: Callable[[float], None],
    watcher: ecs.Watcher,
) -> ecs.Outcome:
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
        return ecs.Outcome("failed", f"UpdateService started no deployment of {ecs.short(arn)}")
    ctx.out.detail(f"deployment {started[0].id} started; waiting for the stale deployments to drain")
    return _wait_for(ctx, env, started[0].id, arn, timeout, sleep, watcher)


def _wait_for(
    ctx: Context,
    env: Environment,
    deployment_id: str,
    arn: str,
    timeout: float,
    sleep: Callable[[float], None],
    watcher: ecs.Watcher,
) -> ecs.Outcome:
    outcome = ecs.wait(
        ctx.clients, env.cluster, env.service, deployment_id, arn, watcher, timeout, sleep=sleep
    )
    if outcome.state == "failed":
        stopped.report(ctx, env, arn)
    return outcome


def roll_out(ctx: Context, change: DeployChange, arn: str, options: DeployOptions) -> Released:
    """Put `arn` into service, verify it, and on failure return to the revision that was
    running and COMPLETED in `change.service` (the service as it was just before)."""
    out = ctx.out
    env, sha, service, kind = change.environment, change.sha, change.service, change.kind
    timeout, sleep, smoke_url = options.timeout, options.sleep, change.smoke_url
    probe = None
    started = datetime.now(UTC)
    previous = ecs.last_known_good(service)
    ecs_rollback: ecs.Deployment | None = None
    watcher = ecs.Watcher(out)
    watcher.prime(service)  # its events are history; print only what comes after
    try:
        with out.step(f"{kind} {ecs.short(arn)} to {env.service}"):
            outcome = _update_and_wait(ctx, env, arn, timeout, sleep, watcher)
            if outcome.state != "succeeded":
                ecs_rollback = outcome.rolled_back_by_ecs
                raise DeployFailed(outcome.reason)
        if smoke_url:
            with out.step("smoke test"):
                probe = smoke.check(smoke_url, ctx.settings.smoke, out.detail, sleep=sleep)
    except (DeployFailed, StepFailed) as exc:
        failure = exc.message
    else:
        mark_verified(ctx, arn)
        markers.post(ctx, kind, env.name, sha, arn, started, datetime.now(UTC))
        out.say(
            f"{kind} of {ecs.short(arn)} to {env.name} succeeded"
            + (f": {smoke_url} answers" if smoke_url else "")
        )
        return Released(env.name, arn, smoke_url, probe)

    markers.post(ctx, kind, env.name, sha, arn, started, datetime.now(UTC), succeeded=False)
    what = f"{kind} of {ecs.short(arn)} to {env.name} failed: {failure}"
    if ecs_rollback is not None:
        # ECS's circuit breaker is already rolling back: wait for it rather than start a
        # second replacement of every task.
        back_to = ecs_rollback.task_definition
        with out.step(f"wait for ECS's rollback to {ecs.short(back_to)}"):
            back = _wait_for(ctx, env, ecs_rollback.id, back_to, timeout, sleep, watcher)
            _post_rollback_marker(ctx, env, back_to, started, back)
            if back.state != "succeeded":
                raise RollbackFailed(
                    f"{what}; ECS's rollback to {ecs.short(back_to)} failed too: {back.reason}"
                )
        raise DeployFailed(
            f"{what}; ECS's circuit breaker rolled back to {ecs.short(back_to)}, which runs now"
        )
    if not options.rollback or previous is None or ecs.same_revision(previous, arn):
        why = "--no-rollback" if not options.rollback else "no earlier revision had COMPLETED"
        running = ecs.short(
            ecs.describe_service(ctx.clients, env.cluster, env.service).get("taskDefinition", "?")
        )
        raise DeployFailed(f"{what}; not rolled back ({why}); the service now runs {running}")
    rolled_back_at = datetime.now(UTC)
    with out.step(f"roll back to {ecs.short(previous)}"):
        back = _update_and_wait(ctx, env, previous, timeout, sleep, watcher)
        _post_rollback_marker(ctx, env, previous, rolled_back_at, back)
        if back.state != "succeeded":
            raise RollbackFailed(f"{what}; the rollback to {ecs.short(previous)} failed too: {back.reason}")
    raise DeployFailed(f"{what}; rolled back to {ecs.short(previous)}, which runs now")


def _post_rollback_marker(
    ctx: Context, env: Environment, arn: str, started: datetime, outcome: ecs.Outcome
) -> None:
    succeeded = outcome.state == "succeeded"
    markers.post(
        ctx, "rollback", env.name, revision_sha(ctx, arn), arn, started, datetime.now(UTC), succeeded
    )


def mark_verified(ctx: Context, arn: str) -> None:
    """Tag a revision that rolled out and passed its smoke test: rollback targets come from these."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with aws_errors("ecs:TagResource"):
        ctx.clients.aws("ecs").tag_resource(
            resourceArn=arn, tags=[{"key": taskdef.TAG_VERIFIED, "value": stamp}]
        )


def revision_sha(ctx: Context, arn: str) -> str:
    """The git sha a revision was registered for (its tag), or "unknown"."""
    return ecs.describe_revision(ctx.clients, arn).tags.get(taskdef.TAG_SHA, "unknown")


def _revision_number(arn: str) -> int:
    return int(arn.rsplit(":", 1)[-1])


def last_verified(ctx: Context, family: str, exclude: str, scan: int = 25) -> str:
    """The newest revision of `family`, other than `exclude`, that once deployed and passed."""
    ecs_client = ctx.clients.aws("ecs")
    arns: list[str] = []
    with aws_errors("ecs:ListTaskDefinitions"):
        for page in ecs_client.get_paginator("list_task_definitions").paginate(
            familyPrefix=family, status="ACTIVE"
        ):
            arns.extend(a for a in page["taskDefinitionArns"] if ecs.short(a).rsplit(":", 1)[0] == family)
    # Sorted here: ListTaskDefinitions' own sort is not to be relied on.
    for arn in sorted(arns, key=_revision_number, reverse=True)[:scan]:
        if ecs.same_revision(arn, exclude):
            continue
        if taskdef.TAG_VERIFIED in ecs.describe_revision(ctx.clients, arn).tags:
            return arn
    raise NotFound(f"no earlier verified revision of {family} to roll back to; pass --to REVISION")


def resolve_revision(ctx: Context, family: str, to: str) -> str:
    """--to: a revision number, family:revision or an ARN → the task definition ARN."""
    name = f"{family}:{to}" if to.isdigit() else to
    ecs_client = ctx.clients.aws("ecs")
    with aws_errors("ecs:DescribeTaskDefinition", handled=("ClientException", "InvalidParameterException")):
        try:
            return str(
                ecs_client.describe_task_definition(taskDefinition=name)["taskDefinition"][
                    "taskDefinitionArn"
                ]
            )
        except (ecs_client.exceptions.ClientException, ecs_client.exceptions.InvalidParameterException):
            raise NotFound(
                f"--to {to}: no task definition {name}; `invoke status` shows the running revision"
            ) from None
