"""`invoke teardown`: the plan of what it deletes, the confirmation, then the deletion on the aws seam."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from .. import ecr
from ..clients import aws_errors
from ..context import Context
from ..errors import ConfigError, NotFound, StepFailed
from .apply import Sleep, delete_stack
from .facts import StackState, check_stack
from .lookups import _repository_exists, describe_stack
from .names import environment_stack_name, project_stack_name


@dataclass(frozen=True)
class TeardownPlan:
    stacks: tuple[StackState, ...]  # in deletion order
    repository: str
    images: int | None  # None: there is no repository
    delete_repository: bool
    remaining: tuple[str, ...]  # environment stacks that stay
    dev_repository: str = ""  # the -dev branches' repository: it goes with the project stack
    dev_images: int | None = None  # None: there is no such repository

    def lines(self) -> list[str]:
        lines = [f"delete stack {s.name} ({len(s.resources)} resources)" for s in self.stacks]
        if self.dev_images is not None and not self.remaining:
            lines.append(
                f"delete ECR repository {self.dev_repository} and its {self.dev_images} images "
                "(-dev branches' images go with the project stack)"
            )
        if self.remaining:
            lines.append(f"the project stack stays: environment stacks remain ({', '.join(self.remaining)})")
        if self.images is not None:
            if self.delete_repository:
                lines.append(
                    f"delete ECR repository {self.repository} and its {self.images} images (--delete-images)"
                )
            elif self.remaining:
                lines.append(f"ECR repository {self.repository} stays with the project stack")
            else:
                lines.append(
                    f"keep ECR repository {self.repository} and its {self.images} images (--delete-images deletes them)"
                )
        return lines


def teardown_plan(ctx: Context, env_name: str | None, delete_images: bool) -> TeardownPlan:
    settings, clients = ctx.settings, ctx.clients
    if env_name:
        settings.environment(env_name)
    project = describe_stack(clients, project_stack_name(settings))
    others = {}
    for name in sorted(settings.environments):
        state = describe_stack(clients, environment_stack_name(settings, name))
        if state.status is not None:
            others[name] = state
    target = others.pop(env_name, None) if env_name else None
    if env_name and target is None:
        raise NotFound(
            f"stack {environment_stack_name(settings, env_name)} does not exist: nothing to tear down for {env_name}"
        )
    if env_name is None:
        if project.status is None:
            raise NotFound(f"stack {project.name} does not exist: nothing to tear down")
        if others:
            names = ", ".join(s.name for s in others.values())
            raise ConfigError(
                f"environment stacks remain ({names}); tear them down first with `invoke teardown --env ENV`"
            )
    stacks = [s for s in (target,) if s is not None]
    if not others and project.status is not None:
        stacks.append(project)
    for state in stacks:
        check_stack(settings, state)
    last = project in stacks
    images = len(ecr.list_images(settings, clients)) if _repository_exists(settings, clients) else None
    dev = settings.for_dev_images()
    dev_images = len(ecr.list_images(dev, clients)) if last and _repository_exists(dev, clients) else None
    return TeardownPlan(
        stacks=tuple(stacks),
        repository=settings.repository,
        images=images,
        delete_repository=delete_images and last and images is not None,
        remaining=tuple(s.name for s in others.values()),
        dev_repository=dev.repository,
        dev_images=dev_images,
    )


def ask(yes: bool, stdin: TextIO | None = None, prompt_to: TextIO | None = None) -> Callable[[str], bool]:
    """A confirmation: --yes, else the expected answer typed on stdin; no stdin at all is refused."""

    def confirm(expected: str) -> bool:
        if yes:
            return True
        print(f"type {expected} to delete it: ", end="", file=prompt_to or sys.stderr, flush=True)
        answer = (stdin or sys.stdin).readline()
        if not answer:
            print(file=prompt_to or sys.stderr)
            raise ConfigError(
                "teardown needs a confirmation and stdin has none; pass --yes to tear down from a script"
            )
        return answer.strip() == expected

    return confirm


def teardown(
    ctx: Context,
    env_name: str | None,
    delete_images: bool,
    confirm: Callable[[str], bool],
    timeout: float = 3600.0,
    sleep: Sleep = time.sleep,
) -> None:
    """Delete an environment's stack, and the project stack with the last environment."""
    with ctx.out.step(f"check teardown{' of ' + env_name if env_name else ''}"):
        plan = teardown_plan(ctx, env_name, delete_images)
        for line in plan.lines():
            ctx.out.detail(line)
    if not confirm(plan.stacks[0].name):
        raise StepFailed("teardown cancelled: nothing was deleted")
    for state in plan.stacks:
        with ctx.out.step(f"delete stack {state.name}"):
            delete_stack(ctx, state, timeout, sleep)
    if plan.delete_repository:
        with ctx.out.step(f"delete ECR repository {plan.repository}"), aws_errors("ecr:DeleteRepository"):
            ctx.clients.aws("ecr").delete_repository(repositoryName=plan.repository, force=True)
    elif plan.images is not None and not plan.remaining:
        ctx.out.say(
            f"kept ECR repository {plan.repository} ({plan.images} images); the next setup uses it again. "
            f"Delete it with `aws ecr delete-repository --repository-name {plan.repository} --force`"
        )
