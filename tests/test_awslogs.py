"""The emulator's awslogs stand-in: a real container's output copied into moto's
CloudWatch Logs as ECS's awslogs driver names it, read back with the real aws CLI.

moto runs in this process (ThreadedMotoServer) because the stand-in writes to the
in-process backend, as it does inside the emulator's own process."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.stack import LOCAL_BASE_IMAGE
from pipeline.stack.emulator import awslogs
from tests.helpers import free_port, wait_until

ACCOUNT, REGION = "123456789012", "us-east-1"
AT = int(datetime(2026, 11, 29, 19, 40, tzinfo=UTC).timestamp() * 1000)
TASK = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/c/{uuid.uuid4().hex}"


def cdef(**options: str) -> dict[str, Any]:
    return {"name": "app", "logConfiguration": {"logDriver": "awslogs", "options": options}}


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        (
            cdef(**{"awslogs-group": "/g", "awslogs-stream-prefix": "prod"}),
            awslogs.Destination("/g", f"prod/app/{TASK.rsplit('/', 1)[-1]}", None, False),
        ),
        (
            cdef(**{"awslogs-group": "/g", "awslogs-region": "eu-west-1", "awslogs-create-group": "true"}),
            awslogs.Destination("/g", TASK.rsplit("/", 1)[-1], "eu-west-1", True),
        ),
        ({"name": "app"}, None),
        ({"name": "app", "logConfiguration": {"logDriver": "json-file"}}, None),
    ],
)
def test_destination_is_ecs_awslogs_naming(definition: dict[str, Any], expected: Any) -> None:
    assert awslogs.destination(definition, TASK) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-29T19:40:00.123456789Z hello world", (AT + 123, "hello world")),
        ("2026-11-29T19:40:00Z x", (AT, "x")),
        ("2026-11-29T19:40:00.5Z  indented", (AT + 500, " indented")),
    ],
)
def test_parse_line_takes_dockers_time_stamp(raw: str, expected: tuple[int, str]) -> None:
    assert awslogs.parse_line(raw) == expected


@pytest.fixture(scope="module")
def moto_here() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def aws_cli(endpoint: str, *args: str) -> Any:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    proc = subprocess.run(["aws", *args, "--output", "json"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def test_a_containers_output_reaches_its_stream_and_aws_logs_reads_it(
    moto_here: str, stack_environ: dict[str, str]
) -> None:
    from pipeline.clients import docker_client

    group = f"/ecs/{uuid.uuid4().hex[:8]}"
    aws_cli(moto_here, "logs", "create-log-group", "--log-group-name", group)
    definition = cdef(**{"awslogs-group": group, "awslogs-stream-prefix": "prod"})
    assert awslogs.refusal(definition, TASK, ACCOUNT, REGION) is None
    container = docker_client().containers.run(
        stack_environ.get("BASE_IMAGE", LOCAL_BASE_IMAGE),
        ["sh", "-c", "echo X; echo to stderr >&2; echo last; exit 7"],
        detach=True,
        network_mode="none",
    )
    try:
        shipper = awslogs.ship(container, definition, TASK, ACCOUNT, REGION)
        assert shipper is not None
        assert container.wait(timeout=30)["StatusCode"] == 7
        awslogs.flush(container.id)
    finally:
        container.remove(force=True)
    stream = f"prod/app/{TASK.rsplit('/', 1)[-1]}"
    events = aws_cli(
        moto_here,
        "logs",
        "get-log-events",
        "--log-group-name",
        group,
        "--log-stream-name",
        stream,
        "--start-from-head",
    )["events"]
    messages = [e["message"] for e in events]
    # stdout and stderr are two pipes: their lines interleave as the engine read them.
    assert sorted(messages) == ["X", "last", "to stderr"] and messages.index("X") < messages.index("last")
    assert all(abs(e["timestamp"] - events[0]["timestamp"]) < 60_000 for e in events)


def test_a_missing_group_is_ecs_refusal_unless_the_driver_may_create_it(moto_here: str) -> None:
    group = f"/ecs/missing-{uuid.uuid4().hex[:8]}"
    plain = cdef(**{"awslogs-group": group, "awslogs-stream-prefix": "p"})
    assert awslogs.refusal(plain, TASK, ACCOUNT, REGION) == awslogs.MISSING_GROUP
    creating = cdef(**{"awslogs-group": group, "awslogs-stream-prefix": "p", "awslogs-create-group": "true"})
    assert awslogs.refusal(creating, TASK, ACCOUNT, REGION) is None


def test_the_group_is_created_when_the_options_say_so(moto_here: str, stack_environ: dict[str, str]) -> None:
    from pipeline.clients import docker_client

    group = f"/ecs/created-{uuid.uuid4().hex[:8]}"
    definition = cdef(
        **{"awslogs-group": group, "awslogs-stream-prefix": "p", "awslogs-create-group": "true"}
    )
    container = docker_client().containers.run(
        stack_environ.get("BASE_IMAGE", LOCAL_BASE_IMAGE), ["echo", "made"], detach=True, network_mode="none"
    )
    try:
        awslogs.ship(container, definition, TASK, ACCOUNT, REGION)
        container.wait(timeout=30)
        awslogs.flush(container.id)
    finally:
        container.remove(force=True)
    found = wait_until(
        lambda: aws_cli(moto_here, "logs", "describe-log-streams", "--log-group-name", group)["logStreams"], 5
    )
    assert [s["logStreamName"] for s in found] == [f"p/app/{TASK.rsplit('/', 1)[-1]}"]
