"""A bounded load generator for a production URL on loopback, every answer checked.

`rate` requests a second, each on its own connection (as many separate clients send
them); every answer is checked (the expected status, the expected text in its body, as the
smoke test checks) and attributed to the
revision that served it (the X-Revision header, as hello_world sends it). Bounded twice: by `max_seconds` and by its worker
pool, so a hung endpoint costs at most `workers` threads, each for `timeout` seconds.

    with Load(url, (200, b"Hello World!"), rate=20) as load:
        ...  # deploy
    assert load.failed() == []

The tests prove zero downtime with it; `invoke demo --strategy` shows production answering
while the gate stops a wrong revision.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Self
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    sent: float  # seconds after the load started
    status: int | None  # None: no HTTP answer at all
    revision: str | None
    error: str | None  # why it failed (a wrong status or body, a reset, a timeout); None: it did not


class Load:
    def __init__(
        self,
        url: str,
        expect: tuple[int, bytes],  # the status, and text the body holds (as the smoke test's)
        rate: float = 20.0,
        timeout: float = 5.0,
        max_seconds: float = 600.0,
        workers: int = 16,
    ) -> None:
        parts = urlsplit(url)
        if parts.hostname is None or not parts.hostname.startswith("127."):
            raise ValueError(f"{url}: load goes to loopback addresses only")
        self.url = url
        self._where = (parts.hostname, parts.port or 80, parts.path or "/")
        self.rate, self.expect, self.timeout, self.max_seconds = rate, expect, timeout, max_seconds
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._answers: list[Answer] = []
        self._thread = threading.Thread(target=self._send_at_rate, daemon=True)
        self._began = 0.0

    def __enter__(self) -> Self:
        self._began = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)  # every request sent gets its answer recorded

    def now(self) -> float:
        """Seconds since the load started, on the clock of `Answer.sent`."""
        return time.monotonic() - self._began

    def answers(self) -> list[Answer]:
        with self._lock:
            return sorted(self._answers, key=lambda a: a.sent)

    def failed(self) -> list[Answer]:
        return [a for a in self.answers() if a.error is not None]

    def revisions(self) -> list[str | None]:
        """The revisions that answered, in the order they were first seen."""
        return list(dict.fromkeys(a.revision for a in self.answers() if a.error is None))

    def wait_for(self, condition: str, holds: Callable[[list[Answer]], bool], timeout: float) -> None:
        """Wait until `holds(answers)` is true; AssertionError naming `condition` after `timeout`."""
        deadline = time.monotonic() + timeout
        while not holds(self.answers()):
            if time.monotonic() > deadline or self._stop.is_set():
                raise AssertionError(f"load: {condition} not seen within {timeout:g}s")
            time.sleep(0.2)

    def _send_at_rate(self) -> None:
        sent = 0
        while not self._stop.is_set():
            due = self._began + sent / self.rate
            if due - self._began > self.max_seconds:
                return
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            self._pool.submit(self._one, due - self._began)
            sent += 1

    def _one(self, sent: float) -> None:
        host, port, path = self._where
        conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read()
            status, revision = response.status, response.getheader("X-Revision")
            wrong = status != self.expect[0] or self.expect[1] not in body
            error = f"HTTP {status} {body[:80]!r}" if wrong else None
        except (OSError, http.client.HTTPException) as exc:
            status, revision, error = None, None, f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        with self._lock:
            self._answers.append(Answer(sent, status, revision, error))
