"""`ecs-pipeline`: the packaged tasks without a tasks.py (CI images, the first `init`)."""

from __future__ import annotations


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("ecs-pipeline")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def main() -> None:
    from invoke import Program

    from .tasks import ns

    Program(namespace=ns, name="ecs-pipeline", binary="ecs-pipeline", version=version()).run()
