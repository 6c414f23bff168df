"""What a failed rollout prints about its stopped tasks: reasons, exit codes, last log lines.

Each task's reason and exit code, then the last lines its essential container wrote to
CloudWatch Logs.
The first question after a failed deploy is what the container printed before it
died; the CI log answers it here. Reading the logs is best effort: a logs error (no
permission, no log group, a throttled call) is one note, and never hides the
failure being reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import ecs, logs
from .config import Environment
from .context import Context
from .errors import first_line

TAIL_LINES = 20


def task_log(ctx: Context, task: dict[str, Any], preferred: str, lines: int = TAIL_LINES) -> list[str]:
    """The lines to print under one stopped task: its essential container's last lines."""
    from .runtask import essential_container

    definition = ecs.describe_revision(ctx.clients, task["taskDefinitionArn"]).definition
    container = essential_container(definition, preferred)
    where = next((p for p in logs.places(definition) if p.container == container), None)
    if where is None:
        return [f"({container} has no awslogs log configuration: no log lines)"]
    stream = where.stream(logs.task_id(task["taskArn"]))
    tail = logs.last_lines(ctx.clients, where.group, stream, lines)
    if not tail:
        return [f"(no log lines in {where.group} {stream})"]
    return [
        f"last {len(tail)} lines of {container} ({where.group} {stream}):",
        *(f"| {line}" for line in tail),
    ]


def report(
    ctx: Context,
    env: Environment,
    arn: str,
    lines: int = TAIL_LINES,
    say: Callable[[str], None] | None = None,
) -> None:
    """Print why `arn`'s tasks stopped, each with its log's last lines."""
    say = say or ctx.out.detail
    try:
        tasks = ecs.stopped_tasks(ctx.clients, env.cluster, env.service, arn)
    except Exception as exc:  # the report must not replace the failure it explains
        say(f"(the stopped tasks could not be listed: {first_line(exc)})")
        return
    for task in tasks:
        say(f"stopped: {ecs.task_reason(task)}")
        try:
            shown = task_log(ctx, task, env.container, lines)
        except Exception as exc:
            shown = [f"(its log could not be read: {first_line(exc)})"]
        for line in shown:
            say(f"  {line}")
