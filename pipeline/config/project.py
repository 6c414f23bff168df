"""The project file: finding it, reading `[tool.pipeline]`, its environments and smoke sections."""

from __future__ import annotations

import difflib
import re
import shlex
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .settings import PROJECT_FILE, Environment, SmokeSettings

# ECS clusters, services, task families and container names.
ECS_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")

# What the project file may hold, with defaults. Unknown keys are errors: a typo
# must not silently fall back to a default. The defaults are neutral (no service's own
# names or commands): an unset command is a step that is skipped (build, test) or left
# out of the plan (integration), never another project's command.
_PROJECT_DEFAULTS: dict[str, Any] = {
    "prefix": "",  # names the AWS resources; AWS_RESOURCE_NAME_PREFIX overrides it
    "service_dir": ".",
    "dockerfile": None,  # <service_dir>/Dockerfile
    "docker_target": "",  # a multi-stage Dockerfile's stage to build; "" = the last one
    "build_command": "",
    "test_command": "",
    "integration_command": "",
    "serve_command": "",  # `invoke serve`: the service without Docker
    "base_path": "/",
    "container_port": 8080,
    "source_url": "",
    "log_group": None,  # /ecs/<prefix>
    "migrate_command": "",  # run as a one-off task before each deploy's UpdateService
    "environments": {},
    "smoke": {},
    "ci": {},
    "infra": {},
    "pass_env": [],
}
_ENV_KEYS = {"cluster", "service", "family", "container", "template", "values", "migrate_command"}


def unknown_keys(where: str, given: Iterable[str], known: Iterable[str]) -> list[str]:
    """One problem per unknown key, naming the nearest known one when there is one."""
    known = sorted(known)
    problems = []
    for key in sorted(set(given) - set(known)):
        near = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {near[0]}?" if near else f"known: {', '.join(known)}"
        problems.append(f"{where} {key}: unknown setting; {hint}")
    return problems


def find_root(start: Path) -> Path:
    """The nearest directory from `start` up whose project file has a [tool.pipeline] section."""
    for directory in (start, *start.parents):
        path = directory / PROJECT_FILE
        if path.is_file() and _has_section(path):
            return directory
    raise ConfigError(
        f"no {PROJECT_FILE} with a [tool.pipeline] section in {start} or above; "
        "run this in your service repository, or create one with `ecs-pipeline init`"
    )


def _has_section(path: Path) -> bool:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
        return True  # the nearest one it is; read_project_file names the problem
    return isinstance(data.get("tool", {}).get("pipeline"), dict)


def read_project_file(root: Path) -> dict[str, Any]:
    """The `[tool.pipeline]` table of the project file, or {} when there is none."""
    path = root / PROJECT_FILE
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file") from None
    section = data.get("tool", {}).get("pipeline", {})
    return section if isinstance(section, dict) else {}


def name_from_project(root: Path) -> str:
    """A resource prefix made from the repository's name: pyproject.toml's [project] name,
    else the directory's, as a valid ECR/ECS name (what `init` writes, what the demo uses
    when nothing is set)."""
    try:
        name = str(tomllib.loads((root / PROJECT_FILE).read_text()).get("project", {}).get("name", ""))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        name = ""
    slug = re.sub(r"[^a-z0-9]+", "-", (name or root.resolve().name).lower()).strip("-")
    return slug if len(slug) >= 2 else "service"


def environment_names(table: Any) -> list[str]:
    """prod and staging always exist (with the seed's names); the project file may add more."""
    return sorted({"prod", "staging", *(table if isinstance(table, dict) else {})})


def _environments(
    table: Any,
    environ: Mapping[str, str],
    prefix_ok: bool,
    prefix: str,
    cluster: str,
    service_dir: Path,
    problems: list[str],
    migrate_command: str = "",
) -> dict[str, Environment]:
    """prod keeps the seed's names; staging shares the cluster with its own service.

    The seed's variables (ECS_SERVICE_NAME, ECS_TASK_FAMILY_NAME,
    ECS_CONTAINER_DEFINITION_NAME) override prod, the seed's only service.
    """
    if not isinstance(table, dict):
        problems.append("[tool.pipeline] environments: must be a table of environments")
        table = {}
    defaults: dict[str, dict[str, str]] = {
        "prod": {
            "service": environ.get("ECS_SERVICE_NAME") or f"{prefix}-service",
            "family": environ.get("ECS_TASK_FAMILY_NAME") or f"{prefix}-service",
            "container": environ.get("ECS_CONTAINER_DEFINITION_NAME") or f"{prefix}-service",
        },
        "staging": {
            "service": f"{prefix}-staging-service",
            "family": f"{prefix}-staging-service",
            "container": environ.get("ECS_CONTAINER_DEFINITION_NAME") or f"{prefix}-service",
        },
    }
    result: dict[str, Environment] = {}
    for name in environment_names(table):
        given = table.get(name, {})
        if not _ENV_NAME_RE.match(name):
            problems.append(f"[tool.pipeline.environments] {name!r}: use lowercase letters, digits, hyphens")
            continue
        if not isinstance(given, dict):
            problems.append(f"[tool.pipeline.environments.{name}]: must be a table")
            continue
        problems += unknown_keys(f"[tool.pipeline.environments.{name}]", given, _ENV_KEYS)
        base = defaults.get(
            name,
            {k: f"{prefix}-{name}-service" for k in ("service", "family")}
            | {"container": f"{prefix}-service"},
        )
        values = {
            **base,
            "cluster": cluster,
            "migrate_command": migrate_command,
            **{k: str(v) for k, v in given.items() if k in _ENV_KEYS},
        }
        problems += command_problems(
            f"[tool.pipeline.environments.{name}] migrate_command", given.get("migrate_command", "")
        )
        for key in ("cluster", "service", "family", "container"):
            if prefix_ok and not ECS_NAME_RE.match(values[key]):
                problems.append(f"environment {name} {key}: {values[key]!r} is not a valid ECS name")
        template = service_dir / "deploy" / "taskdef.json"
        result[name] = Environment(
            name=name,
            cluster=values["cluster"],
            service=values["service"],
            family=values["family"],
            container=values["container"],
            template=service_dir.parent / values["template"] if "template" in given else template,
            values=service_dir.parent / values["values"]
            if "values" in given
            else service_dir / "deploy" / f"{name}.json",
            migrate_command=values["migrate_command"],
        )
    return result


def command_problems(where: str, command: Any) -> list[str]:
    """migrate_command is split into words as a shell would (no shell runs it)."""
    if not isinstance(command, str):
        return [f'{where}: must be a command string (e.g. "python manage.py migrate")']
    try:
        shlex.split(command)
    except ValueError as exc:
        return [f"{where}: {command!r} does not split into words ({exc})"]
    return []


def _smoke(table: Any, problems: list[str]) -> SmokeSettings:
    if not isinstance(table, dict):
        problems.append("[tool.pipeline] smoke: must be a table")
        return SmokeSettings()
    problems += unknown_keys("[tool.pipeline.smoke]", table, ("status", "text", "timeout"))
    smoke = SmokeSettings(**{k: v for k, v in table.items() if k in {"status", "text", "timeout"}})
    if not (isinstance(smoke.status, int) and 100 <= smoke.status <= 599):
        problems.append(f"[tool.pipeline.smoke] status: {smoke.status!r} must be an HTTP status")
    if not (isinstance(smoke.timeout, int | float) and smoke.timeout > 0):
        problems.append(
            f"[tool.pipeline.smoke] timeout: {smoke.timeout!r} must be a positive number of seconds"
        )
    return smoke
