"""One-off tasks, logs and migrations on the local ECS, where tasks are real containers
and their output reaches the emulator's CloudWatch Logs through the awslogs stand-in.
Judged with the aws CLI."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline import deploy
from pipeline.errors import DeployFailed
from tests.conftest import DeployTarget, set_circuit_breaker
from tests.helpers import ROLLOUT_DEADLINE, ROOT
from tests.logged import log_to_cloudwatch

# Tasks run as containers only with the local ECS's scheduler (the local-ecs work).
pytest.importorskip("pipeline.stack.emulator.agent")


@pytest.fixture
def log_group(aws: Callable[[str], Any], prefix: str) -> str:
    """The group hello_world's template names (`invoke setup` creates it)."""
    group = f"/ecs/{prefix}"
    aws("logs").create_log_group(logGroupName=group)
    return group


def test_run_task_prints_the_output_and_exits_with_the_containers_code(
    run_task: Callable[..., Any],
    deploy_target: DeployTarget,
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
    log_group: str,
) -> None:
    log_to_cloudwatch(aws, deploy_target.cluster, deploy_target.service, log_group)
    proc = run_task("run-task", "--env", "prod", "--timeout", "120", "--", "sh", "-c", "echo X; exit 7")
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "X" in proc.stdout.splitlines()
    task_arn = proc.stdout.splitlines()[0].removeprefix("task ")
    task = aws_cli("ecs", "describe-tasks", "--cluster", deploy_target.cluster, "--tasks", task_arn)["tasks"][
        0
    ]
    assert task["lastStatus"] == "STOPPED"
    assert [c["exitCode"] for c in task["containers"]] == [7]
    stream = f"prod/{deploy_target.service}/{task_arn.rsplit('/', 1)[-1]}"
    events = aws_cli(
        "logs",
        "get-log-events",
        "--log-group-name",
        log_group,
        "--log-stream-name",
        stream,
        "--start-from-head",
    )["events"]
    assert [e["message"] for e in events] == ["X"]
    # invoke logs reads the same stream, naming the task and its container.
    shown = run_task("logs", "--env", "prod", "--task", task_arn)
    assert [line.split(" ", 1)[1] for line in shown.stdout.splitlines()] == [
        f"{task_arn.rsplit('/', 1)[-1]} {deploy_target.service}  X"
    ]


@pytest.fixture
def crashing_project(tmp_path: Path) -> Path:
    """hello_world whose container crashes at start, after saying why."""
    shutil.copytree(
        ROOT / "hello_world", tmp_path / "hello_world", ignore=shutil.ignore_patterns("__pycache__")
    )
    path = tmp_path / "hello_world/deploy/taskdef.json"
    template = json.loads(path.read_text())
    template["containerDefinitions"][0]["command"] = [
        "sh",
        "-c",
        "echo booting; echo 'fatal: DATABASE_URL is not set' >&2; exit 3",
    ]
    path.write_text(json.dumps(template))
    return tmp_path


def test_a_deploy_of_an_image_that_crashes_shows_the_crashs_last_log_lines(
    make_context: Callable[..., Any],
    deploy_target: DeployTarget,
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
    log_group: str,
    crashing_project: Path,
) -> None:
    set_circuit_breaker(aws, deploy_target.cluster, deploy_target.service, on=True)
    ctx = make_context(root=crashing_project)
    with pytest.raises(DeployFailed):
        deploy.deploy(
            ctx, deploy.DeployOptions("prod", deploy_target.sha, timeout=ROLLOUT_DEADLINE, smoke=False)
        )
    output = ctx.out.stream.getvalue()
    assert f"{deploy_target.service}: exit 3" in output
    assert "| booting" in output and "| fatal: DATABASE_URL is not set" in output
    service = aws_cli(
        "ecs", "describe-services", "--cluster", deploy_target.cluster, "--services", deploy_target.service
    )
    assert service["services"][0]["taskDefinition"] == deploy_target.initial


def test_a_failing_migration_leaves_the_service_on_its_revision(
    make_context: Callable[..., Any],
    deploy_target: DeployTarget,
    aws_cli: Callable[..., Any],
    log_group: str,
) -> None:
    ctx = make_context()
    envs = dict(ctx.settings.environments)
    envs["prod"] = dataclasses.replace(envs["prod"], migrate_command="sh -c 'echo migrating; exit 3'")
    ctx.settings = dataclasses.replace(ctx.settings, environments=envs)
    with pytest.raises(DeployFailed) as caught:
        deploy.deploy(
            ctx, deploy.DeployOptions("prod", deploy_target.sha, timeout=ROLLOUT_DEADLINE, smoke=False)
        )
    assert caught.value.message.startswith("migration failed:") and "exit code 3" in caught.value.message
    assert "| migrating" in ctx.out.stream.getvalue()
    service = aws_cli(
        "ecs", "describe-services", "--cluster", deploy_target.cluster, "--services", deploy_target.service
    )
    found = service["services"][0]
    assert found["taskDefinition"] == deploy_target.initial
    assert [(d["taskDefinition"], d["rolloutState"]) for d in found["deployments"]] == [
        (deploy_target.initial, "COMPLETED")
    ]
