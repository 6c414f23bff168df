"""The names of a project's stacks, roles and listener paths, and the names AWS would refuse (pure)."""

from __future__ import annotations

import re

from ..config import Settings

TAG_PREFIX = "ecs-pipeline:prefix"


TAG_STACK = "ecs-pipeline:stack"


_STACK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")


_IAM_NAME_MAX = 64


def project_stack_name(settings: Settings) -> str:
    return f"{settings.prefix.replace('_', '-')}-project"


def environment_stack_name(settings: Settings, env_name: str) -> str:
    return f"{settings.prefix.replace('_', '-')}-{env_name}"


def ci_name(settings: Settings) -> str:
    """The CI role (or user) and its policy."""
    return f"{settings.prefix}-ci"


def ci_dev_name(settings: Settings) -> str:
    """The role -dev branches' jobs push with, and the policy on the dev repository."""
    return f"{settings.prefix}-ci-dev"


def path_patterns(base_path: str) -> list[str]:
    """The listener rule's paths: the base path itself and everything under it."""
    stem = base_path.rstrip("/")
    return [stem, f"{stem}/*"] if stem else ["/*"]


def name_problems(settings: Settings) -> list[str]:
    """Names CloudFormation or IAM would refuse, found before anything is asked of AWS."""
    problems = []
    stacks = [project_stack_name(settings)] + [
        environment_stack_name(settings, n) for n in settings.environments
    ]
    for stack in stacks:
        if not _STACK_NAME_RE.match(stack):
            problems.append(
                f"AWS_RESOURCE_NAME_PREFIX: {settings.prefix!r} makes the stack name {stack!r}, which "
                "CloudFormation refuses (a letter first, then letters, digits, hyphens; 128 at most)"
            )
            break
    if "project" in settings.environments:
        problems.append(
            "[tool.pipeline.environments] project: that name is taken by the project stack "
            f"({project_stack_name(settings)}); rename the environment"
        )
    roles = [ci_name(settings), ci_dev_name(settings)]
    for env in sorted(settings.environments):
        roles.append(settings.task_role_name(env))
        if not settings.execution_role:
            roles.append(settings.execution_role_name(env))
    for role in roles:
        if len(role) > _IAM_NAME_MAX:
            problems.append(
                f"IAM name {role!r} is longer than IAM's {_IAM_NAME_MAX} characters; "
                "use a shorter AWS_RESOURCE_NAME_PREFIX"
            )
    return problems
