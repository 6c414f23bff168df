"""`invoke --list` stays fast: loading the tasks imports no heavy library (timings: bench/startup.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import ROOT, invoke

HEAVY = ("boto3", "botocore", "docker", "tenacity", "requests", "dotenv", "opentelemetry")


def test_loading_the_tasks_imports_no_heavy_library() -> None:
    script = (
        f"import sys, tasks; print(' '.join(m for m in sorted(sys.modules) if m.split('.')[0] in {HEAVY!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == ""


def test_loading_the_tasks_reads_no_settings_and_loads_no_verb() -> None:
    # Settings are read, and verbs imported, when a task runs: the list needs only the tasks.
    script = "import sys, tasks; print(' '.join(sorted(m for m in sys.modules if m.startswith('pipeline'))))"
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(proc.stdout.split())
    assert {m for m in loaded if not m.startswith("pipeline.tasks")} <= {
        "pipeline",
        "pipeline.clients",  # the seams' factory; it imports botocore only when a client is made
        "pipeline.errors",
        "pipeline.output",
    }, loaded


def test_invoke_list_shows_every_task_with_its_help() -> None:
    proc = invoke("--list")
    assert proc.returncode == 0
    listed = {
        line.split()[0]: line
        for line in proc.stdout.splitlines()[2:]
        if line.strip() and line.startswith("  ") and not line.startswith("   ")
    }
    for name in (
        "build",
        "test",
        "dockerize",
        "push",
        "deploy",
        "rollback",
        "smoke",
        "integration",
        "status",
        "plan",
        "ci",
        "demo",
        "pull-and-run",
        "images",
        "serve",
        "setup",
        "teardown",
        "check",
        "stack.up",
        "stack.down",
        "stack.env",
    ):
        assert name in listed and len(listed[name].split()) > 2, name


def test_every_flag_of_every_task_is_documented() -> None:
    import inspect

    import tasks

    def undocumented(collection: Any, prefix: str = "") -> list[str]:
        found = []
        for name, task in collection.tasks.items():
            params = [p for p in inspect.signature(task.body).parameters if p != "c"]
            found += [f"{prefix}{name} --{p}" for p in params if p not in (task.help or {})]
        for name, sub in collection.collections.items():
            found += undocumented(sub, f"{prefix}{name}.")
        return found

    assert undocumented(tasks.ns) == []


def test_the_console_script_runs_the_packaged_tasks_from_a_subdirectory(tmp_path: Any) -> None:
    """ecs-pipeline needs no tasks.py; the project is found from the working directory up."""
    from pathlib import Path

    script = Path(sys.executable).parent / "ecs-pipeline"
    nested = ROOT / "hello_world" / "deploy"
    proc = subprocess.run(
        [str(script), "plan", "--branch", "feature-x", "--sha", "abcdef1"],
        cwd=nested,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "steps:" in proc.stdout and "invoke test" in proc.stdout
    outside = subprocess.run(
        [str(script), "plan", "--branch", "main"], cwd=tmp_path, capture_output=True, text=True
    )
    assert outside.returncode == 2
    assert outside.stderr.strip().startswith(
        f"error: no pyproject.toml with a [tool.pipeline] section in {tmp_path}"
    )
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("ecs-pipeline ")


def test_the_console_script_keeps_python_s_bytecode_cache_unless_python_is_told_not_to(
    stack_environ: dict[str, str], tmp_path: Any
) -> None:
    # Invoke turns the cache off for every program; where the installer wrote no bytecode
    # (uv's default) each command then compiled botocore again. boto3 loads once a task runs.
    command = [str(Path(sys.executable).parent / "ecs-pipeline"), "status", "--env", "prod"]
    env = {k: v for k, v in stack_environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["AWS_RESOURCE_NAME_PREFIX"] = "bytecode"
    written = {}
    for told, prefix in ((False, tmp_path / "kept"), (True, tmp_path / "off")):
        run_env = {
            **env,
            "PYTHONPYCACHEPREFIX": str(prefix),
            **({"PYTHONDONTWRITEBYTECODE": "1"} if told else {}),
        }
        proc = subprocess.run(command, cwd=ROOT, env=run_env, capture_output=True, text=True)
        assert "bytecode-cluster" in proc.stderr, proc.stderr  # it ran the task (no such cluster)
        written[told] = [p for p in prefix.rglob("*.pyc") if "botocore" in p.parts]
    assert written[False] and not written[True]
