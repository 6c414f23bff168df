"""`ecs-pipeline`: the packaged tasks without a tasks.py (CI images, the first `init`)."""

from __future__ import annotations


def main() -> None:
    import sys

    from invoke import Program

    from .distribution import version
    from .tasks import ns

    # The installed version is a search of the distributions on sys.path: made only
    # when --version asks for it.
    asked = any(arg in ("-V", "--version") for arg in sys.argv[1:])
    Program(
        namespace=ns, name="ecs-pipeline", binary="ecs-pipeline", version=version() if asked else ""
    ).run()
