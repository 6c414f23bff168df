"""The template and the values file cannot move the identity the checks checked (issue 19):
the image swap replayed through a real `invoke deploy` on the local stack is refused with
exit 2 and registers nothing (the aws CLI shows the family unchanged); what `--dry-run`
prints is exactly what a deploy registers; bad values files are bad input (exit 2)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DeployTarget
from tests.helpers import ROOT

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def service(tmp_path: Path) -> Path:
    """hello_world as a service repository of its own, committed in git."""
    root = tmp_path / "service"
    shutil.copytree(ROOT / "hello_world", root / "hello_world", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "tasks.py", root / "tasks.py")
    shutil.copy(ROOT / ".dockerignore", root / ".dockerignore")
    (root / "pyproject.toml").write_text(
        '[tool.pipeline]\nservice_dir = "hello_world"\nbase_path = "/hello/"\n'
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "service"], cwd=root, check=True)
    return root


def assert_within(printed: Any, registered: Any, where: str) -> None:
    """Everything printed was registered as printed (the API adds its defaults: cpu 0, [])."""
    if isinstance(printed, dict):
        for key, value in printed.items():
            assert key in registered, f"{where}.{key}"
            assert_within(value, registered[key], f"{where}.{key}")
    elif isinstance(printed, list):
        assert len(printed) == len(registered), where
        for index, (one, other) in enumerate(zip(printed, registered, strict=True)):
            assert_within(one, other, f"{where}[{index}]")
    else:
        assert printed == registered, where


def revisions(aws_cli: Callable[..., Any], family: str) -> list[str]:
    arns = aws_cli("ecs", "list-task-definitions", "--family-prefix", family)["taskDefinitionArns"]
    return [a.rsplit(":", 1)[1] for a in arns]


def test_the_issues_values_file_swap_is_refused_and_registers_nothing(
    service: Path, run_task: Run, deploy_target: DeployTarget, aws_cli: Callable[..., Any]
) -> None:
    values = service / "hello_world/deploy/prod.json"
    attack = json.loads(values.read_text())
    attack["values"] |= {
        "image": "docker.io/attacker/evil:latest",
        "family": "attacker-family",
        "execution_role_arn": "arn:aws:iam::999999999999:role/admin",
    }
    values.write_text(json.dumps(attack))
    before = aws_cli(
        "ecs", "describe-services", "--cluster", deploy_target.cluster, "--services", deploy_target.service
    )
    proc = run_task("deploy", "--env", "prod", "--sha", deploy_target.sha, "--no-smoke", cwd=service)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "error: 3 problems:" or "values." in lines[0], lines
    for key in ("execution_role_arn", "family", "image"):
        assert f"hello_world/deploy/prod.json: values.{key}: set by the pipeline" in proc.stderr
    assert "Traceback" not in proc.stderr and "is in ECR" not in proc.stdout
    assert revisions(aws_cli, deploy_target.family) == ["1"]
    assert not aws_cli("ecs", "list-task-definitions", "--family-prefix", "attacker-family")[
        "taskDefinitionArns"
    ]
    after = aws_cli(
        "ecs", "describe-services", "--cluster", deploy_target.cluster, "--services", deploy_target.service
    )
    assert after["services"][0]["taskDefinition"] == before["services"][0]["taskDefinition"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"values": {"cpu": "\xff"}}', "not UTF-8"),
        (b'{"values": {"x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}", "nested deeper than 32 levels"),
    ],
)
def test_unreadable_values_files_exit_2_without_a_traceback(
    service: Path, run_task: Run, deploy_target: DeployTarget, content: bytes, problem: str
) -> None:
    (service / "hello_world/deploy/prod.json").write_bytes(content)
    proc = run_task(
        "deploy", "--env", "prod", "--sha", deploy_target.sha, "--dry-run", "--no-smoke", cwd=service
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: environment values ") and problem in proc.stderr
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr.replace("error:", "")


def test_what_dry_run_prints_is_what_the_deploy_registers(
    service: Path,
    run_task: Run,
    deploy_target: DeployTarget,
    aws_cli: Callable[..., Any],
    environ: dict[str, str],
) -> None:
    dry = run_task(
        "deploy", "--env", "prod", "--sha", deploy_target.sha, "--dry-run", "--no-smoke", cwd=service
    )
    assert dry.returncode == 0, dry.stderr
    printed, _ = json.JSONDecoder().raw_decode(dry.stdout[dry.stdout.index("\n{") + 1 :])
    done = run_task("deploy", "--env", "prod", "--sha", deploy_target.sha, "--no-smoke", cwd=service)
    assert done.returncode == 0, done.stdout + done.stderr
    live = aws_cli(
        "ecs",
        "describe-task-definition",
        "--task-definition",
        f"{deploy_target.family}:2",
        "--include",
        "TAGS",
    )
    registered = live["taskDefinition"]
    for key, value in printed.items():
        if key == "tags":  # created-at is the moment of each run
            assert {t["key"]: t["value"] for t in value if t["key"] != "pipeline:created-at"}.items() <= {
                t["key"]: t["value"] for t in live["tags"]
            }.items()
        else:
            assert_within(value, registered[key], key)
    [container] = registered["containerDefinitions"]
    assert (
        container["image"]
        == f"{environ['ECR_ENDPOINT']}/{environ['AWS_RESOURCE_NAME_PREFIX']}:{deploy_target.sha}"
    )
    assert registered["executionRoleArn"].endswith(
        f":role/{environ['AWS_RESOURCE_NAME_PREFIX']}-prod-ecs-execution-role"
    )


@pytest.mark.parametrize(
    "values",
    [
        {"secrets": {"DB_PASSWORD": "Tr0ub4dor&3-not-a-reference"}},  # a value where a reference goes
        {"environment": {"DB_PASS": "Tr0ub4dor&3-not-a-reference"}},  # a credential as a plain variable
        {"environment": {"DATABASE_URL": "postgres://app:Tr0ub4dor&3-not-a-reference@db/app"}},
    ],
)
def test_a_secret_value_in_the_wrong_place_is_never_echoed(
    service: Path, run_task: Run, deploy_target: DeployTarget, values: dict[str, Any]
) -> None:
    (service / "hello_world/deploy/prod.json").write_text(
        json.dumps({"values": {"cpu": "256", "memory": "512"}, **values})
    )
    for args in (("--json-logs",), ("--dry-run",)):
        proc = run_task(
            "deploy", "--env", "prod", "--sha", deploy_target.sha, "--no-smoke", *args, cwd=service
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Tr0ub4dor" not in proc.stdout + proc.stderr
        assert "hello_world/deploy/prod.json: " in proc.stderr  # the file and the key are named
