"""Invoke tasks: one thin task per verb. The work lives in pipeline/.

Copy this file into a service repository (next to its pyproject.toml with a
[tool.pipeline] section) to get the same tasks there. Errors become one line and an
exit code (see pipeline/errors.py); PIPELINE_DEBUG=1 shows tracebacks instead.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Collection, Exit, task

from pipeline import config, stack
from pipeline.clients import Clients
from pipeline.context import Context
from pipeline.errors import PipelineError
from pipeline.output import Output

ROOT = Path(__file__).resolve().parent


def _context(json_logs: bool = False) -> Context:
    settings = config.load(os.environ, ROOT)
    use_json = json_logs or os.environ.get("PIPELINE_JSON_LOGS") == "1"
    return Context(settings, Clients(region=settings.region), Output(json_logs=use_json), os.environ)


def verb(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn pipeline errors into one line on stderr and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PipelineError as exc:
            if os.environ.get("PIPELINE_DEBUG"):
                raise
            raise Exit(f"error: {exc.message}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


@task
@verb
def build(c):
    """Run the service's build step (the seed's build.sh; `build_command` in [tool.pipeline])."""
    from pipeline import verbs

    ctx = _context()
    with ctx.out.step("build"):
        verbs.build(ctx)


@task
@verb
def test(c):
    """Run the service's unit tests (the seed's test.sh; `test_command` in [tool.pipeline])."""
    from pipeline import verbs

    ctx = _context()
    with ctx.out.step("test"):
        verbs.test(ctx)


@task(
    help={
        "sha": "commit to tag the image with (default: CIRCLE_SHA1, else git HEAD; "
        "a dirty tree tags <sha>-dirty)"
    }
)
@verb
def dockerize(c, sha=None):
    """Build the service's image, tagged <repository>:<sha> (the seed's dockerize.sh)."""
    from pipeline import verbs

    ctx = _context()
    revision = ctx.revision(sha)
    with ctx.out.step(f"dockerize {revision.tag}"):
        verbs.dockerize(ctx, revision)


@task(help={"sha": "commit whose image to push (default as for dockerize)"})
@verb
def push(c, sha=None):
    """Log in to ECR and push the image for a commit; prints the pushed digest."""
    from pipeline import verbs

    ctx = _context()
    revision = ctx.revision(sha)
    with ctx.out.step(f"push {revision.tag}"):
        verbs.push(ctx, revision)


@task(
    help={
        "branch": "plan for this branch (default: CIRCLE_TAG / CIRCLE_BRANCH, else git's tag or branch)",
        "tag": "plan for this tag",
        "sha": "commit the printed commands name (default: CIRCLE_SHA1, else git HEAD)",
        "json": 'print {"ref", "kind", "environment", "steps"} as JSON, for scripts',
    }
)
@verb
def plan(c, branch=None, tag=None, sha=None, json=False):
    """Show what CI does for a branch or tag: the steps, the environment, each step's command."""
    import json as jsonlib

    from pipeline import plan as policy

    found, commit, dirty = policy.for_ci(ROOT, os.environ, config.load_policy(ROOT), branch, tag, sha)
    print(jsonlib.dumps(policy.to_json(found)) if json else "\n".join(policy.describe(found, commit, dirty)))


# --- the local stack ------------------------------------------------------------


@task(name="up")
@verb
def stack_up(c):
    """Install where missing and start the local stack: Docker engine, registry, AWS emulator."""
    stack.up(stack.config_from(os.environ))
    print('ready: eval "$(invoke stack.env)" points the tasks at it')


@task(name="down")
@verb
def stack_down(c):
    """Stop what `stack.up` started (never a Docker engine it found running)."""
    stack.down(stack.config_from(os.environ))


@task(name="env")
def stack_env(c):
    """Print the variables that point the tasks at the local stack: eval "$(invoke stack.env)"."""
    variables = stack.env(stack.config_from(os.environ), os.environ)
    sys.stdout.write("".join(f"export {key}={value}\n" for key, value in variables.items()))


@task(help={"pytest_args": 'extra arguments for pytest, e.g. "-k deploy -x"'})
def check(c, pytest_args=""):
    """Run every check on the local stack: ruff, ruff format, mypy, the whole pytest suite."""
    stack.up(stack.config_from(os.environ))
    for command in (
        "ruff check .",
        "ruff format --check .",
        "mypy",
        f"python -m pytest {pytest_args}",
    ):
        print(f"==> {command}", flush=True)
        result = c.run(command, warn=True, pty=False)
        if result is None or result.exited != 0:
            raise Exit(f"error: `{command}` failed", code=1)


stack_ns = Collection("stack", stack_up, stack_down, stack_env)
ns = Collection(build, test, dockerize, push, plan, check, stack_ns)
