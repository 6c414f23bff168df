"""Typed errors. Each carries the one line a person reads and the exit code CI sees.

Exit codes (documented in the README):
  1  a step failed (build, tests, smoke test, a deploy that was rolled back)
  2  bad input or configuration: nothing was changed
  3  an outside system is missing or refused us (Docker, registry, AWS)
  4  a deploy failed and could not be rolled back: a person must look now
  5  another rollout of the service is in progress, or another pipeline holds its deploy
     lock: nothing was changed (--wait, --force)
  6  the service was changed and left changed: the deploy was replaced by another one, or
     was not rolled back (--no-rollback, nothing earlier had completed); the line says what runs
  130/143  interrupted (SIGINT/SIGTERM) after the service was changed: the rollout goes on
"""

from __future__ import annotations


def first_line(error: BaseException | str, limit: int = 200) -> str:
    """The first line of an error's text, at most `limit` characters; an exception without
    text gives its type's name."""
    text = error if isinstance(error, str) else str(error)
    fallback = "" if isinstance(error, str) else type(error).__name__
    return (text.strip().splitlines() or [fallback])[0][:limit]


class PipelineError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StepFailed(PipelineError):
    """A step ran and failed: a build, tests, a smoke test."""


class ConfigError(PipelineError):
    """Bad input: flags, environment variables, project file, templates."""

    exit_code = 2

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class Unavailable(PipelineError):
    """An outside system (Docker engine, registry, AWS) is unreachable or refused us."""

    exit_code = 3


class Transient(Unavailable):
    """AWS did not answer this time: a connection refused, reset or timed out, or a 5xx.
    Nothing says the next call fails too; while a rollout runs, it is retried until the
    deadline (pipeline/transient.py), never taken for a verdict about the rollout."""


class Throttled(Unavailable):
    """AWS still throttled the call after botocore's own retries: a caller may try again later."""


class NotFound(PipelineError):
    """Something the step needs does not exist yet (repository, image, cluster...)."""

    exit_code = 2


class DeployFailed(PipelineError):
    """The new revision did not become healthy; the service was rolled back."""

    exit_code = 1


class MigrationFailed(DeployFailed):
    """The migration step's one-off task did not exit 0: no service was updated."""


class RollbackFailed(PipelineError):
    """The deploy failed and so did the rollback: the service needs a person."""

    exit_code = 4


class RolloutInProgress(PipelineError):
    """Another deployment of the service is rolling out: nothing was changed."""

    exit_code = 5


class DeployLocked(RolloutInProgress):
    """Another pipeline (or a person) holds the service's deploy lock: nothing was changed."""


class ServiceLeftChanged(DeployFailed):
    """The deploy changed the service and did not put it back: it was replaced by another
    deploy, or rolling back was not possible or not wanted. The message says what runs."""

    exit_code = 6


class DeployInterrupted(PipelineError):
    """SIGINT/SIGTERM while a rollout was under way: we stopped waiting, changed nothing more."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
