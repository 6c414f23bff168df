"""Zero downtime, measured: a bounded load generator (pipeline/loadgen.py) sends 20 requests a
second to the production URL, through the local load balancer, while a deploy runs. Every
answer is checked and attributed to the revision that served it. Real engine, registry,
emulator (the scheduler and the ALB's data plane are its stand-ins), hello_world's image."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pipeline.loadgen import Answer, Load
from tests.conftest import push_broken, push_image
from tests.helpers import HELLO, answering
from tests.standins import closed_port_url
from tests.test_failures import never_healthy

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
    with answering(lambda: (200, b"Goodbye\n") if next(count) % 2 else (503, b"busy\n")) as url:
        yield url


def test_the_load_generator_counts_wrong_bodies_error_statuses_and_refused_connections_as_failed(
    wrong_server: str,
) -> None:
    with Load(wrong_server, HELLO, rate=50) as load:
        load.wait_for("4 answers", lambda a: len(a) >= 4, timeout=30)
    with Load(closed_port_url(), HELLO, rate=50) as refused:
        refused.wait_for("2 answers", lambda a: len(a) >= 2, timeout=30)
    errors = {a.error for a in load.failed()}
    assert len(load.failed()) == len(load.answers())
    assert "HTTP 200 b'Goodbye\\n'" in errors and "HTTP 503 b'busy\\n'" in errors
    assert refused.answers() and all(
        a.status is None and "Refused" in str(a.error) for a in refused.answers()
    )


def test_the_load_generator_refuses_any_address_but_loopback() -> None:
    with pytest.raises(ValueError, match="loopback addresses only"):
        Load("http://10.0.0.1/hello/", HELLO)


# --- deploys under load ----------------------------------------------------------------


@dataclass(frozen=True)
class Production:
    url: str  # the production URL: the local load balancer's
    first: str  # the sha it runs


@pytest.fixture
def production(
    run_task: Callable[..., Any], environ: dict[str, str], prefix: str, hello_image: str
) -> Production:
    """The prod service as `setup` makes it, running hello_world under a first sha, smoke-tested."""
    first = new_sha()
    proc = run_task("setup")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    push_image(environ, hello_image, prefix, first)
    for step in (("setup", "--env", "prod"), ("deploy", "--env", "prod", "--sha", first)):
        proc = run_task(*step)
        assert proc.returncode == 0, (step, proc.stdout[-2000:], proc.stderr)
    return Production(alb_url(proc.stdout), first)


def until_after(load: Load, moment: float) -> None:
    """Until the load has run a while past `moment` (RATE answers sent after it)."""
    load.wait_for("answers sent after the deploy", lambda a: sum(x.sent > moment + 2 for x in a) >= RATE, 60)


@pytest.mark.heavy
def test_a_rolling_deploy_under_load_fails_no_request_and_after_it_only_the_new_revision_answers(
    run_task: Callable[..., Any],
    environ: dict[str, str],
    prefix: str,
    hello_image: str,
    production: Production,
) -> None:
    first, second = production.first, new_sha()
    push_image(environ, hello_image, prefix, second)
    with Load(production.url, HELLO, rate=RATE) as load:
        load.wait_for(
            f"{RATE:g} answers from {first[:7]}", lambda a: sum(served_by(x, first) for x in a) >= RATE, 60
        )
        proc = run_task("deploy", "--env", "prod", "--sha", second)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        done = load.now()
        until_after(load, done)

    answers = load.answers()
    assert load.failed() == [], f"{len(load.failed())} of {len(answers)} failed, e.g. {load.failed()[:3]}"
    assert load.revisions() == [first, second]
    after = [a for a in answers if a.sent > done]
    assert after and all(a.revision == second for a in after)  # the old revision is gone once deploy says so
    assert sum(served_by(a, first) for a in answers if a.sent < done) >= RATE


@pytest.mark.heavy
def test_a_revision_whose_tasks_never_get_healthy_is_rolled_back_under_load_without_a_failed_request(
    run_task: Callable[..., Any],
    environ: dict[str, str],
    prefix: str,
    hello_image: str,
    production: Production,
) -> None:
    broken = new_sha()
    push_broken(environ, never_healthy(hello_image), prefix, broken)
    with Load(production.url, HELLO, rate=RATE) as load:
        load.wait_for("answers", lambda a: len(a) >= RATE, 60)
        proc = run_task("deploy", "--env", "prod", "--sha", broken, "--timeout", "120")
        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
        until_after(load, load.now())
    (line,) = proc.stderr.strip().splitlines()
    assert line.endswith("which runs now") and "rolled back" in line
    answers = load.answers()
    # The old task serves until a new one is healthy, and none ever is: users never notice.
    assert load.failed() == [], f"{len(load.failed())} of {len(answers)} failed, e.g. {load.failed()[:3]}"
    assert load.revisions() == [production.first] and len(answers) >= 2 * RATE


def test_a_task_that_dies_leaves_its_target_group_at_once_instead_of_failing_health_checks(
    production: Production, aws: Callable[[str], Any], prefix: str
) -> None:
    """ECS deregisters every task that stops, one whose container dies included. The local
    ECS once left such a target registered: the load balancer kept sending it requests
    until its health checks marked it unhealthy, and it stayed listed as unhealthy."""
    from pipeline.stack.emulator.engine import CLUSTER_LABEL
    from tests.helpers import engine, wait_until

    cluster, name = f"{prefix}-cluster", f"{prefix}-service"
    ecs, elbv2 = aws("ecs"), aws("elbv2")
    (service,) = ecs.describe_services(cluster=cluster, services=[name])["services"]
    group = service["loadBalancers"][0]["targetGroupArn"]

    def states() -> dict[int, str]:
        found = elbv2.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
        return {d["Target"]["Port"]: d["TargetHealth"]["State"] for d in found}

    ((port, state),) = states().items()
    assert state == "healthy"
    (container,) = engine().containers.list(filters={"label": f"{CLUSTER_LABEL}={cluster}"})
    container.kill()  # the task's essential container dies: no one asked it to stop
    wait_until(lambda: states().get(port, "gone") in ("draining", "gone"), timeout=60)
    events = [
        e["message"] for e in ecs.describe_services(cluster=cluster, services=[name])["services"][0]["events"]
    ]
    assert any(f"deregistered 1 targets in (target-group {group})" in m for m in events)
