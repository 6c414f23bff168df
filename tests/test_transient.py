"""Transient AWS faults: what counts as one (a real 503, a real dropped connection through the
fault proxy), and `outlast`, which retries them with backoff until a deadline and says so."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.config import Config

from pipeline.clients import aws_errors
from pipeline.errors import ConfigError, Transient, Unavailable
from pipeline.transient import calling, outlast
from tests.aws_faults import FaultProxy


class Clock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(times: int, answer: str = "ok", clock: Clock | None = None) -> Callable[[], str]:
    left = [times]

    def call() -> str:
        if left[0] > 0:
            left[0] -= 1
            if clock is not None:
                clock.now += 1.0  # a failed call takes a moment too
            raise Transient("ecs:DescribeServices: the AWS endpoint did not answer (reset)")
        return answer

    return call


def test_outlast_retries_with_backoff_says_so_and_returns_the_answer() -> None:
    clock, lines = Clock(), []
    assert outlast(failing(4, clock=clock), 60, lines.append, clock=clock, sleep=clock.sleep) == "ok"
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]  # exponential, from 0.5 s
    assert lines[0].startswith("AWS unreachable for 1 s, retrying (ecs:DescribeServices: ")
    assert lines[-1] == f"AWS answers again after {clock.now:.0f} s"
    assert len(lines) == 5


def test_outlast_gives_up_at_the_deadline_with_the_last_fault() -> None:
    clock, lines = Clock(), []
    with pytest.raises(Transient, match="did not answer"):
        outlast(failing(1000, clock=clock), 20, lines.append, clock=clock, sleep=clock.sleep)
    assert 20 <= clock.now <= 22  # the pauses end at the deadline; the last call runs past it
    assert all(pause <= 5 for pause in clock.sleeps)


def test_a_fault_that_is_no_transient_one_is_raised_at_once() -> None:
    calls = []

    def broken() -> str:
        calls.append(1)
        raise ConfigError("bad input")

    with pytest.raises(ConfigError):
        outlast(broken, 60, lambda _line: None, sleep=lambda _s: None)
    assert calls == [1]


def test_calling_needs_no_retry_when_aws_answers() -> None:
    lines: list[str] = []
    assert calling(lambda: "ok", 60, lines.append) == "ok"
    assert lines == []


@pytest.fixture
def proxy(stack_environ: dict[str, str]) -> Iterator[FaultProxy]:
    with FaultProxy(stack_environ["AWS_ENDPOINT_URL"]) as faults:
        yield faults


def ecs_through(proxy: FaultProxy, stack_environ: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "ecs",
        endpoint_url=proxy.url,
        region_name=stack_environ["AWS_DEFAULT_REGION"],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=2),
    )


@pytest.mark.parametrize("fault", ["503", "drop"])
def test_a_real_503_or_dropped_connection_is_transient(
    proxy: FaultProxy, stack_environ: dict[str, str], fault: Any
) -> None:
    ecs = ecs_through(proxy, stack_environ)
    ecs.list_clusters()
    proxy.fail(fault, seconds=30)
    with pytest.raises(Transient) as caught, aws_errors("ecs:ListClusters"):
        ecs.list_clusters()
    assert isinstance(caught.value, Unavailable) and caught.value.exit_code == 3
    assert caught.value.message.startswith("ecs:ListClusters: ")


def test_an_api_error_is_no_transient_fault(proxy: FaultProxy, stack_environ: dict[str, str]) -> None:
    ecs = ecs_through(proxy, stack_environ)
    with pytest.raises(Unavailable) as caught, aws_errors("ecs:DescribeServices"):
        ecs.describe_services(cluster="no-such-cluster-anywhere", services=["x"])
    assert not isinstance(caught.value, Transient)


def test_a_describe_services_answer_cut_mid_body_is_a_transient_fault_not_a_gone_service(
    proxy: FaultProxy, stack_environ: dict[str, str], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore reads answers with urllib3's length check off and parses a cut-off JSON body
    as `{"message": ...}`: through the real client stack, a cut answer listed no services,
    and a deploy read that as its service deleted and rolled back."""
    from pipeline import ecs
    from pipeline.clients import Clients

    for name, value in {**stack_environ, "AWS_ENDPOINT_URL": proxy.url}.items():
        monkeypatch.setenv(name, value)
    clients = Clients(region=stack_environ["AWS_DEFAULT_REGION"])
    cluster = f"{prefix}-cut"
    clients.aws("ecs").create_cluster(clusterName=cluster)
    try:
        pair = (cluster, f"{prefix}-service")
        assert ecs.describe_many(clients, [pair]) == {pair: None}  # whole: ECS says MISSING
        proxy.fail("cut", seconds=30)
        with pytest.raises(Transient, match=r"^ecs:DescribeServices: the AWS endpoint did not answer"):
            ecs.describe_many(clients, [pair])
        assert proxy.refused >= 1  # the fault really cut an answer
    finally:
        proxy.fail("cut", seconds=0)
        clients.aws("ecs").delete_cluster(cluster=cluster)


@pytest.mark.parametrize(
    ("method", "status", "body", "declared", "refused"),
    [
        ("POST", 200, b'{"servi', "20", True),  # cut mid-body
        ("POST", 200, b"", "20", True),  # only the head arrived
        ("POST", 400, b'{"__ty', "30", True),  # an error answer cut too
        ("POST", 200, b'{"services": []}', "16", False),  # whole
        ("POST", 200, b"{}", None, False),  # no length declared: urllib3 framed it
        ("HEAD", 200, b"", "1024", False),  # HEAD's length is the body's it never sends
        ("POST", 304, b"", "1024", False),
        ("POST", 204, b"", "7", False),
    ],
)
def test_an_answer_is_refused_only_when_shorter_than_the_length_it_declares(
    method: str, status: int, body: bytes, declared: str | None, refused: bool
) -> None:
    from types import SimpleNamespace

    from botocore.awsrequest import HeadersDict
    from botocore.exceptions import IncompleteReadError

    from pipeline.clients import whole_answer

    headers = HeadersDict({"Content-Length": declared} if declared else {})
    answer = {"headers": headers, "status_code": status, "body": body}
    model = SimpleNamespace(http={"method": method, "requestUri": "/"})
    if refused:
        with pytest.raises(IncompleteReadError):
            whole_answer(answer, operation_model=model)
    else:
        whole_answer(answer, operation_model=model)
