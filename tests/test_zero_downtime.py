"""Zero downtime, measured: a bounded load generator (tests/load.py) sends 20 requests a
second to the production URL, through the local load balancer, while a deploy runs. Every
answer is checked and attributed to the revision that served it. Real engine, registry,
emulator (the scheduler and the ALB's data plane are its stand-ins), hello_world's image."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import push_image
from tests.load import Answer, Load
from tests.standins import closed_port_url

RATE = 20.0


def new_sha() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


def alb_url(stdout: str) -> str:
    (url,) = {w for w in stdout.split() if w.startswith("http://127.0.0.1:") and w.endswith("/hello/")}
    return url


def served_by(answer: Answer, sha: str) -> bool:
    return answer.error is None and answer.revision == sha


# --- the load generator tells failures from answers ---------------------------------


@pytest.fixture
def wrong_server() -> Iterator[str]:
    """Answers 200 with the wrong body on odd requests, 503 on even ones."""
    count = iter(range(10**6))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            status, body = (200, b"Goodbye\n") if next(count) % 2 else (503, b"busy\n")
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hello/"
    server.shutdown()
    server.server_close()


def test_the_load_generator_counts_wrong_bodies_error_statuses_and_refused_connections_as_failed(
    wrong_server: str,
) -> None:
    with Load(wrong_server, rate=50) as load:
        load.wait_for("4 answers", lambda a: len(a) >= 4, timeout=30)
    with Load(closed_port_url(), rate=50) as refused:
        refused.wait_for("2 answers", lambda a: len(a) >= 2, timeout=30)
    errors = {a.error for a in load.failed()}
    assert len(load.failed()) == len(load.answers())
    assert "HTTP 200 b'Goodbye\\n'" in errors and "HTTP 503 b'busy\\n'" in errors
    assert refused.answers() and all(
        a.status is None and "Refused" in str(a.error) for a in refused.answers()
    )


def test_the_load_generator_refuses_any_address_but_loopback() -> None:
    with pytest.raises(AssertionError, match="loopback only"):
        Load("http://10.0.0.1/hello/")


# --- deploys under load ----------------------------------------------------------------


@pytest.mark.heavy
def test_a_rolling_deploy_under_load_fails_no_request_and_after_it_only_the_new_revision_answers(
    run_task: Callable[..., Any], environ: dict[str, str], prefix: str, hello_image: str
) -> None:
    first, second = new_sha(), new_sha()
    proc = run_task("setup")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    for sha in (first, second):
        push_image(environ, hello_image, prefix, sha)
    for step in (("setup", "--env", "prod"), ("deploy", "--env", "prod", "--sha", first)):
        proc = run_task(*step)
        assert proc.returncode == 0, (step, proc.stdout[-2000:], proc.stderr)
    url = alb_url(proc.stdout)

    with Load(url, rate=RATE) as load:
        load.wait_for(
            f"{RATE:g} answers from {first[:7]}", lambda a: sum(served_by(x, first) for x in a) >= RATE, 60
        )
        proc = run_task("deploy", "--env", "prod", "--sha", second)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        done = load.now()
        # Until the load has run a while past the deploy's end.
        load.wait_for(
            "answers sent after the deploy", lambda a: sum(x.sent > done + 2 for x in a) >= RATE, 60
        )

    answers = load.answers()
    assert load.failed() == [], f"{len(load.failed())} of {len(answers)} failed, e.g. {load.failed()[:3]}"
    assert load.revisions() == [first, second]
    after = [a for a in answers if a.sent > done]
    assert after and all(a.revision == second for a in after)  # the old revision is gone once deploy says so
    assert sum(served_by(a, first) for a in answers if a.sent < done) >= RATE
