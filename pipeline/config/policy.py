"""`[tool.pipeline.ci]`: the CI policy's settings, checked against the steps and environments."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..git import ref_problem
from ..steps import ENVIRONMENT_STEPS, STEP_NAMES
from .grammar import branch_problem, suffix_problem
from .project import environment_names, read_project_file, unknown_keys
from .settings import CIPolicy


def load_policy(root: Path, project: Mapping[str, Any] | None = None) -> CIPolicy:
    """Only the CI policy (for `invoke plan`): needs no AWS settings, checks the same rules."""
    project = read_project_file(root) if project is None else project
    problems: list[str] = []
    ci = _ci_policy(
        project.get("ci", {}),
        environment_names(project.get("environments", {})),
        problems,
        has_integration(project),
    )
    if problems:
        raise ConfigError(problems)
    return ci


_CI_KEYS = (
    "mainline_branches",
    "mainline_environment",
    "dev_suffix",
    "tag_environments",
    "branch_steps",
    "mainline_steps",
    "dev_steps",
    "tag_steps",
)


def has_integration(project: Mapping[str, Any]) -> bool:
    command = project.get("integration_command", "")
    return not isinstance(command, str) or bool(command.strip())  # a non-string: load() names it


# Why a plan leaves integration out: the project has no integration tests to run.
NO_INTEGRATION = ("integration", "no integration_command in [tool.pipeline]")


def _ci_policy(
    table: Any, environments: list[str], problems: list[str], integration: bool = True
) -> CIPolicy:
    left_out = () if integration else (NO_INTEGRATION,)
    if not isinstance(table, dict):
        problems.append("[tool.pipeline] ci: must be a table")
        return CIPolicy(left_out=left_out)
    problems += unknown_keys("[tool.pipeline.ci]", table, _CI_KEYS)
    kwargs: dict[str, Any] = {}
    for key in ("mainline_branches", "branch_steps", "mainline_steps", "dev_steps", "tag_steps"):
        if key in table:
            value = table[key]
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                problems.append(f"[tool.pipeline.ci] {key}: must be a list of strings")
                continue
            if key.endswith("_steps"):
                for step in value:
                    if step not in STEP_NAMES:
                        problems.append(
                            f"[tool.pipeline.ci] {key}: unknown step {step!r}; steps are: {', '.join(STEP_NAMES)}"
                        )
                # Steps always run in the pipeline's order, whatever order the file lists.
                value = sorted(set(value) & set(STEP_NAMES), key=STEP_NAMES.index)
            else:
                for branch in value:
                    why = ref_problem(branch, "branch") or branch_problem(branch)
                    if why:
                        problems.append(f"[tool.pipeline.ci] {key}: {branch!r} is not a branch name ({why})")
            kwargs[key] = tuple(value)
    for key in ("mainline_environment", "dev_suffix"):
        if key in table and not isinstance(table[key], str):
            problems.append(f'[tool.pipeline.ci] {key}: must be a string ("" for none)')
        elif key in table:
            kwargs[key] = table[key] or (None if key == "mainline_environment" else "")
    if isinstance(table.get("dev_suffix"), str) and table["dev_suffix"]:
        why = suffix_problem(table["dev_suffix"])
        if why:
            problems.append(f"[tool.pipeline.ci] dev_suffix: {table['dev_suffix']!r} {why}")
    if "tag_environments" in table:
        value = table["tag_environments"]
        if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            problems.append(
                '[tool.pipeline.ci] tag_environments: must map a tag suffix to an environment, e.g. {"-prod" = "prod"}'
            )
        else:
            for suffix in value:
                why = suffix_problem(suffix)
                if why:
                    problems.append(f"[tool.pipeline.ci] tag_environments: tag suffix {suffix!r} {why}")
            kwargs["tag_environments"] = tuple(value.items())
    ci = CIPolicy(**kwargs, left_out=left_out)

    named = [("mainline_environment", ci.mainline_environment)]
    named += [(f"tag_environments {suffix!r}", env) for suffix, env in ci.tag_environments]
    for key, env in named:
        if env is not None and env not in environments:
            problems.append(
                f"[tool.pipeline.ci] {key}: {env!r} is not an environment; known: {', '.join(environments)} "
                f"(or add [tool.pipeline.environments.{env}])"
            )
    # A step that deploys or tests a deployment needs an environment to act on.
    homeless = {
        "branch_steps": ci.branch_steps,
        "dev_steps": ci.dev_steps,
        "mainline_steps": ci.mainline_steps if ci.mainline_environment is None else (),
    }
    for key, steps in homeless.items():
        for step in sorted(ENVIRONMENT_STEPS & set(steps)):
            problems.append(
                f"[tool.pipeline.ci] {key}: {step!r} needs an environment and these builds have none; "
                "deploy from mainline_steps (with mainline_environment) or tag_steps"
            )
    # Build once, deploy many: a tag deploys the image its commit's branch build pushed.
    for step in ("dockerize", "push"):
        if step in ci.tag_steps:
            problems.append(
                f"[tool.pipeline.ci] tag_steps: {step!r} would rebuild the commit's image; tags deploy "
                "the image a mainline or dev-branch build pushed (build once, deploy many)"
            )
    return ci
