"""The benchmarks still measure what they claim: bench/deploy_peers.py runs our deploy
against its own emulator (never the shared one) and sees the calls the README promises.

No time is asserted here (speed belongs in bench/); this keeps the scripts from rotting
unnoticed, as they once did when the prefix stopped having a default."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def test_the_peer_benchmark_runs_our_deploy_with_six_aws_calls_and_three_for_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "runs.json"
    proc = subprocess.run(
        [sys.executable, "bench/deploy_peers.py", "--tools", "ours", "--runs", "1", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert run["tool"] == "ours" and run["exit_code"] == 0, run["said"]
    # No STS, no ListTasks: one DescribeServices to check, one per poll, one tag once verified;
    # the deploy lock is one SSM parameter, put first and deleted (after a read: still ours?) last.
    assert [c["action"] for c in run["calls"]] == [
        "ssm:PutParameter",
        "ecr:DescribeImages",
        "ecs:DescribeServices",
        "ecs:RegisterTaskDefinition",
        "ecs:UpdateService",
        "ecs:DescribeServices",
        "ecs:TagResource",
        "ssm:GetParameter",
        "ssm:DeleteParameter",
    ]
