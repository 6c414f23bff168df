"""hello_world's own unit tests: `invoke test` runs these (the seed's test.sh)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from hello_world.app import make_server, normalise_base_path


@pytest.fixture
def base_url() -> Iterator[str]:
    server = make_server("127.0.0.1", 0, "/hello/")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_base_path_says_hello(base_url: str) -> None:
    assert get(base_url + "/hello/") == (200, "Hello World!\n")


def test_answers_name_the_revision_only_when_one_is_set(base_url: str) -> None:
    with urllib.request.urlopen(base_url + "/hello/", timeout=5) as resp:
        assert resp.headers.get("X-Revision") is None
    server = make_server("127.0.0.1", 0, "/hello/", revision="abc1234")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hello/health"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.headers["X-Revision"] == "abc1234"
    finally:
        server.shutdown()
        server.server_close()


def test_health_route_is_under_the_base_path(base_url: str) -> None:
    status, body = get(base_url + "/hello/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_routes_outside_the_base_path_are_not_found(base_url: str) -> None:
    assert get(base_url + "/")[0] == 404
    assert get(base_url + "/health")[0] == 404


@pytest.mark.parametrize(
    ("given", "expected"),
    [("hello", "/hello/"), ("/api/v1", "/api/v1/"), ("/", "/"), ("", "/")],
)
def test_base_path_is_normalised(given: str, expected: str) -> None:
    assert normalise_base_path(given) == expected


def test_one_log_line_per_request_without_the_query(
    base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    get(base_url + "/hello/?token=s3cret")
    out, deadline = "", time.monotonic() + 5
    while '"path"' not in out and time.monotonic() < deadline:  # logged just after the response
        time.sleep(0.01)
        out += capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if '"path"' in line]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [("GET", "/hello/", 200)]
    assert "s3cret" not in json.dumps(lines)
