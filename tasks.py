"""This repository's tasks: the packaged pipeline (as any service repository gets it) plus
`check`, which runs this repository's own checks."""

import os
import time

from invoke import Exit, task

from pipeline.tasks import ns

# pytest-xdist workers for the suite. Most of a test's time is spent waiting on containers,
# rollouts and the emulator, not computing, so more workers than the machine's 2 cores
# overlap those waits (README: "Running the tests in parallel"). Five, once the tests'
# own start-up CPU was cut: the machine was still idle 15 % of a 4-worker run.
WORKERS = 5


@task(
    auto_shortflags=False,  # long flags only, as every task of the package
    help={
        "pytest_args": 'extra arguments for pytest, e.g. "-k deploy -x"',
        "workers": f"pytest-xdist workers (default {WORKERS}; 0 runs the tests one at a time in one process)",
    },
)
def check(c, pytest_args="", workers=WORKERS):
    """Run every check on the local stack: ruff, ruff format, mypy, the dependency audit, the whole pytest suite."""
    from pipeline import stack

    # Started here, once, before the workers: each worker's session fixture then only attaches.
    # From an empty emulator: what a killed earlier run left would keep running under this one.
    started = time.monotonic()
    cfg = stack.config_from(os.environ)
    stack.reset_emulator(cfg)
    stack.up(cfg)
    print(f"<== local stack: ready in {time.monotonic() - started:.1f} s", flush=True)
    for command in (
        "ruff check .",
        "ruff format --check .",
        "mypy",
        "python -m pipeline.audit",  # pip check, then pip-audit of the resolved dependencies
        # The slowest tests listed at the end: where the suite's time goes, run after run.
        f"python -m pytest -n {workers} --dist loadgroup --durations=25 {pytest_args}",
    ):
        print(f"==> {command}", flush=True)
        began = time.monotonic()
        result = c.run(command, warn=True, pty=False)
        if result is None or result.exited != 0:
            raise Exit(f"error: `{command}` failed", code=1)
        # Each step's wall time: the check's own time is more than pytest's summary line.
        print(f"<== {command.split(' --')[0]}: ok in {time.monotonic() - began:.1f} s", flush=True)
    print(f"<== check: ok in {time.monotonic() - started:.1f} s", flush=True)


ns.add_task(check)
