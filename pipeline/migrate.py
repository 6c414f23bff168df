"""The migration step of deploys and releases: `migrate_command` as a one-off task of the new revision.

It runs after every check and the registration, before UpdateService: the new code's
migrations run once against the database while the old revision still serves, and a
migration that fails stops the deploy with nothing changed in the service. The
command is split into words as a shell would (`shlex`), and no shell runs it: write
`sh -c '…'` for pipes or `&&`. This module says what the step is (its words, its line in
plans and dry runs, each environment's command) and imports nothing that runs it: `plan`
reads it; `runtask.migrate` runs it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from .config.project import environment_names

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
