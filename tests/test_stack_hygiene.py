"""Local stack hygiene (issue 19): the local ECS's task containers listen on loopback only,
and `stack.up` never silently reuses an emulator of another version or checkout."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
import pytest

from pipeline import stack
from pipeline.errors import Unavailable
from pipeline.stack.emulator import engine, identity
from tests.conftest import DeployTarget
from tests.helpers import free_port, wait_until


def listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc shows them) of TCP sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_a_local_ecs_task_listens_on_loopback_only(deploy_target: DeployTarget) -> None:
    client = docker.from_env()
    [container] = client.containers.list(filters={"label": f"{engine.CLUSTER_LABEL}={deploy_target.cluster}"})
    environment = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert environment["HOST"] == "127.0.0.1"
    port = int(environment["PORT"])
    addresses = wait_until(lambda: listening(port), timeout=30)
    assert addresses == {"0100007F"}, addresses  # 127.0.0.1, never 0.0.0.0 (00000000)


class _OtherEmulator(BaseHTTPRequestHandler):
    """An emulator of another version: answers STS as the stack's does, has no /identity."""

    def do_POST(self) -> None:  # noqa: N802
        body = f"<Account>{stack.ACCOUNT_ID}</Account>".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def other_emulator() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OtherEmulator)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_stack_up_names_an_emulator_of_another_version_instead_of_reusing_it(
    other_emulator: int, tmp_path: Path
) -> None:
    cfg = stack.StackConfig(
        directory=tmp_path, registry_port=free_port(), emulator_port=other_emulator, bridge_port=free_port()
    )
    said: list[str] = []
    with pytest.raises(Unavailable) as info:
        stack.ensure_emulator(cfg, said.append)
    assert info.value.message.startswith(
        f"an emulator of an older version (no identity) answers on http://127.0.0.1:{other_emulator}, "
        f"not this checkout's ({identity()['version']}, from {identity()['checkout']}); stop it"
    )
    assert not said  # nothing claimed to be running


def test_stack_up_reuses_its_own_emulator(stack_environ: dict[str, str]) -> None:
    cfg = stack.config_from(dict(os.environ) | stack_environ)
    said: list[str] = []
    stack.ensure_emulator(cfg, said.append)
    assert said == [f"aws emulator: running on {cfg.endpoint} (local ECS timings x{cfg.speed:g})"]
    assert stack._running_identity(cfg) == identity()


def test_a_shutdown_waits_for_a_container_being_made_and_then_no_task_makes_one() -> None:
    starts = engine.Starts()
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def make() -> None:
        with starts.making():
            inside.set()
            release.wait(30)
            order.append("made")

    def close() -> None:
        starts.close(timeout=30)
        order.append("closed")

    maker = threading.Thread(target=make)
    maker.start()
    assert inside.wait(30)
    closer = threading.Thread(target=close)
    closer.start()
    closer.join(0.5)
    assert closer.is_alive()  # the shutdown waits for the container under way
    release.set()
    closer.join(30)
    maker.join(30)
    assert order == ["made", "closed"]
    with pytest.raises(engine.Closed), starts.making():
        pass
