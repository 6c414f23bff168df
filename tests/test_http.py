"""pipeline/http.py: one GET that reports status, latency and body, never raising; loopback
checks that no http_proxy can divert."""

from __future__ import annotations

import pytest

from pipeline import http
from tests.helpers import free_port


def test_an_answer_of_any_status_is_an_answer(hello_url: str) -> None:
    ok = http.get(hello_url)
    assert (ok.status, ok.body) == (200, "Hello World!") and ok.seconds > 0
    missing = http.get(hello_url + "nope")
    assert missing.status == 404
    assert http.answers(hello_url + "nope") and http.status(hello_url + "nope") == 404


def test_nothing_listening_is_status_0_with_the_reason() -> None:
    closed = f"http://127.0.0.1:{free_port()}/"
    answer = http.get(closed, timeout=1)
    assert answer.status == 0 and "Connection refused" in answer.body
    assert not http.answers(closed) and http.status(closed) is None
    assert http.get("not a url").status == 0


def test_loopback_checks_ignore_http_proxy(hello_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert http.get(hello_url).status == 0  # the default follows the proxy, which is not there
    assert http.status(hello_url) == 200 and http.answers(hello_url)
