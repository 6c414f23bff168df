"""What keeps a deploy safe on its worst day: the in-progress guard and reports that never raise.

Reports never hide the failure they report; the guard refuses to start while another
rollout of the service is in progress; a rollback target's image must still be in ECR.

The guard uses the service's own deployments, not a lock the tool takes: ECS's view
is what every deployer (this tool in another pipeline, the console, another tool)
changes, it needs no extra resource, and it cannot outlive a killed process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from . import ecr, ecs, taskdef
from .config import Environment, Settings
from .context import Context
from .errors import ConfigError, NotFound, PipelineError, RolloutInProgress
from .output import when

T = TypeVar("T")


class Busy(StrEnum):
    """What to do when another rollout of the service is in progress (--wait, --force)."""

    REFUSE = "refuse"  # name it and change nothing (the default)
    WAIT = "wait"  # poll until it is over, within the timeout, then go
    REPLACE = "replace"  # go ahead: ECS replaces that rollout with ours

    @classmethod
    def from_flags(cls, wait: bool, force: bool) -> Busy:
        if wait and force:
            raise ConfigError(
                "--wait and --force: choose one (wait for the rollout in progress, or replace it)"
            )
        return cls.WAIT if wait else cls.REPLACE if force else cls.REFUSE


def quietly(ctx: Context, what: str, action: Callable[[], T]) -> T | None:
    """Run a reporting action; a failure becomes one warning, never the error the user sees."""
    try:
        return action()
    except Exception as exc:
        ctx.out.warn(f"could not {what}: {one_line(exc)}")
        return None


def one_line(exc: BaseException) -> str:
    if isinstance(exc, PipelineError):
        return exc.message
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"unexpected {type(exc).__name__}: {first}" if first else f"unexpected {type(exc).__name__}"


def running_now(ctx: Context, env: Environment) -> str:
    """What the service runs and what still rolls out, for the last line, read fresh (riding
    out a blip for up to 30 s); never raises."""
    from .transient import calling

    try:
        service = calling(
            lambda: ecs.describe_service(ctx.clients, env.cluster, env.service),
            time.monotonic() + 30,
            ctx.out.detail,
        )
    except Exception as exc:
        return f"unknown (could not describe the service: {one_line(exc)})"
    rolling = ecs.in_progress(service)
    text = ecs.short(str(service.get("taskDefinition", "?")))
    if rolling:
        text += "; still rolling out: " + ", ".join(
            f"deployment {d.id} of {ecs.short(d.task_definition)} ({d.rollout_state or d.status}, "
            f"running {d.running}/{d.desired})"
            for d in rolling
        )
    return text


def name_deployment(ctx: Context, d: ecs.Deployment) -> str:
    """A deployment as a person can find it: id, revision, sha from its tags, start time."""
    tags = quietly(
        ctx, "read the revision's tags", lambda: ecs.describe_revision(ctx.clients, d.task_definition).tags
    )
    sha = (tags or {}).get(taskdef.TAG_SHA, "unknown")
    at = when(d.created_at) if d.created_at else "unknown"
    return f"deployment {d.id} of {ecs.short(d.task_definition)} (sha {sha[:12]}, started {at})"


def idle_service(
    ctx: Context,
    env: Environment,
    service: dict[str, Any],
    busy: Busy,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """The service once no rollout is in progress (`service` itself when none is).

    With another rollout under way: --force goes ahead (that rollout will be replaced),
    --wait polls until it is over (within `timeout`), and otherwise it refuses, naming it.
    """
    rolling = ecs.in_progress(service)
    if not rolling:
        return service
    named = "; ".join(name_deployment(ctx, d) for d in rolling)
    if busy == Busy.REPLACE:
        ctx.out.warn(f"--force: replacing the rollout in progress: {named}")
        return service
    if busy == Busy.REFUSE:
        raise RolloutInProgress(
            f"{env.service} has a rollout in progress: {named}; nothing was changed. "
            "Wait for it with --wait, or replace it with --force"
        )
    ctx.out.detail(f"waiting for the rollout in progress to end: {named}")
    deadline = clock() + timeout
    pause = 0.5
    while clock() < deadline:
        sleep(pause)
        pause = min(pause * 2, 5.0)
        service = ecs.describe_service(ctx.clients, env.cluster, env.service)
        if not ecs.in_progress(service):
            ctx.out.detail(f"{env.service} is steady on {ecs.short(str(service.get('taskDefinition', '?')))}")
            return service
    raise RolloutInProgress(
        f"{env.service} still has a rollout in progress after --wait {timeout:g}s: {named}; nothing was changed"
    )


def missing_image(ctx: Context, arn: str, settings: Settings | None = None) -> str | None:
    """The first of revision `arn`'s images from the project's ECR repository (`settings`'s;
    default this one's) that is no longer there (a lifecycle policy may have expired it; ECS
    could not start its tasks); None if none is."""
    settings = settings or ctx.settings
    definition = ecs.describe_revision(ctx.clients, arn).definition
    for container in definition.get("containerDefinitions", []):
        image = str(container.get("image", ""))
        name, _, tag = image.rpartition(":")
        if "@" in image or "/" not in name or name.split("/", 1)[1] != settings.repository:
            continue  # not a tag in this project's repository: nothing here can check it
        if ecr.find_image(settings, ctx.clients, tag) is None:
            return image
    return None


def require_images(ctx: Context, arn: str) -> None:
    """Before a rollback changes anything: the target's images are still in ECR."""
    image = missing_image(ctx, arn)
    if image is not None:
        raise NotFound(
            f"{ecs.short(arn)} runs {image}, which is no longer in ECR (expired under the "
            "lifecycle policy?); nothing was changed; pick another revision with --to"
        )
