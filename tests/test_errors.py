"""pipeline/errors.py: exit codes by kind of failure, and the first line of an error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import errors
from tests.helpers import ROOT


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.StepFailed("x"), 1),
        (errors.DeployFailed("x"), 1),
        (errors.ConfigError("x"), 2),
        (errors.NotFound("x"), 2),
        (errors.Unavailable("x"), 3),
        (errors.RollbackFailed("x"), 4),
    ],
)
def test_exit_codes(error: errors.PipelineError, code: int) -> None:
    assert error.exit_code == code


def test_config_errors_carry_every_problem() -> None:
    error = errors.ConfigError(["A: bad", "B: worse"])
    assert (error.problems, error.message) == (["A: bad", "B: worse"], "A: bad; B: worse")


@pytest.mark.parametrize(
    ("error", "limit", "line"),
    [
        (OSError("  first\nsecond\n"), 200, "first"),
        (ValueError(), 200, "ValueError"),  # no text: the type's name
        ("", 200, ""),  # a text without text stays empty
        ("x" * 300, 200, "x" * 200),
        (RuntimeError("abcdef"), 3, "abc"),
    ],
)
def test_first_line(error: BaseException | str, limit: int, line: str) -> None:
    assert errors.first_line(error, limit) == line


def test_a_reader_that_stops_reading_ends_the_task_quietly(tmp_path: Path) -> None:
    """`invoke status | head`: a closed pipe is the reader's choice, not an error to report."""
    script = (
        "from invoke import Exit\n"
        "from pipeline.tasks._base import verb\n"
        "@verb\n"
        "def task():\n"
        "    for n in range(200000):\n"
        "        print(f'line {n}')\n"
        "try:\n"
        "    task()\n"
        "except Exit as exc:\n"  # as Invoke's Program ends a task: its message, then its code
        "    if exc.message:\n"
        "        import sys; print(exc.message, file=sys.stderr)\n"
        "    raise SystemExit(exc.code)\n"
    )
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f'"{sys.executable}" -c "$0" | head -n 1; echo "status ${{PIPESTATUS[0]}}" >&2',
            script,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.stdout == "line 0\n"
    assert proc.stderr == "status 141\n"  # no "unexpected BrokenPipeError", no traceback
