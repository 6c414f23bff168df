"""Riding out transient AWS faults while a rollout runs: a network blip is not a verdict.

botocore already retries a failed call a few times within seconds. When a call still fails
with a connection error, a timeout or a 5xx (errors.Transient), `outlast` keeps calling
with backoff until the call answers or the deadline passes, and says what is happening
("AWS unreachable for 6 s, retrying"). Only then does the fault become the caller's error.
The wait, the way back and the final "what runs now" line go through it, so only a
verdict about the rollout (failed, rolled back, replaced, timed out) leads to a rollback.
tenacity is imported only when a fault happens: a healthy deploy never pays for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from .errors import Transient

T = TypeVar("T")


def outlast(
    call: Callable[[], T],
    deadline: float,
    say: Callable[[str], None],
    first: Transient | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """call() until it answers or `deadline` (on `clock`) passes, backing off 0.5 s → 5 s.

    `first` is the fault the caller already saw (the outage began then). Each failed
    attempt prints one progress line; the answer after an outage prints one more. When the
    deadline passes, the last fault is raised."""
    from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

    began = clock()
    backoff = wait_exponential(multiplier=0.5, min=0.5, max=5)

    def pause(state: RetryCallState) -> float:
        return max(0.0, min(backoff(state), deadline - clock()))

    def tell(state: RetryCallState) -> None:
        fault = state.outcome.exception() if state.outcome else None
        say(f"AWS unreachable for {clock() - began:.0f} s, retrying ({fault})")

    if first is not None:
        say(f"AWS unreachable, retrying until the deadline ({first})")
    retrying = Retrying(
        retry=retry_if_exception_type(Transient),
        stop=lambda _state: clock() >= deadline,
        wait=pause,
        sleep=sleep,
        before_sleep=tell,
        reraise=True,
    )
    result = retrying(call)
    if first is not None or retrying.statistics.get("attempt_number", 1) > 1:
        say(f"AWS answers again after {clock() - began:.0f} s")
    return result


def calling(
    call: Callable[[], T],
    deadline: float,
    say: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """call(), and through `outlast` only once it fails transiently (no tenacity otherwise)."""
    try:
        return call()
    except Transient as fault:
        return outlast(call, deadline, say, fault, clock, sleep)
