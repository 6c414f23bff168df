"""Ctrl-C and SIGTERM while a rollout is under way: CI's cancel is an interrupt.

A deploy (`guard`): the first SIGINT or SIGTERM raises `Interrupted` where the deploy is
(usually its wait), so it can stop waiting, say what the service runs and exit 130/143
without changing anything more. `Interrupted` is a BaseException on purpose: the
deploy's "any error after UpdateService rolls back" path catches Exception, and an
interrupt must never start a rollback the person did not ask for. A second signal exits
at once (the first one's report may be waiting on AWS), as people expect from a second
Ctrl-C.

A release (`cancellable`): SIGTERM is delivered as Ctrl-C is, a KeyboardInterrupt
(`Cancelled`, which names the signal), so the code written for Ctrl-C — roll back every
service the release changed, print the table, post the marker — runs for CircleCI's
cancel too, and the exit code says which signal it was.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):  # noqa: N818 - a signal, not an error
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name


@contextmanager
def guard() -> Iterator[None]:
    """Within: the first SIGINT/SIGTERM raises Interrupted, a second exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    received: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if received:
            os._exit(128 + signum)  # the second one: no cleanup, no waiting on AWS
        received.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


class Cancelled(KeyboardInterrupt):  # noqa: N818 - a signal, not an error
    """SIGINT or SIGTERM, raised as Ctrl-C is; `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name


def signum_of(interrupt: BaseException) -> int:
    """The signal behind an interrupt: Cancelled's own, else SIGINT (a plain Ctrl-C)."""
    return int(getattr(interrupt, "signum", signal.SIGINT))


@contextmanager
def cancellable() -> Iterator[None]:
    """Within: every SIGINT or SIGTERM raises Cancelled (a KeyboardInterrupt) — the first
    stops the work, a second stops the way back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Cancelled(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
