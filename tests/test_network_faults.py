"""The worst day's network, for real: the fault proxy (tests/aws_faults.py) cuts the tool off
from the AWS endpoint while the local ECS goes on rolling out real containers behind it.
A blip is waited out (it is no verdict about the rollout, so nothing is rolled back); an
outage longer than the deadline ends in the one line that says a person must look; a blip
during the way back is waited out too. The aws CLI, straight to the emulator, checks what runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.config import Config

from pipeline import deploy
from pipeline.errors import DeployFailed, RollbackFailed
from tests.aws_faults import Fault, FaultProxy
from tests.conftest import DeployTarget, push_broken, set_circuit_breaker
from tests.helpers import ROLLOUT_DEADLINE, said, wait_until
from tests.processes import WAITING, Service, service

__all__ = ["service"]  # the fixture


@pytest.fixture
def proxy(stack_environ: dict[str, str]) -> Iterator[FaultProxy]:
    with FaultProxy(stack_environ["AWS_ENDPOINT_URL"]) as faults:
        yield faults


def running(aws_cli: Callable[..., Any], cluster: str, name: str) -> tuple[str, list[str]]:
    found = aws_cli("ecs", "describe-services", "--cluster", cluster, "--services", name)["services"][0]
    return found["taskDefinition"].rsplit("/", 1)[-1], [d.get("rolloutState") for d in found["deployments"]]


@pytest.mark.heavy
def test_a_6s_aws_outage_mid_deploy_is_ridden_out_and_the_new_revision_runs(
    service: Service, proxy: FaultProxy, aws_cli: Callable[..., Any]
) -> None:
    """`invoke deploy` as CI runs it (botocore's own retries and all), cut off for 6 s."""
    from tests.processes import deploy as deploying

    run = deploying(service, service.shas[0], env={**service.environ, "AWS_ENDPOINT_URL": proxy.url})
    wait_until(lambda: WAITING in run.text() or run.proc.poll() is not None, 60)
    proxy.fail("drop", seconds=6)
    assert run.finish(timeout=300) == 0, run.text()
    text = run.text()
    assert f"deploy of {service.service}:2 to prod succeeded" in text
    assert "roll back" not in text and "rolled back" not in text
    assert proxy.refused >= 1  # the deploy's own calls were cut, not just nobody's
    wait_until(
        lambda: running(aws_cli, service.cluster, service.service) == (f"{service.service}:2", ["COMPLETED"]),
        60,
    )


def through(proxy: FaultProxy, environ: dict[str, str]) -> Callable[[str], Any]:
    """Clients through the proxy with botocore's own retries off, so every fault reaches the
    tool's retry layer at once (with them on, botocore hides a blip for up to ~30 s)."""
    import boto3

    config = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=5)
    return lambda name: boto3.client(
        name, endpoint_url=proxy.url, region_name=environ["AWS_DEFAULT_REGION"], config=config
    )


def outage_at_first_sleep(
    proxy: FaultProxy,
    seconds: float,
    when: Callable[[], bool] = lambda: True,
    fault: Fault = "drop",
    delay: float = 0.0,
) -> Any:
    """A DeployOptions.sleep that cuts AWS off (or slows it down, `fault`) the first time the
    deploy pauses once `when` holds (mid-wait: UpdateService was answered, the rollout runs),
    then really sleeps."""
    import time

    cut: list[bool] = []

    def sleep(pause: float) -> None:
        if not cut and when():
            cut.append(True)
            proxy.fail(fault, seconds=seconds, delay=delay)
        time.sleep(pause)

    return sleep


def test_the_wait_says_aws_is_unreachable_rides_it_out_and_succeeds(
    deploy_target: DeployTarget,
    proxy: FaultProxy,
    make_context: Callable[..., Any],
    environ: dict[str, str],
    aws_cli: Callable[..., Any],
) -> None:
    ctx = make_context(aws_factory=through(proxy, environ))
    options = deploy.DeployOptions(
        "prod",
        deploy_target.sha,
        timeout=ROLLOUT_DEADLINE,
        smoke=False,
        sleep=outage_at_first_sleep(proxy, 6),
    )
    released = deploy.deploy(ctx, options)
    assert released is not None and released.task_definition.endswith(f"{deploy_target.family}:2")
    log = said(ctx)
    assert "    AWS unreachable, retrying until the deadline (ecs:DescribeServices: " in log
    assert "    AWS unreachable for " in log and "    AWS answers again after " in log
    assert "roll back" not in log
    assert running(aws_cli, deploy_target.cluster, deploy_target.service) == (
        f"{deploy_target.family}:2",
        ["COMPLETED"],
    )


def test_a_slow_endpoint_whose_calls_time_out_mid_wait_is_ridden_out_and_the_deploy_succeeds(
    deploy_target: DeployTarget,
    proxy: FaultProxy,
    make_context: Callable[..., Any],
    environ: dict[str, str],
    aws_cli: Callable[..., Any],
) -> None:
    # Each call held 7 s, past the clients' 5-s read timeout, for 12 s.
    ctx = make_context(aws_factory=through(proxy, environ))
    options = deploy.DeployOptions(
        "prod",
        deploy_target.sha,
        timeout=ROLLOUT_DEADLINE,
        smoke=False,
        sleep=outage_at_first_sleep(proxy, 12, fault="delay", delay=7),
    )
    released = deploy.deploy(ctx, options)
    assert released is not None and released.task_definition.endswith(f"{deploy_target.family}:2")
    log = said(ctx)
    assert proxy.slowed >= 1
    assert "    AWS unreachable, retrying until the deadline (ecs:DescribeServices: " in log
    assert "    AWS answers again after " in log
    assert "roll back" not in log
    assert running(aws_cli, deploy_target.cluster, deploy_target.service) == (
        f"{deploy_target.family}:2",
        ["COMPLETED"],
    )


def test_an_outage_longer_than_the_deadline_is_exit_4_and_says_what_it_could_not_do(
    deploy_target: DeployTarget,
    proxy: FaultProxy,
    make_context: Callable[..., Any],
    environ: dict[str, str],
) -> None:
    ctx = make_context(aws_factory=through(proxy, environ))
    options = deploy.DeployOptions(
        "prod", deploy_target.sha, timeout=6, smoke=False, sleep=outage_at_first_sleep(proxy, 600)
    )
    with pytest.raises(RollbackFailed) as info:
        deploy.deploy(ctx, options)
    family, message = deploy_target.family, info.value.message
    assert message.startswith(f"deploy of {family}:2 to prod failed: ecs:DescribeServices: ")
    assert f"; the rollback to {family}:1 failed too: ecs:UpdateService: " in message
    assert "; the service now runs unknown (could not describe the service: ecs:DescribeServices: " in message
    assert info.value.exit_code == 4  # nobody can tell what runs: a person must look
    assert "AWS unreachable for " in said(ctx)


def test_a_blip_during_the_rollback_is_ridden_out_and_the_rollback_completes(
    deploy_target: DeployTarget,
    proxy: FaultProxy,
    make_context: Callable[..., Any],
    environ: dict[str, str],
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
    repository: str,
    hello_image: str,
) -> None:
    broken = "b" * 40
    push_broken(
        environ, f'FROM {hello_image}\nCMD ["python3", "-c", "raise SystemExit(3)"]\n', repository, broken
    )
    set_circuit_breaker(aws, deploy_target.cluster, deploy_target.service, False)  # our rollback, not ECS's
    ctx = make_context(aws_factory=through(proxy, environ))
    rolling_back = lambda: "==> roll back to " in said(ctx)  # noqa: E731
    options = deploy.DeployOptions(
        "prod", broken, timeout=30, smoke=False, sleep=outage_at_first_sleep(proxy, 6, rolling_back)
    )
    with pytest.raises(DeployFailed) as info:
        deploy.deploy(ctx, options)
    family = deploy_target.family
    assert info.value.exit_code == 1
    assert info.value.message.startswith(f"deploy of {family}:2 to prod failed: timed out after 30s")
    assert info.value.message.endswith(f"; rolled back to {family}:1, which runs now")
    log = said(ctx)
    assert log.index("==> roll back to ") < log.index("AWS unreachable")
    wait_until(
        lambda: (
            running(aws_cli, deploy_target.cluster, deploy_target.service) == (f"{family}:1", ["COMPLETED"])
        ),
        120,
    )
