"""HTTP checks: one GET that reports its status, latency and body excerpt, never raising.

The smoke test, the local containers' readiness and the local stack's readiness all
ask "does this URL answer, and how" through `get`; loopback checks pass `proxy=False`
so an http_proxy in the environment never sends them anywhere else.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """One HTTP answer; status 0: nothing answered, and `body` says why."""

    status: int
    seconds: float
    body: str


def get(url: str, timeout: float = 5.0, proxy: bool = True, limit: int = 2048) -> Answer:
    """GET `url`; an HTTP error status is an answer too. Reads at most `limit` bytes of the body."""
    opener = (
        urllib.request.build_opener()
        if proxy
        else urllib.request.build_opener(urllib.request.ProxyHandler({}))
    )
    started = time.monotonic()
    try:
        with opener.open(url, timeout=timeout) as resp:
            body = resp.read(limit).decode(errors="replace")
            return Answer(int(resp.status), time.monotonic() - started, body.strip())
    except urllib.error.HTTPError as err:
        body = err.read(limit).decode(errors="replace")
        return Answer(err.code, time.monotonic() - started, body.strip())
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Answer(0, time.monotonic() - started, str(reason))


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether anything answers HTTP at a loopback URL, with any status (it is up)."""
    return get(url, timeout, proxy=False, limit=0).status != 0


def status(url: str, timeout: float = 1.0) -> int | None:
    """The status a loopback URL answers with; None when nothing answers."""
    return get(url, timeout, proxy=False, limit=0).status or None
