"""invoke logs and the CloudWatch Logs reading it shares with run-task and failure
reports: where a container's lines are (tables), and a service's lines across its
tasks from the emulator's CloudWatch Logs, written there as ECS's awslogs driver names them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline import logs
from pipeline.errors import ConfigError
from tests.conftest import DeployTarget
from tests.logged import log_to_cloudwatch


def test_place_follows_the_awslogs_options() -> None:
    container = {
        "name": "app",
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": "/ecs/x",
                "awslogs-region": "eu-west-1",
                "awslogs-stream-prefix": "prod",
            },
        },
    }
    where = logs.place(container)
    assert where == logs.LogPlace("/ecs/x", "prod", "app", "eu-west-1")
    assert where.stream("abc123") == "prod/app/abc123"
    assert where.streams_prefix == "prod/app/"


@pytest.mark.parametrize(
    "config",
    [
        None,
        {"logDriver": "json-file"},
        {
            "logDriver": "awslogs",
            "options": {"awslogs-group": "/g"},
        },  # no prefix: stream named by container id
        {"logDriver": "awslogs", "options": {"awslogs-stream-prefix": "p"}},
    ],
)
def test_no_place_without_awslogs_group_and_prefix(config: dict[str, Any] | None) -> None:
    assert logs.place({"name": "app", "logConfiguration": config}) is None


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400)])
def test_parse_since(text: str, seconds: int) -> None:
    assert logs.parse_since(text) == seconds


@pytest.mark.parametrize("text", ["10", "m", "0m", "10 minutes", "-5m"])
def test_parse_since_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ConfigError, match="--since"):
        logs.parse_since(text)


def test_format_line_names_task_and_container() -> None:
    event = {"timestamp": 0, "message": "hello\n", "logStreamName": "prod/app/abc123"}
    assert logs.format_line(event) == "00:00:00 abc123 app  hello"


# --- on the emulator ---------------------------------------------------------------------


@pytest.fixture
def logged_service(aws: Callable[[str], Any], deploy_target: DeployTarget, prefix: str) -> dict[str, Any]:
    """The service's definition logs to CloudWatch Logs; two tasks wrote lines, another env one."""
    cw = aws("logs")
    group = f"/ecs/{prefix}"
    cw.create_log_group(logGroupName=group)
    log_to_cloudwatch(aws, deploy_target.cluster, deploy_target.service, group)
    now = int(time.time() * 1000)

    def write(stream: str, lines: list[str], at: int) -> None:
        cw.create_log_stream(logGroupName=group, logStreamName=stream)
        cw.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=[{"timestamp": at + i, "message": line} for i, line in enumerate(lines)],
        )

    c = deploy_target.service
    write(f"prod/{c}/task1111", ["one from 1", "two from 1"], now - 5000)
    write(f"prod/{c}/task2222", ["one from 2"], now - 4000)
    write(f"staging/{c}/task3333", ["staging line"], now - 3000)
    write(f"prod/{c}/task0000", ["an hour ago"], now - 3_600_000)
    return {"group": group, "write": write, "now": now, "container": c}


def test_logs_shows_the_services_recent_lines_with_task_and_container(
    run_task: Callable[..., Any], logged_service: dict[str, Any]
) -> None:
    proc = run_task("logs", "--env", "prod", "--since", "10m")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    c = logged_service["container"]
    assert [line.split(" ", 1)[1] for line in lines] == [
        f"task1111 {c}  one from 1",
        f"task1111 {c}  two from 1",
        f"task2222 {c}  one from 2",
    ]

    one = run_task("logs", "--env", "prod", "--task", "arn:aws:ecs:us-east-1:123456789012:task/c/task2222")
    assert [line.split(" ", 1)[1] for line in one.stdout.splitlines()] == [f"task2222 {c}  one from 2"]

    longer = run_task("logs", "--env", "prod", "--since", "2h")
    assert f"task0000 {c}  an hour ago" in longer.stdout


def test_logs_json_is_one_object_a_line_for_scripts(
    run_task: Callable[..., Any], logged_service: dict[str, Any]
) -> None:
    proc = run_task("logs", "--env", "prod", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    c = logged_service["container"]
    assert [(e["task"], e["container"], e["message"]) for e in events] == [
        ("task1111", c, "one from 1"),
        ("task1111", c, "two from 1"),
        ("task2222", c, "one from 2"),
    ]
    start = datetime.fromtimestamp((logged_service["now"] - 5000) / 1000, UTC)
    assert events[0]["time"] == start.isoformat(timespec="milliseconds")
    none = run_task("logs", "--env", "prod", "--json", "--task", "nosuchtask")
    assert none.returncode == 0 and none.stdout == ""
    assert none.stderr.strip() == "(no log lines from task nosuchtask in the last 10m)"


def test_logs_follow_prints_new_lines_and_new_tasks_once(
    make_context: Callable[..., Any], logged_service: dict[str, Any]
) -> None:
    ctx = make_context()
    write, c = logged_service["write"], logged_service["container"]

    def between_polls(_seconds: float) -> None:
        write(f"prod/{c}/task{len(written) + 5555}", ["a new task's line"], int(time.time() * 1000))
        written.append(1)

    written: list[int] = []
    printed = logs.show(ctx, "prod", "10m", follow=True, sleep=between_polls, polls=3)
    output = ctx.out.stream.getvalue()
    assert printed == 5 and output.count("a new task's line") == 2
    assert output.count("one from 1") == 1


def test_logs_of_a_service_without_awslogs_is_one_line(
    run_task: Callable[..., Any], deploy_target: DeployTarget
) -> None:
    proc = run_task("logs", "--env", "prod")
    assert proc.returncode == 2
    assert "sends no container to CloudWatch Logs" in proc.stderr.strip()


def test_logs_with_no_lines_says_so(run_task: Callable[..., Any], logged_service: dict[str, Any]) -> None:
    proc = run_task("logs", "--env", "prod", "--task", "nosuchtask")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "(no log lines from task nosuchtask in the last 10m)"


def test_logs_reads_every_task_of_the_service_however_many(
    run_task: Callable[..., Any], logged_service: dict[str, Any]
) -> None:
    # More streams than one FilterLogEvents call may name (100): the prefix covers them all.
    write, c = logged_service["write"], logged_service["container"]
    for i in range(105):
        write(f"prod/{c}/many{i:03d}", [f"from many{i:03d}"], int(time.time() * 1000) - 2000)
    proc = run_task("logs", "--env", "prod")
    assert proc.returncode == 0, proc.stderr
    assert sum("from many" in line for line in proc.stdout.splitlines()) == 105


def test_logs_without_the_log_group_is_one_line(
    run_task: Callable[..., Any], aws: Callable[[str], Any], deploy_target: DeployTarget, prefix: str
) -> None:
    log_to_cloudwatch(aws, deploy_target.cluster, deploy_target.service, f"/ecs/{prefix}-missing")
    proc = run_task("logs", "--env", "prod")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: log group /ecs/{prefix}-missing does not exist; `invoke setup` creates it (the tasks write there)"
    )
