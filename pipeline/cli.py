"""`ecs-pipeline`: the packaged tasks without a tasks.py (CI images, the first `init`)."""

from __future__ import annotations

from typing import Any


def main() -> None:
    import sys

    from invoke import Program

    from .distribution import version
    from .tasks import ns

    class Cli(Program):
        def core_args(self) -> list[Any]:
            # Invoke turns off Python's bytecode cache (--write-pyc) so that a project's
            # tasks.py leaves no .pyc behind. This command has no tasks.py, and with the
            # cache off every run compiled boto3, botocore and the rest from source when
            # the installer wrote no bytecode (uv's default): 1.2 CPU-s a command. Python's
            # own setting (PYTHONDONTWRITEBYTECODE, -B) still decides.
            args: list[Any] = super().core_args()
            for arg in args:
                if "write-pyc" in arg.names:
                    arg.default = not sys.flags.dont_write_bytecode
            return args

    # The installed version is a search of the distributions on sys.path: made only
    # when --version asks for it.
    asked = any(arg in ("-V", "--version") for arg in sys.argv[1:])
    Cli(namespace=ns, name="ecs-pipeline", binary="ecs-pipeline", version=version() if asked else "").run()
