"""What a person (and CI's log) sees: steps with durations, progress lines, warnings.

With json_logs on, each finished step also emits one JSON line (step, status,
duration, error and the context: service, environment, sha) so CI logs can be searched.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

# Terminal escape sequences (colours, cursor moves) as programs write them for a terminal.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def plain(text: str) -> str:
    """Text without terminal escape sequences: a build's coloured stderr reads as text in a
    CI log or a file instead of `[91m` noise."""
    return _ESCAPES.sub("", text)


def when(at: datetime) -> str:
    """A time as people read it in this tool's output: `2026-12-02 09:51:13 UTC`."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class StepRecord:
    name: str
    status: str
    seconds: float
    error: str = ""


@dataclass
class Output:
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    json_logs: bool = False
    context: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    _skipped: str = field(default="", repr=False)
    _failed: str = field(default="", repr=False)

    def say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def detail(self, line: str) -> None:
        self.say(f"    {line}")

    def warn(self, line: str) -> None:
        print(f"warning: {line}", file=sys.stderr, flush=True)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.say(f"==> {name}")
        started = time.monotonic()
        self._skipped = self._failed = ""
        try:
            yield
        except BaseException as exc:
            self._failed = ""
            self._finish(name, "failed", started, getattr(exc, "message", str(exc)) or type(exc).__name__)
            raise
        # A step that had nothing to run says so: never "ok" over a command that did not run;
        # nor over work that failed without raising (a release's service among others).
        status = "failed" if self._failed else "skipped" if self._skipped else "ok"
        error, self._skipped, self._failed = self._failed, "", ""
        self._finish(name, status, started, error)

    def skip(self, reason: str) -> None:
        """Mark the current step as skipped (it ends "skipped", not "ok"), saying why."""
        self._skipped = reason
        self.detail(f"skipped: {reason}")

    def fail(self, reason: str) -> None:
        """Mark the current step as failed (it ends "failed", not "ok") without ending it:
        for steps over several services that carry on past one's failure."""
        self._failed = reason

    def _finish(self, name: str, status: str, started: float, error: str) -> None:
        record = StepRecord(name, status, time.monotonic() - started, error)
        self.steps.append(record)
        self.say(f"<== {name}: {status} ({record.seconds:.1f}s)")
        if self.json_logs:
            line = {
                "step": name,
                "status": status,
                "duration": round(record.seconds, 3),
                "error": error or None,
            }
            print(json.dumps({**self.context, **line}), file=self.stream, flush=True)
