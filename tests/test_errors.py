"""pipeline/errors.py: exit codes by kind of failure, and the first line of an error."""

from __future__ import annotations

import pytest

from pipeline import errors


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
