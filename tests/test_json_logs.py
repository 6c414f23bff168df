"""Structured pipeline output: with --json-logs (or PIPELINE_JSON_LOGS=1) every finished
step also prints one JSON line, through the real `invoke` CLI."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest

RunTask = Callable[..., subprocess.CompletedProcess[str]]
KEYS = ["service", "environment", "sha", "step", "status", "duration", "error"]


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.fixture
def sha() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


@pytest.mark.parametrize("switch", ["flag", "variable"])
def test_a_finished_step_prints_one_json_line(
    run_task: RunTask, environ: dict[str, str], prefix: str, sha: str, switch: str
) -> None:
    env = {**environ, "CIRCLE_SHA1": sha}
    if switch == "variable":
        env["PIPELINE_JSON_LOGS"] = "1"
    proc = run_task("build", *(["--json-logs"] if switch == "flag" else []), env=env)
    assert proc.returncode == 0, proc.stderr
    [line] = json_lines(proc.stdout)
    assert list(line) == KEYS
    assert {k: v for k, v in line.items() if k != "duration"} == {
        "service": prefix,
        "environment": None,
        "sha": sha,
        "step": "build",
        "status": "ok",
        "error": None,
    }
    assert isinstance(line["duration"], float) and line["duration"] >= 0
    # The human-readable lines are still there.
    assert "==> build" in proc.stdout and "<== build: ok" in proc.stdout


def test_without_the_switch_there_are_no_json_lines(
    run_task: RunTask, environ: dict[str, str], sha: str
) -> None:
    proc = run_task("build", env={**environ, "CIRCLE_SHA1": sha, "PIPELINE_JSON_LOGS": ""})
    assert proc.returncode == 0, proc.stderr
    assert json_lines(proc.stdout) == []


def test_a_failed_step_says_why_in_its_json_line(
    run_task: RunTask, environ: dict[str, str], repository: str, sha: str
) -> None:
    # No image was built for this sha, so the push step fails after logging in to ECR.
    prefix = repository
    proc = run_task("push", "--sha", sha, "--json-logs", env=environ)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: no local image")
    [line] = json_lines(proc.stdout)
    assert (line["service"], line["sha"], line["step"], line["status"]) == (
        prefix,
        sha,
        f"push {sha}",
        "failed",
    )
    assert line["error"].startswith(f"no local image {prefix}:{sha}")
    assert "Traceback" not in proc.stderr
