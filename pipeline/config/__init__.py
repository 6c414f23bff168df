"""Settings: one typed object, built from environment variables and the project file.

Environment variables carry the seed's names (AWS_RESOURCE_NAME_PREFIX, ECR_ENDPOINT...);
the project file (`[tool.pipeline]` in the service repository's pyproject.toml) carries
what is not secret and belongs to the project (directories, commands, base path, port,
environments, the CI policy). `load` validates everything at once and raises one
ConfigError listing every problem, each with its name, before any step has side effects.
One module per section: settings (the types), environ (the variables), project (the
file, environments, smoke), policy (CI), infra (`invoke setup`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .environ import read_environ
from .grammar import SOURCE_URL_RULE, source_url_problem
from .infra import _infra
from .policy import _ci_policy, has_integration, load_policy
from .project import (
    _PROJECT_DEFAULTS,
    _environments,
    _smoke,
    command_problems,
    environment_names,
    find_root,
    name_from_project,
    read_project_file,
    unknown_keys,
)
from .settings import (
    DEFAULT_BASE_IMAGE,
    DEFAULT_REGION,
    PROJECT_FILE,
    CIPolicy,
    Environment,
    InfraEnvironment,
    InfraSettings,
    Settings,
    SmokeSettings,
)

_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

__all__ = [
    "DEFAULT_BASE_IMAGE",
    "DEFAULT_REGION",
    "PROJECT_FILE",
    "CIPolicy",
    "Environment",
    "InfraEnvironment",
    "InfraSettings",
    "Settings",
    "SmokeSettings",
    "command_problems",
    "find_root",
    "load",
    "load_policy",
    "name_from_project",
    "read_project_file",
]


def load(
    environ: Mapping[str, str],
    root: Path,
    project: Mapping[str, Any] | None = None,
    need_prefix: bool = True,
) -> Settings:
    """Build Settings from the environment and the project file; every problem at once.

    need_prefix=False: for tasks that touch no AWS resource (build, test, serve), which
    then run without a prefix (Settings.prefix is "" and the names derived from it unused)."""
    project = read_project_file(root) if project is None else project
    problems: list[str] = []

    def need(cond: bool, message: str) -> None:
        if not cond:
            problems.append(message)

    problems += unknown_keys("[tool.pipeline]", project, _PROJECT_DEFAULTS)
    cfg = {**_PROJECT_DEFAULTS, **{k: v for k, v in project.items() if k in _PROJECT_DEFAULTS}}

    project_prefix = cfg["prefix"]
    need(
        isinstance(project_prefix, str),
        f'[tool.pipeline] prefix: {project_prefix!r} must be a string (e.g. prefix = "orders")',
    )
    env = read_environ(
        environ, problems, project_prefix if isinstance(project_prefix, str) else "", need_prefix
    )
    prefix = env.prefix

    base_path = str(cfg["base_path"])
    need(
        base_path.startswith("/") and base_path.endswith("/") and " " not in base_path,
        f"[tool.pipeline] base_path: {base_path!r} must start and end with '/' (e.g. /orders/)",
    )
    port = cfg["container_port"]
    need(
        isinstance(port, int) and 1 <= port <= 65535,
        f"[tool.pipeline] container_port: {port!r} must be a port number 1-65535",
    )
    for key in ("build_command", "test_command", "integration_command", "serve_command"):
        # Unset (or "") means none: the step is skipped. Blank is more likely a mistake.
        need(
            isinstance(cfg[key], str) and (cfg[key] == "" or bool(cfg[key].strip())),
            f"[tool.pipeline] {key}: must be a non-empty command (or leave it out for none)",
        )

    pass_env = cfg["pass_env"]
    need(
        isinstance(pass_env, list) and all(isinstance(v, str) and _VAR_RE.match(v) for v in pass_env),
        f"[tool.pipeline] pass_env: {pass_env!r} must be a list of environment variable names",
    )

    service_dir = root / str(cfg["service_dir"])
    need(service_dir.is_dir(), f"[tool.pipeline] service_dir: {service_dir} is not a directory")
    dockerfile = root / str(cfg["dockerfile"]) if cfg["dockerfile"] else service_dir / "Dockerfile"

    source_url = cfg["source_url"]
    why = source_url_problem(source_url) if isinstance(source_url, str) else SOURCE_URL_RULE
    need(why is None, f"[tool.pipeline] source_url: {source_url!r} {why}")

    smoke = _smoke(cfg["smoke"], problems)

    problems += command_problems("[tool.pipeline] migrate_command", cfg["migrate_command"])
    environments = _environments(
        cfg["environments"],
        environ,
        env.prefix_ok,
        prefix,
        env.cluster,
        service_dir,
        problems,
        str(cfg["migrate_command"]) if isinstance(cfg["migrate_command"], str) else "",
    )
    ci = _ci_policy(cfg["ci"], environment_names(cfg["environments"]), problems, has_integration(cfg))
    infra = _infra(cfg["infra"], environment_names(cfg["environments"]), problems)

    if problems:
        raise ConfigError(problems)
    return Settings(
        root=root,
        prefix=prefix,
        region=env.region,
        account_id=env.account_id,
        ecr_endpoint=env.ecr_endpoint,
        repository=env.repository,
        execution_role=env.execution_role,
        service_dir=service_dir,
        dockerfile=dockerfile,
        docker_target=str(cfg["docker_target"]),
        build_command=cfg["build_command"],
        test_command=cfg["test_command"],
        integration_command=cfg["integration_command"],
        serve_command=cfg["serve_command"],
        base_path=base_path,
        container_port=port,
        source_url=str(cfg["source_url"]),
        base_image=env.base_image,
        log_group=str(cfg["log_group"] or f"/ecs/{prefix}"),
        environments=environments,
        smoke=smoke,
        ci=ci,
        infra=infra,
        pass_env=tuple(pass_env),
        wheelhouse=env.wheelhouse,
    )
