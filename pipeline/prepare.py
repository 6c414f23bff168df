"""Preparing a revision: render the template, check it against ECS's API model, check the image, register.

Below every verb that puts a new revision anywhere (deploy, release, run-task --sha, the
migration step): each decides with `new_revision` (reads only) and registers with
`register`, the one change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import ecr, taskdef
from .clients import aws_errors
from .config import Environment, Settings
from .context import Context
from .git import Revision


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


@dataclass(frozen=True)
class NewRevision:
    """A checked RegisterTaskDefinition request for one image: nothing registered yet."""

    sha: str  # the image tag
    image: str  # the image's full name, as the request names it
    request: dict[str, Any]


def new_revision(ctx: Context, environment: Environment, revision: Revision) -> NewRevision:
    """Render `environment`'s template for `revision`'s image and check the request and the
    image (in ECR); one line naming the problem before anything changes."""
    settings = ctx.settings
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
    return NewRevision(revision.tag, inputs.image, request)


def register(ctx: Context, request: dict[str, Any]) -> str:
    """Register a rendered revision; its ARN."""
    with aws_errors("ecs:RegisterTaskDefinition"):
        registered = ctx.clients.aws("ecs").register_task_definition(**request)["taskDefinition"]
    return str(registered["taskDefinitionArn"])
