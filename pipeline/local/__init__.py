"""Local debugging: run exactly the image ECS runs (`pull-and-run`), or the service itself (`serve`).

  envfile     the env file (local.env): where it is and how it is read
  running     the service on a free loopback port: a container as ECS runs it, or serve_command
  images      what ECR holds (`images`), and `pull-and-run`: select, pull, check the digest, run

Decide, then act: `plan_pull_and_run` settles the env file, the port, the image
selection and the container's RunSpec (a PullAndRun, which --dry-run prints) before
anything is pulled or started; `run_planned` carries it out, and a failure after the
container exists removes it, so an error never leaves anything running.

Networking: an engine without a `bridge` network (the local stack's, started with
--bridge=none) runs the container with host networking, PORT set to the chosen port and
HOST to 127.0.0.1; an engine with one (laptops) publishes 127.0.0.1:PORT to the
container port. Either way the service is reachable on 127.0.0.1 only.

Env file values may be secrets: they go to the container through the Docker API (never
into an image or a command line) and only their names are ever printed.
"""

from __future__ import annotations

from .envfile import DEFAULT_ENV_FILE, ENV_EXAMPLE, env_file_path, read_env_file
from .images import (
    PullAndRun,
    image_rows,
    images_table,
    plan_pull_and_run,
    pull,
    pull_and_run,
    run_planned,
    show_images,
)
from .running import (
    READY_TIMEOUT,
    REVISION_LABEL,
    STOP_TIMEOUT,
    Running,
    RunSpec,
    base_path_of,
    container_name,
    describe,
    ensure_name_free,
    ensure_port_free,
    has_bridge,
    listening_inodes,
    parse_port,
    port_holder,
    run_image,
    run_spec,
    serve,
    serve_environment,
    start,
)

__all__ = [
    "DEFAULT_ENV_FILE",
    "ENV_EXAMPLE",
    "READY_TIMEOUT",
    "PullAndRun",
    "REVISION_LABEL",
    "STOP_TIMEOUT",
    "RunSpec",
    "Running",
    "base_path_of",
    "container_name",
    "describe",
    "ensure_name_free",
    "ensure_port_free",
    "env_file_path",
    "has_bridge",
    "image_rows",
    "images_table",
    "listening_inodes",
    "parse_port",
    "plan_pull_and_run",
    "port_holder",
    "pull",
    "pull_and_run",
    "read_env_file",
    "run_image",
    "run_planned",
    "run_spec",
    "serve",
    "serve_environment",
    "show_images",
    "start",
]
