"""This repository's tasks: the packaged pipeline (as any service repository gets it) plus
`check`, which runs this repository's own checks."""

import os

from invoke import Exit, task

from pipeline.tasks import ns


@task(help={"pytest_args": 'extra arguments for pytest, e.g. "-k deploy -x"'})
def check(c, pytest_args=""):
    """Run every check on the local stack: ruff, ruff format, mypy, the whole pytest suite."""
    from pipeline import stack

    stack.up(stack.config_from(os.environ))
    for command in ("ruff check .", "ruff format --check .", "mypy", f"python -m pytest {pytest_args}"):
        print(f"==> {command}", flush=True)
        result = c.run(command, warn=True, pty=False)
        if result is None or result.exited != 0:
            raise Exit(f"error: `{command}` failed", code=1)


ns.add_task(check)
