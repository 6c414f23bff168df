"""Debugging on this machine: pull-and-run, images, serve."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import context, task, verb

if TYPE_CHECKING:
    from pipeline.context import Context

DEV = "the images -dev branches pushed (<repository>-dev) instead of the deployable ones"


@task(
    help={
        "sha": "run the image of this commit: a full sha or a unique prefix",
        "latest": "run the most recently pushed image (its local copy is removed first)",
        "highest_version": "run the image with the highest semantic-version tag (v1.10.0 beats v1.9.2)",
        "env_file": "KEY=VALUE file for the container (default local.env; see local.env.example)",
        "port": "answer on 127.0.0.1:PORT (default: container_port from [tool.pipeline])",
        "detach": "leave the container running and print how to stop it",
        "dry_run": "print which image would run and how; pull and start nothing",
        "dev": DEV,
    },
)
@verb
def pull_and_run(
    c,
    sha=None,
    latest=False,
    highest_version=False,
    env_file=None,
    port=None,
    detach=False,
    dry_run=False,
    dev=False,
):
    """Run an image from ECR on this machine (the seed's local-docker.sh): select, pull, verify, run."""
    from pipeline import local, selection

    selector = selection.parse_selector(sha, latest, highest_version)
    local.pull_and_run(_images(dev), selector, env_file, port, detach, dry_run)


@task(help={"json": "print a JSON list of {tags, digest, pushed_at, size}, for scripts", "dev": DEV})
@verb
def images(c, json=False, dev=False):
    """List the images ECR holds for the repository: tags, digest, push time, size; newest first."""
    from pipeline import local

    local.show_images(_images(dev), json)


def _images(dev: bool) -> Context:
    ctx = context()
    return ctx.with_dev_images() if dev else ctx


@task(help={"env_file": "KEY=VALUE file to load (default local.env; see local.env.example)"})
@verb
def serve(c, env_file=None):
    """Run the service without Docker, with local.env loaded (`serve_command` in [tool.pipeline])."""
    from pipeline import local

    local.serve(context(aws=False), env_file)
