"""pipeline/smoke.py: what counts as a passing answer, the retried check, and the URL found through the ALB."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipeline import smoke
from pipeline.config import SmokeSettings
from pipeline.errors import NotFound, StepFailed
from tests.conftest import DeployTarget, default_network
from tests.helpers import ROLLOUT_DEADLINE, free_port, http_get, wait_until


def test_smoke_task_passes_and_fails_on_a_real_container(
    run_task: Callable[..., Any], hello_url: str
) -> None:
    ok = run_task("smoke", "--env", "prod", "--url", hello_url)
    assert ok.returncode == 0 and "HTTP 200" in ok.stdout and "'Hello World!'" in ok.stdout
    wrong = run_task("smoke", "--env", "prod", "--url", hello_url + "nope", "--timeout", "0.5")
    assert wrong.returncode == 1
    assert wrong.stderr.startswith(
        f"error: smoke test failed: GET {hello_url}nope expected HTTP 200 with 'Hello World!', got HTTP 404"
    )
    closed = f"http://127.0.0.1:{free_port()}/hello/"
    refused = run_task("smoke", "--env", "prod", "--url", closed, "--timeout", "0.5")
    assert refused.returncode == 1 and "got no answer ([Errno 111] Connection refused)" in refused.stderr


def test_smoke_url_is_discovered_through_the_alb(
    make_context: Callable[..., Any], deploy_target: DeployTarget, aws: Callable[[str], Any]
) -> None:
    from pipeline import smoke

    ec2, elbv2, ecs = aws("ec2"), aws("elbv2"), aws("ecs")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=f"us-east-1{z}")["Subnet"][
            "SubnetId"
        ]
        for i, z in ((1, "a"), (2, "b"))
    ]
    alb = elbv2.create_load_balancer(Name=f"{deploy_target.cluster[:20]}-alb", Subnets=subnets)[
        "LoadBalancers"
    ][0]
    group = elbv2.create_target_group(
        Name=f"{deploy_target.cluster[:20]}-tg", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip"
    )["TargetGroups"][0]
    listener = elbv2.create_listener(
        LoadBalancerArn=alb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}],
    )["Listeners"][0]
    ecs.create_service(
        cluster=deploy_target.cluster,
        serviceName="with-alb",
        taskDefinition=deploy_target.initial,
        desiredCount=1,
        loadBalancers=[
            {
                "targetGroupArn": group["TargetGroupArn"],
                "containerName": deploy_target.service,
                "containerPort": 8080,
            }
        ],
        networkConfiguration=default_network(aws),
    )
    ctx = make_context()
    env = ctx.settings.environment("prod")
    url = smoke.discover_url(ctx.settings, type(env)(**{**env.__dict__, "service": "with-alb"}), ctx.clients)
    assert url == f"http://{alb['DNSName']}/hello/"
    # The local load balancer's DNS name is a loopback address: the task answers through it.
    assert alb["DNSName"].startswith("127.0.0.1:")
    assert wait_until(lambda: http_get(url) == (200, "Hello World!\n"), timeout=ROLLOUT_DEADLINE)
    with pytest.raises(NotFound, match="has no load balancer attached; pass --url"):
        smoke.discover_url(ctx.settings, env, ctx.clients)
    # A listener rule forwarding to the group gives the path (another repository's service
    # routed at /audit/ is smoke-tested there, whatever the invoking settings' base path).
    elbv2.create_rule(
        ListenerArn=listener["ListenerArn"],
        Priority=7,
        Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/audit", "/audit/*"]}}],
        Actions=[{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}],
    )
    with_alb = type(env)(**{**env.__dict__, "service": "with-alb"})
    assert smoke.discover_url(ctx.settings, with_alb, ctx.clients) == f"http://{alb['DNSName']}/audit/"
    assert smoke.discover_url(ctx.settings, with_alb, ctx.clients, path="/audit/ping") == (
        f"http://{alb['DNSName']}/audit/ping"
    )


EXPECT = SmokeSettings(status=200, text="Hello World!", timeout=0.5)


@pytest.mark.parametrize(
    ("probe", "passes", "described"),
    [
        (smoke.Probe(200, 0.012, "Hello World!"), True, "HTTP 200 in 12 ms: 'Hello World!'"),
        (smoke.Probe(200, 0.012, "Goodbye"), False, "HTTP 200 in 12 ms: 'Goodbye'"),
        (smoke.Probe(503, 0.5, "Hello World! (draining)"), False, "HTTP 503 in 500 ms"),
        (
            smoke.Probe(0, 1.0, "[Errno 111] Connection refused"),
            False,
            "no answer ([Errno 111] Connection refused)",
        ),
    ],
)
def test_a_probe_passes_on_the_expected_status_and_text(
    probe: smoke.Probe, passes: bool, described: str
) -> None:
    assert probe.passes(EXPECT) is passes
    assert probe.describe().startswith(described)


def test_check_retries_until_the_answer_passes(hello_url: str) -> None:
    said: list[str] = []
    result = smoke.check(hello_url, EXPECT, said.append)
    assert result.status == 200 and "Hello World!" in result.excerpt
    assert said == [f"GET {hello_url}: {result.describe()}"]
    waits: list[float] = []
    with pytest.raises(StepFailed, match=r"expected HTTP 200 with 'Hello World!', got HTTP 404"):
        smoke.check(hello_url + "nope", EXPECT, said.append, sleep=waits.append)
    assert waits  # retried before giving up


@pytest.mark.parametrize(
    ("patterns", "path"),
    [
        (["/audit", "/audit/*"], "/audit/"),  # what `invoke setup` writes for base_path /audit/
        (["/*"], "/"),
        (["/api/v1*"], "/api/v1"),
        (["/ledger/*", "/ledger"], "/ledger/"),
        (["*.png"], None),
        ([], None),
    ],
)
def test_a_listener_rules_path_patterns_give_the_smoke_tests_path(
    patterns: list[str], path: str | None
) -> None:
    assert smoke.rule_path(patterns) == path
