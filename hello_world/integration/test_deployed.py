"""Integration tests against a deployed hello_world: `invoke integration` runs these.

BASE_URL is the service's base URL (e.g. http://my-alb.example.com/hello/).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest

BASE_URL = os.environ.get("BASE_URL", "")
pytestmark = pytest.mark.skipif(not BASE_URL, reason="BASE_URL is not set")


def fetch(path: str) -> tuple[int, str, str]:
    url = BASE_URL.rstrip("/") + "/" + path
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def test_says_hello() -> None:
    status, _, body = fetch("")
    assert (status, body.strip()) == (200, "Hello World!")


def test_health_is_json_ok() -> None:
    status, content_type, body = fetch("health")
    assert status == 200 and content_type == "application/json"
    assert json.loads(body) == {"status": "ok"}


def test_unknown_route_is_404() -> None:
    assert fetch("no-such-route")[0] == 404
