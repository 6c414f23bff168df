"""The migration step of deploys and releases: `migrate_command` as a one-off task of the new revision.

It runs after every check and the registration, before UpdateService: the new code's
migrations run once against the database while the old revision still serves, and a
migration that fails stops the deploy with nothing changed in the service. The
command is split into words as a shell would (`shlex`), and no shell runs it: write
`sh -c '…'` for pipes or `&&`.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Mapping
from typing import Any

from .arns import short
from .config.project import environment_names
from .config.settings import Environment
from .context import Context
from .errors import DeployFailed

STARTED_BY = "ecs-pipeline/migrate"


def words(command: str) -> list[str]:
    return shlex.split(command)


def describe(command: str) -> str:
    """The plan's and the dry run's line for the step."""
    return f"runs migrate_command as a one-off task of the new revision before UpdateService: {command}"


def commands(project: Mapping[str, Any]) -> dict[str, str]:
    """environment → migrate_command, from a raw [tool.pipeline] table (for `invoke plan`,
    which needs no AWS settings); environments without one are left out."""
    default = project.get("migrate_command", "")
    table = project.get("environments", {})
    table = table if isinstance(table, dict) else {}
    found = {}
    for name in environment_names(table):
        given = table.get(name, {})
        command = given.get("migrate_command", default) if isinstance(given, dict) else default
        if isinstance(command, str) and command.strip():
            found[name] = command
    return found


def run(
    ctx: Context,
    environment: Environment,
    service: dict[str, Any],
    current: str | None,
    arn: str,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run `environment`'s migrate_command with revision `arn`, next to `service` (its cluster
    and network configuration), which still runs `current`; DeployFailed unless it exits 0."""
    from . import runtask  # not at the top: plan.py imports this module for `describe`

    command = environment.migrate_command
    out = ctx.out
    with out.step(f"migrate with {short(arn)}"):
        started = runtask.start(ctx, environment, service, arn, words(command), STARTED_BY)
        out.detail(f"task {started.task_arn}: {shlex.join(words(command))}")
        try:
            state = runtask.follow(ctx, started, timeout, lambda line: out.detail(f"| {line}"), sleep)
        except KeyboardInterrupt as interrupt:
            from .interrupts import signum_of

            raise runtask.on_interrupt(ctx, started, False, signum_of(interrupt)) from None
        out.detail(state.summary(started.task_arn))
        if state.never_started or state.exit_code != 0:
            raise DeployFailed(
                f"migration failed: {state.summary(started.task_arn)}; nothing was changed: "
                f"{environment.service} still runs {short(current or '?')}"
            )
