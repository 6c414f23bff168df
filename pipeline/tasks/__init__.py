"""The Invoke collection `ns`: one thin task per verb; the work lives in the verbs.

A service repository's tasks.py is `from pipeline.tasks import ns` (it may add its own
tasks to `ns`); the `ecs-pipeline` console script runs the same collection with no
tasks.py at all. The project is the nearest directory, from the working directory up,
whose pyproject.toml has a [tool.pipeline] section. Errors become one line and an exit
code (pipeline/errors.py); PIPELINE_DEBUG=1 shows tracebacks instead. Each module here
holds one group of tasks.
"""

from __future__ import annotations

from invoke import Collection

from ._base import project_root, verb
from .deploying import deploy, integration, logs, release, rollback, run_task, smoke, status
from .infra import init, setup, teardown, version
from .local import images, pull_and_run, serve
from .locking import lock_acquire, lock_release, lock_status
from .ship import build, ci, demo, dockerize, plan, push, test
from .stack import stack_down, stack_env, stack_up

__all__ = ["ns", "project_root", "verb"]

stack_ns = Collection("stack", stack_up, stack_down, stack_env)
lock_ns = Collection("lock", lock_status, lock_acquire, lock_release)
ns = Collection(
    build,
    test,
    dockerize,
    push,
    deploy,
    release,
    rollback,
    smoke,
    integration,
    status,
    run_task,
    logs,
    ci,
    demo,
    plan,
    pull_and_run,
    images,
    serve,
    setup,
    teardown,
    init,
    version,
    stack_ns,
    lock_ns,
)
