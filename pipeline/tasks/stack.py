"""The local stack: stack.up, stack.down, stack.env."""

from __future__ import annotations

import os
import sys

from ._base import task, verb


@task(name="up")
@verb
def stack_up(c):
    """Install where missing and start the local stack: Docker engine, registry, AWS emulator."""
    from pipeline import stack

    stack.up(stack.config_from(os.environ))
    print('ready: eval "$(invoke stack.env)" points the tasks at it')


@task(name="down")
@verb
def stack_down(c):
    """Stop what `stack.up` started (never a Docker engine it found running)."""
    from pipeline import stack

    stack.down(stack.config_from(os.environ))


@task(name="env")
def stack_env(c):
    """Print the variables that point the tasks at the local stack: eval "$(invoke stack.env)"."""
    from pipeline import stack

    variables = stack.env(stack.config_from(os.environ))
    sys.stdout.write("".join(f"export {key}={value}\n" for key, value in variables.items()))
