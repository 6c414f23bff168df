"""The real `aws` CLI for the tests' checks, without its start-up cost per call.

Each call runs the awscli package's own entry point (what the `aws` script runs) in a
process of its own with the caller's environment, forked from a process that imported
awscli once: a new `aws` process spends about 0.5 CPU-s importing before it sends a
request, and the suite checks its work with some 250 of them. The forked call is still
an independent client: its own process, botocore session, argument parsing and output.

Run as a script, this file is that process: one JSON request per line on stdin
({"args": [...], "env": {...}}), one JSON reply per line on stdout ({"rc", "stdout",
"stderr"}).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path


class AwsCli:
    """A client of one such process, started on first use; calls from threads take turns."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def run(self, args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        request = json.dumps({"args": list(args), "env": dict(env)}) + "\n"
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve())],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(request)
            self._proc.stdin.flush()
            reply = self._proc.stdout.readline()
        if not reply:
            raise RuntimeError("the aws CLI's fork server exited")
        answer = json.loads(reply)
        return subprocess.CompletedProcess(["aws", *args], answer["rc"], answer["stdout"], answer["stderr"])


def _call(args: list[str], env: dict[str, str]) -> dict[str, object]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the call's own process: fd 1 and 2 are its output, env its environment
            code = 255
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                os.environ.clear()
                os.environ.update(env)
                # What importing awscli sets, computed from this call's environment.
                import awscli

                own = [
                    os.path.expanduser(os.path.expandvars(p))
                    for p in env.get("AWS_DATA_PATH", "").split(os.pathsep)
                    if p
                ]
                os.environ["AWS_DATA_PATH"] = os.pathsep.join(
                    [*own, str(Path(awscli.__file__).parent / "data")]
                )
                sys.argv = ["aws", *args]
                import awscli.clidriver

                code = awscli.clidriver.main()
            except BaseException:  # noqa: BLE001 (reported on the call's stderr, as a crash of `aws` is)
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code if isinstance(code, int) else 255)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return {
            "rc": os.waitstatus_to_exitcode(status),
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def serve() -> None:
    import awscli.clidriver  # noqa: F401 (the import every call would otherwise pay)

    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.write(json.dumps(_call(request["args"], request["env"])) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
