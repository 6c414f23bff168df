"""Revisions of a task definition: the verified tag, the sha, and the rule rollbacks follow."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from . import ecr, ecs, taskdef
from .clients import aws_errors
from .context import Context
from .errors import ConfigError, NotFound, PipelineError
from .transient import calling


def mark_verified(ctx: Context, arn: str, smoke_tested: bool = True) -> None:
    """Tag a revision that rolled out. Only one that passed its smoke test is `verified`, and
    rollback targets come only from those (their images are kept in ECR for as long as they
    may be one, ecr.KEEP_PREFIX); one rolled out without a smoke test (--no-smoke) is tagged
    `rolled-out` instead, and the output says it is no rollback target."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    tag = taskdef.TAG_VERIFIED if smoke_tested else taskdef.TAG_ROLLED_OUT

    def call() -> None:
        with aws_errors("ecs:TagResource"):
            ctx.clients.aws("ecs").tag_resource(resourceArn=arn, tags=[{"key": tag, "value": stamp}])

    calling(call, time.monotonic() + 60, ctx.out.detail)  # a blip must not cost the tag
    if not smoke_tested:
        ctx.out.detail(
            f"{ecs.short(arn)} rolled out without a smoke test: tagged {taskdef.TAG_ROLLED_OUT}, "
            "not verified, so it is no rollback target"
        )
        return
    try:
        for image_tag in own_image_tags(ctx, ecs.describe_revision(ctx.clients, arn).definition):
            ecr.keep(ctx.settings, ctx.clients, image_tag)
    except PipelineError as exc:  # the deploy succeeded; the image is only not protected yet
        ctx.out.warn(f"could not mark {ecs.short(arn)}'s image as kept in ECR: {exc.message}")


def own_image_tags(ctx: Context, definition: dict[str, Any]) -> list[str]:
    """The tags of this project's repository that a task definition's containers run."""
    tags = []
    for container in definition.get("containerDefinitions", []):
        name, _, tag = str(container.get("image", "")).rpartition(":")
        if tag and "/" not in tag and name.endswith(f"/{ctx.settings.repository}"):
            tags.append(tag)
    return tags


def revision_sha(ctx: Context, arn: str) -> str:
    """The git sha a revision was registered for (its tag), or "unknown"."""
    return ecs.describe_revision(ctx.clients, arn).tags.get(taskdef.TAG_SHA, "unknown")


def _revision_number(arn: str) -> int:
    return int(arn.rsplit(":", 1)[-1])


def _verified(ctx: Context, arn: str) -> ecs.Verified:
    tags = ecs.describe_revision(ctx.clients, arn).tags
    return ecs.Verified(
        arn,
        _revision_number(arn),
        ecs.parse_stamp(tags.get(taskdef.TAG_VERIFIED)),
        ecs.parse_stamp(tags.get(taskdef.TAG_CREATED)),
    )


def last_verified(ctx: Context, family: str, running: str) -> str:
    """The newest revision of `family` that goes back from `running` (ecs.goes_back):
    verified, and older than the running revision. Never the one a rollback just left.
    Every revision of the family is a candidate, newest first, however many unverified
    ones (--no-smoke deploys, failed ones) came since the last verified one."""
    ecs_client = ctx.clients.aws("ecs")
    arns: list[str] = []
    with aws_errors("ecs:ListTaskDefinitions"):
        for page in ecs_client.get_paginator("list_task_definitions").paginate(
            familyPrefix=family, status="ACTIVE"
        ):
            arns.extend(a for a in page["taskDefinitionArns"] if ecs.short(a).rsplit(":", 1)[0] == family)
    now = _verified(ctx, running) if running else ecs.Verified("", 0, None, None)
    # Sorted here: ListTaskDefinitions' own sort is not to be relied on.
    for arn in sorted(arns, key=_revision_number, reverse=True):
        if not ecs.same_revision(arn, running) and ecs.goes_back(now, _verified(ctx, arn)):
            return arn
    raise NotFound(
        f"no verified revision of {family} older than the running {ecs.short(running or '?')} "
        "to roll back to; pass --to REVISION"
    )


def resolve_revision(ctx: Context, family: str, to: str) -> str:
    """--to: a revision number, family:revision or an ARN → the task definition ARN, of the
    environment's own `family` only: another environment's revision would put its
    settings (and secrets) into this one."""
    name = f"{family}:{to}" if to.isdigit() else to
    named_family = ecs.short(name).rsplit(":", 1)[0] if ":" in ecs.short(name) else ecs.short(name)
    if named_family != family:
        raise ConfigError(
            f"--to {to}: a revision of {named_family}, not of this environment's family {family}; "
            f"nothing was changed; pass a number or {family}:REVISION"
        )
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
