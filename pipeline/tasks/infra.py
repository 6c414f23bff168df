"""The project's AWS infrastructure: setup and teardown, and scaffolding a repository."""

from __future__ import annotations

import sys
from pathlib import Path

from ..output import Output
from ._base import context, task, verb

# Here, not in pipeline/init.py: importing that (and the settings it reads) would slow
# `invoke --list` by about 15 ms.
INIT_HELP = {
    "service_dir": "the service's directory, its Docker build context (default: the repository, '.')",
    "container_port": "the port the service listens on: container_port, EXPOSE, the task definition "
    "(default 8080)",
    "base_path": "where the service's routes start, behind the load balancer (default /)",
    "health_path": "the health route the container check and the load balancer ask (default <base-path>health)",
    "smoke_text": "text the smoke test expects in the answer at the base path (default: the status alone)",
    "build_command": "the service's build step (default: none, `invoke build` is skipped)",
    "test_command": "the service's unit tests (default: none, `invoke test` is skipped)",
    "command": "how the service starts, run from the repository's root: the image's CMD (exec form, "
    "no shell) and serve_command (default: found from __main__.py or app.py/main.py/server.py)",
    "overwrite": "replace files (and the [tool.pipeline] section) that already exist",
}


@task(
    help={
        "env": "also set up this environment's stack (prod, staging...); without it only the project stack",
        "dry_run": "show the change sets (and parameters), then delete them; change nothing",
        "image_tag": "image the service starts with when setup creates it (default: the newest in ECR)",
        "timeout": "seconds to wait for CloudFormation per stack (default 3600)",
        "json": "print what each stack did (changes, outputs) as JSON on stdout; progress goes to stderr",
    }
)
@verb
def setup(c, env=None, dry_run=False, image_tag=None, timeout=3600, json=False):
    """Create or update the project's AWS infrastructure through CloudFormation change sets."""
    import json as jsonlib

    from pipeline import infra

    ctx = context()
    if json:
        ctx.out = Output(stream=sys.stderr)
    result = infra.setup(ctx, env, dry_run, image_tag, float(timeout))
    if json:
        print(jsonlib.dumps(result, indent=2))


@task(
    help={
        "env": "environment whose stack to delete (the project stack goes with the last one); "
        "without it only the project stack, once no environment is left",
        "yes": "do not ask for confirmation (for scripts)",
        "delete_images": "also delete the ECR repository and its images when the project stack goes",
        "timeout": "seconds to wait for CloudFormation per stack (default 3600)",
    }
)
@verb
def teardown(c, env=None, yes=False, delete_images=False, timeout=3600):
    """Delete an environment's stack after confirmation; ECR images are kept unless --delete-images."""
    from pipeline import infra

    ctx = context()
    infra.teardown(ctx, env, delete_images, infra.ask(yes), float(timeout))


@task(help=INIT_HELP)
@verb
def init(
    c,
    service_dir=".",
    container_port=None,  # a string, checked by init itself: a bad value gets its one-line error
    base_path="/",
    health_path=None,
    smoke_text=None,
    build_command=None,
    test_command=None,
    command=None,
    overwrite=False,
):
    """Scaffold this repository for the pipeline: tasks.py, settings, templates, Dockerfile, CI."""
    from pipeline import init as scaffolding
    from pipeline.distribution import source
    from pipeline.distribution import version as installed

    options = scaffolding.InitOptions(
        service_dir,
        container_port,
        base_path,
        health_path,
        smoke_text,
        build_command,
        test_command,
        overwrite,
        command,
    )
    scaffolding.run(Path.cwd(), options, installed(), source=source())


@task
def version(c):
    """Print the installed ecs-pipeline version (pin it in your CI config and requirements)."""
    from pipeline.distribution import version as installed

    print(f"ecs-pipeline {installed()}")
