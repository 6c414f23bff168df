"""The fault proxy itself: it relays the emulator's real answers, and inside a window it
drops, refuses with 503 or delays, then relays again. The tests that use it to prove the
tool rides out faults rely on exactly this."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from tests.aws_faults import FaultProxy
from tests.helpers import wait_until


@pytest.fixture
def proxy(stack_environ: dict[str, str]) -> Iterator[FaultProxy]:
    with FaultProxy(stack_environ["AWS_ENDPOINT_URL"]) as faults:
        yield faults


def caller_identity(proxy: FaultProxy, environ: dict[str, str], read_timeout: float) -> Callable[[], Any]:
    """GetCallerIdentity through the proxy, with no retries: every fault shows."""
    import boto3

    client = boto3.client(
        "sts",
        endpoint_url=proxy.url,
        region_name=environ["AWS_DEFAULT_REGION"],
        config=Config(
            retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=read_timeout
        ),
    )
    return lambda: client.get_caller_identity()["Account"]


@pytest.fixture
def sts(proxy: FaultProxy, stack_environ: dict[str, str]) -> Callable[[], Any]:
    """A 2-s read timeout: a window that answers nothing shows in 2 s."""
    return caller_identity(proxy, stack_environ, read_timeout=2)


def test_outside_a_window_the_emulators_answers_pass_through(
    sts: Callable[[], Any], proxy: FaultProxy
) -> None:
    assert sts() == "123456789012"
    assert proxy.refused == 0


def test_a_503_window_refuses_every_call_then_passes_them_again(
    sts: Callable[[], Any], proxy: FaultProxy
) -> None:
    proxy.fail("503", seconds=1.5)
    with pytest.raises(ClientError) as refused:
        sts()
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    wait_until(lambda: proxy.faulty() is None, 5)
    assert sts() == "123456789012"
    assert proxy.refused >= 1


def test_a_drop_window_cuts_open_and_new_connections_then_passes_again(
    sts: Callable[[], Any], proxy: FaultProxy
) -> None:
    assert sts() == "123456789012"  # a keep-alive connection is open now
    proxy.fail("drop", seconds=1.5)
    with pytest.raises((ConnectionClosedError, EndpointConnectionError, ClientError)):
        sts()
    wait_until(lambda: proxy.faulty() is None, 5)
    assert sts() == "123456789012"
    assert proxy.refused >= 1


def test_a_delay_window_holds_each_request_for_the_delay(
    proxy: FaultProxy, stack_environ: dict[str, str]
) -> None:
    # The delay plus the emulator's own answer: a loaded run took the emulator over a second
    # (a 2-s read timeout failed it once), so the read timeout is not what this measures.
    sts = caller_identity(proxy, stack_environ, read_timeout=30)
    proxy.fail("delay", seconds=5, delay=1.0)
    began = time.monotonic()
    assert sts() == "123456789012"
    assert time.monotonic() - began >= 1.0


def test_a_delay_window_holds_a_request_sent_in_two_pieces_once(
    proxy: FaultProxy, stack_environ: dict[str, str]
) -> None:
    body = b"Action=GetCallerIdentity&Version=2011-06-15"
    head = (
        f"POST / HTTP/1.1\r\nHost: {proxy.url.removeprefix('http://')}\r\n"
        "Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
        # the service, for the emulator's routing, from the signature's scope (not checked)
        "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sts/aws4_request, "
        "SignedHeaders=host, Signature=0\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    proxy.fail("delay", seconds=30, delay=1.0)
    with socket.create_connection(("127.0.0.1", urlsplit(proxy.url).port or 80), timeout=30) as conn:
        conn.sendall(head)
        wait_until(lambda: proxy.slowed == 1, 10)  # the proxy holds the head: the body comes apart
        conn.sendall(body)
        answer = conn.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 200") and b"123456789012" in answer, answer[:300]
    assert proxy.slowed == 1  # held once for the request, not again for its body


def test_a_hang_window_answers_nothing_until_it_ends(sts: Callable[[], Any], proxy: FaultProxy) -> None:
    from botocore.exceptions import ReadTimeoutError

    proxy.fail("hang", seconds=30)
    began = time.monotonic()
    with pytest.raises((ReadTimeoutError, ConnectionClosedError)):
        sts()  # the client's own 2-s read timeout ends the wait, not the proxy
    assert time.monotonic() - began >= 2.0
    assert proxy.refused >= 1
