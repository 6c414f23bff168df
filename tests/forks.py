"""Command-line programs the tests run many times, without their imports per call.

A new `python -m invoke` spends about 0.3 CPU-s and a new `aws` about 0.5 CPU-s importing
and parsing before doing anything (counted per process over a full run: some 250 of each). Here each
call still runs in a process of its own, with its own argv, environment, working directory
and output, and runs the program's own entry point, but that process is forked from a
server that imported the program once per test worker. A call that must be signalled or
read while it runs is started as a real process instead (tests/processes.py).

Run as a script, this file is that server: `forks.py PROGRAM`, then one JSON request per
line on stdin ({"args", "env", "cwd"}), one JSON reply per line on stdout ({"rc",
"stdout", "stderr"}).
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# What each server imports once: the program itself and the libraries every call loads.
PRELOAD = {
    "aws": ["awscli.clidriver", "awscli.handlers"],  # handlers: every plugin a call loads
    "invoke": ["invoke.main", "pipeline.tasks", "boto3", "botocore.session", "docker"],
    "ecs-pipeline": ["pipeline.cli", "invoke", "pipeline.tasks"],
}


class Forks:
    """A client of one server for `program`, started on first use; threads take turns."""

    def __init__(self, program: str) -> None:
        self.program = program
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def run(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | str | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Like subprocess.run(capture_output=True, text=True, stdin=DEVNULL); past the
        timeout the call and its server are killed and TimeoutExpired is raised."""
        request = json.dumps({"args": list(args), "env": dict(env), "cwd": str(cwd or os.getcwd())})
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), self.program],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    start_new_session=True,  # its forks share its group: one killpg ends all
                )
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(request + "\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            if not ready:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise subprocess.TimeoutExpired([self.program, *args], timeout or 0)
            reply = proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"the fork server of {self.program} exited")
        answer = json.loads(reply)
        return subprocess.CompletedProcess(
            [self.program, *args], answer["rc"], answer["stdout"], answer["stderr"]
        )


def _aws() -> int:
    import awscli
    import awscli.clidriver

    # What the aws script and importing awscli set, from this call's environment; sys.path[0]
    # as a script's own directory (the aws script's: bin/).
    sys.path[0] = str(Path(sys.executable).parent)
    if os.environ.get("LC_CTYPE", "") == "UTF-8":
        os.environ["LC_CTYPE"] = "en_US.UTF-8"
    own = [
        os.path.expanduser(os.path.expandvars(p))
        for p in os.environ.get("AWS_DATA_PATH", "").split(os.pathsep)
        if p
    ]
    os.environ["AWS_DATA_PATH"] = os.pathsep.join([*own, str(Path(awscli.__file__).parent / "data")])
    return int(awscli.clidriver.main())


def _invoke() -> int:
    from invoke.main import program

    sys.path[0] = os.getcwd()  # as `python -m` puts it there
    program.run()  # as `python -m invoke` does: sys.exit on failure
    return 0


def _ecs_pipeline() -> int:
    from pipeline.cli import main

    sys.path[0] = str(Path(sys.executable).parent)  # a console script's own directory
    main()  # as the console script does: sys.exit on failure
    return 0


ENTRY: dict[str, Callable[[], int]] = {"aws": _aws, "invoke": _invoke, "ecs-pipeline": _ecs_pipeline}


def _call(program: str, args: list[str], env: dict[str, str], cwd: str) -> dict[str, object]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the call's own process
            code = 1
            try:
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                os.chdir(cwd)
                os.environ.clear()
                os.environ.update(env)
                sys.argv = [program, *args]
                code = ENTRY[program]()
            except SystemExit as exit_:  # Python's own rules for sys.exit's argument
                if exit_.code is None or isinstance(exit_.code, int):
                    code = exit_.code or 0
                else:
                    print(exit_.code, file=sys.stderr)
                    code = 1
            except BaseException:  # noqa: BLE001 (an uncaught error: traceback and 1, as Python does)
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                import atexit

                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return {
            "rc": os.waitstatus_to_exitcode(status),
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


# The services the tests ask the aws CLI about and the pipeline's tasks call: their models
# are parsed once, in the server.
AWS_SERVICES = ("ecs", "ecr", "iam", "elbv2", "ssm", "logs", "ec2", "cloudformation", "sts")


def _parse_models_once() -> None:
    """Each call reads the same large JSON models (endpoints.json and a service's model
    take some 0.1 CPU-s to parse). Parse them here; a call's process gets its own copy of
    each (fork) and takes it at most once, so what it does to that copy stays its own and
    any later read of the same file parses it as the program always does."""
    import botocore.loaders  # the program's own: awscli carries one, boto3 uses the venv's

    data = Path(botocore.loaders.Loader.BUILTIN_DATA_PATH)
    names = [data / n for n in ("endpoints", "partitions", "_retry", "sdk-default-configuration")]
    for service in AWS_SERVICES:
        latest = max((data / service).iterdir())  # API versions are dates: the newest sorts last
        names += [latest / n for n in ("service-2", "paginators-1", "waiters-2", "endpoint-rule-set-1")]
    loader = botocore.loaders.JSONFileLoader()
    parsed = {
        f"{name}{ext}": loader._load_file(f"{name}{ext}", opener)
        for name in names
        for ext, opener in botocore.loaders._JSON_OPEN_METHODS.items()  # .json, .json.gz
        if Path(f"{name}{ext}").is_file()
    }
    read = botocore.loaders.JSONFileLoader._load_file

    def load(self: object, full_path: str, open_method: Callable[..., object]) -> object:
        return parsed.pop(full_path, None) or read(self, full_path, open_method)

    botocore.loaders.JSONFileLoader._load_file = load  # type: ignore[method-assign]


def _import_the_tasks_modules() -> None:
    """Tasks import their modules when they run (to keep `invoke --list` fast), so each
    call paid up to 0.1 CPU-s importing the same pipeline modules. None of them reads the
    environment on import. The local stack's emulator is a process of its own: not here."""
    import importlib
    import pkgutil

    import pipeline

    for module in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
        if not module.name.startswith("pipeline.stack.emulator"):
            importlib.import_module(module.name)


def _warm_invoke() -> None:
    _parse_models_once()
    _import_the_tasks_modules()


WARM: dict[str, Callable[[], None]] = {
    "aws": _parse_models_once,
    "invoke": _warm_invoke,
    "ecs-pipeline": _warm_invoke,
}


def serve(program: str) -> None:
    import importlib

    for module in PRELOAD[program]:
        importlib.import_module(module)
    WARM.get(program, lambda: None)()
    # What was loaded above lives as long as the call: frozen, a call's collections never walk
    # it (nor write to its pages, which the fork then copies). Measured over the ci, release,
    # failures and deploy files: the `invoke` calls' GC 2.6 CPU-s -> 0.2, page faults halved.
    gc.freeze()
    for line in sys.stdin:
        request = json.loads(line)
        reply = _call(program, request["args"], request["env"], request["cwd"])
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve(sys.argv[1])
