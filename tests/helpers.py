"""What the tests share besides fixtures: the project root, an in-process Context, `invoke`
run as a user runs it, an ECR image record, a free or a held loopback port, waiting on a
condition, a GET."""

from __future__ import annotations

import fcntl
import functools
import io
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pipeline import config
from pipeline.clients import Clients
from pipeline.context import Context
from pipeline.output import Output
from tests.forks import Forks

# This repository: hello_world's project file, tasks.py, the templates.
ROOT = Path(__file__).resolve().parent.parent
# `invoke` as a user types it, with this interpreter.
INVOKE = (sys.executable, "-m", "invoke")
INVOKE_FORKS = Forks("invoke")  # one server per worker process
ECS_PIPELINE = Forks("ecs-pipeline")  # the console script of this checkout's venv, forked


def context(
    env: Mapping[str, str],
    root: Path = ROOT,
    aws_factory: Any = None,
    project: Mapping[str, Any] | None = None,
) -> Context:
    """An in-process Context: settings from `env` and root's project file (or `project`),
    output kept in a StringIO; aws_factory puts a stand-in at the seam."""
    settings = config.load(env, root, project)
    clients = Clients(region=settings.region, aws_factory=aws_factory)
    return Context(settings, clients, Output(stream=io.StringIO()), env)


def said(ctx: Context) -> str:
    """What a context made by `context` printed."""
    stream = ctx.out.stream
    assert isinstance(stream, io.StringIO)
    return stream.getvalue()


def invoke(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path = ROOT, timeout: float = 600, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run `invoke <args>` in its own process as a user would (in the project root unless
    `cwd`); output captured as text, stdin empty. Forked from this worker's invoke server
    (tests/forks.py) unless extra keyword arguments go to subprocess.run (input, stdin)."""
    if not kwargs:
        return INVOKE_FORKS.run(args, os.environ if env is None else env, cwd, timeout)
    return subprocess.run(
        [*INVOKE, *args],
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def _test_ports() -> range:
    """Below the kernel's ephemeral range: no bind(0) and no outgoing connection (the local
    ECS's tasks, its load balancers, any client) is ever given one of these."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return range(low // 2, low)


# Reservations this process holds until it exits: an flock on one file per port, shared by
# every worker and every test run on the machine.
_PORT_LOCKS = Path(tempfile.gettempdir()) / "ecs-pipeline-test-ports"
_reserved: list[IO[str]] = []


def free_port() -> int:
    """A loopback port nothing listens on and no other test (this run's other workers,
    another run on the machine) is handed until this process exits: the server a test
    starts on it binds it later, and bind(0)'s ports could go to anyone in between."""
    _PORT_LOCKS.mkdir(exist_ok=True)
    ports = _test_ports()
    for port in random.sample(ports, len(ports)):
        lock = open(_PORT_LOCKS / str(port), "a")  # noqa: SIM115 (held until the process exits)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port))
        except OSError:  # reserved by another process, or something listens there
            lock.close()
            continue
        _reserved.append(lock)
        return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


# The deadline for what is expected to happen but takes long on a loaded machine: a rollout
# on real containers, a service settling. The suite runs several workers on 2 cores beside
# other runs, so these take many times longer than alone. Generous on purpose: a wait ends
# as soon as its condition holds, so only a broken test ever waits this long. 180 s was
# not enough once: a fleet of twelve services starting under a load average of 99 (a
# fresh-clone run) missed it while the machine recovered.
ROLLOUT_DEADLINE = 300.0
# What hello_world answers at its base path, as a load generator checks it (status, text).
HELLO = (200, b"Hello World!")


@functools.cache
def engine() -> Any:
    """The Docker engine with the deadline the pipeline gives it (pipeline.clients): a push
    or build while other workers build, push and run containers takes longer than
    docker-py's default 60 s. One client per worker: making one asks the engine its API
    version, and tests poll through it (14 s of a run's sampled worker time)."""
    import docker

    return docker.from_env(timeout=300)


def wait_until(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll `check` until it returns something truthy; fail the test after `timeout`.

    Checks are mostly API calls to the emulator: the pause grows from 0.05 s to 0.5 s, so a
    quick condition is seen at once and a rollout of minutes is not asked about 20 times a
    second (four workers polling that fast kept the emulator busy answering them)."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)
    raise AssertionError(f"condition not met within {timeout}s")


def http_get(url: str) -> tuple[int, str]:
    """(status, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""
    except OSError:
        return 0, ""


@contextmanager
def answering(answer: Callable[[], tuple[int, bytes]]) -> Iterator[str]:
    """A loopback HTTP server answering each GET with `answer()` (status, body), as a
    service would; its URL at /hello/."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            status, body = answer()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hello/"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def held_port() -> Iterator[int]:
    """A port this process listens on, as another program would hold it."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def put_image_record(aws: Callable[[str], Any], repository: str, tag: str) -> None:
    """An image as ECR lists it after a push (the deploy only reads ECR's records)."""
    layer = "sha256:" + uuid.uuid4().hex * 2
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 100,
            "digest": layer,
        },
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 100, "digest": layer}
        ],
    }
    aws("ecr").put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)


# `ecs-pipeline init`'s flags for the second service the adoption tests build: greeter,
# on port 9000 under /greet/ (its smoke text is each test's own).
GREETER_INIT = [
    "--service-dir",
    "app",
    "--container-port",
    "9000",
    "--base-path",
    "/greet/",
    "--health-path",
    "/greet/healthz",
]


def health_check_url(command: list[str]) -> str:
    """The URL a container health check of the scaffold's form asks (`python3 -I -S -c
    "...HTTPConnection('HOST:PORT'...request('GET', 'PATH')..."`)."""
    found = re.search(r"HTTPConnection\('([^']+)'.*request\('GET', '([^']+)'\)", command[-1])
    assert found, command
    return f"http://{found[1]}{found[2]}"
