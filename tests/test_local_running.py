"""pipeline/local/running.py (pure parts): the RunSpec, what it tells a person, container names, ports."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pipeline import config, local
from tests.helpers import ROOT, held_port

A = "abc1234" + "a" * 33


SETTINGS = config.load({"AWS_RESOURCE_NAME_PREFIX": "shop"}, ROOT)


@pytest.mark.parametrize(
    ("has_bridge", "env", "environment", "extra", "url"),
    [
        (
            False,
            {"API_TOKEN": "t", "PORT": "1"},
            {"BASE_PATH": "/hello/", "API_TOKEN": "t", "PORT": "9000", "HOST": "127.0.0.1"},
            {"network_mode": "host"},
            "http://127.0.0.1:9000/hello/",
        ),
        (
            True,
            {"BASE_PATH": "custom", "PORT": "1"},
            {"BASE_PATH": "custom", "PORT": "8080"},
            {"ports": {"8080/tcp": ("127.0.0.1", 9000)}},
            "http://127.0.0.1:9000/custom/",
        ),
    ],
    ids=["no-bridge-host-network", "bridge-publishes-on-loopback"],
)
def test_run_spec(
    has_bridge: bool, env: dict[str, str], environment: dict[str, str], extra: dict[str, Any], url: str
) -> None:
    spec = local.run_spec(SETTINGS, "img:1", "shop-abc", env, 9000, has_bridge)
    assert spec.create_args() == {"image": "img:1", "name": "shop-abc", "environment": environment, **extra}
    assert spec.url == url


def test_describe_names_variables_but_never_values() -> None:
    env = {"API_TOKEN": "hunter2", "PORT": "1"}
    spec = local.run_spec(SETTINGS, "img:1", "shop-abc", env, 9000, False)
    text = "\n".join(local.describe(spec, Path("local.env"), env))
    assert "API_TOKEN, PORT" in text and "PORT from the env file replaced" in text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    ("repository", "revision", "name"),
    [
        ("shop", A, "shop-abc1234aaaaa"),
        ("team/shop", "v1.2.3", "team-shop-v1.2.3"),
        ("shop", "0123", "shop-0123"),
    ],
)
def test_container_name(repository: str, revision: str, name: str) -> None:
    assert local.container_name(repository, revision) == name


TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0
   3: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0
"""


@pytest.mark.parametrize(("port", "inodes"), [(8080, {"111", "222"}), (8081, {"444"}), (9000, set())])
def test_listening_inodes(port: int, inodes: set[str]) -> None:
    assert local.listening_inodes(TCP_TABLE, port) == inodes  # established (01) sockets do not count


def test_port_holder_finds_this_process() -> None:
    with held_port() as port:
        found = local.port_holder(port)
    assert found is not None and found.endswith(f"(pid {os.getpid()})")


@pytest.mark.parametrize(
    ("value", "port"),
    [("8080", 8080), (1, 1), ("65535", 65535), ("0", None), ("65536", None), ("-1", None), ("http", None)],
)
def test_parse_port(value: object, port: int | None) -> None:
    assert local.parse_port(value) == port


def test_serve_environment_puts_the_env_file_on_top() -> None:
    env = local.serve_environment(SETTINGS, {"HOST": "my-laptop", "PATH": "/bin"}, {"BASE_PATH": "/x/"})
    assert env == {"HOST": "127.0.0.1", "PATH": "/bin", "PORT": "8080", "BASE_PATH": "/x/"}
