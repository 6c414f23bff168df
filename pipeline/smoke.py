"""The smoke test: find the service's URL through its ALB, then check it answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from . import http
from .clients import Clients, aws_errors
from .config import Environment, Settings, SmokeSettings
from .ecs import describe_service
from .errors import NotFound, StepFailed


@dataclass(frozen=True)
class Probe:
    """One HTTP answer (status 0: no answer at all)."""

    status: int
    seconds: float
    excerpt: str

    def passes(self, expect: SmokeSettings) -> bool:
        # No text configured: the status alone decides ("" is in every body).
        return self.status == expect.status and expect.text in self.excerpt

    def describe(self) -> str:
        if self.status == 0:
            return f"no answer ({self.excerpt})"
        return f"HTTP {self.status} in {self.seconds * 1000:.0f} ms: {self.excerpt[:80]!r}"


def discover_url(
    settings: Settings, environment: Environment, clients: Clients, instead: str = "pass --url URL"
) -> str:
    """The seed's way: service → target group → load balancer → its DNS name + base path.

    `instead` is the calling task's own way around a missing load balancer (its flags
    differ: smoke --url, deploy --smoke-url/--no-smoke, ci --base-url)."""
    service = describe_service(clients, environment.cluster, environment.service)
    groups = [lb["targetGroupArn"] for lb in service.get("loadBalancers", []) if lb.get("targetGroupArn")]
    if not groups:
        raise NotFound(
            f"service {environment.service} has no load balancer attached; {instead} "
            f"or attach a target group (`invoke setup --env {environment.name}`)"
        )
    elbv2 = clients.aws("elbv2")
    with aws_errors("elasticloadbalancing:DescribeTargetGroups"):
        group = elbv2.describe_target_groups(TargetGroupArns=groups[:1])["TargetGroups"][0]
    if not group.get("LoadBalancerArns"):
        raise NotFound(
            f"target group {group['TargetGroupName']} is not attached to a load balancer; {instead}"
        )
    with aws_errors("elasticloadbalancing:DescribeLoadBalancers"):
        balancer = elbv2.describe_load_balancers(LoadBalancerArns=group["LoadBalancerArns"][:1])[
            "LoadBalancers"
        ][0]
    return f"http://{balancer['DNSName']}{settings.base_path}"


def probe(url: str, timeout: float = 5.0) -> Probe:
    answer = http.get(url, timeout)
    return Probe(answer.status, answer.seconds, answer.body)


def check(
    url: str,
    expect: SmokeSettings,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> Probe:
    """Retry until the URL answers as expected or expect.timeout passes."""
    from tenacity import Retrying, retry_if_result, stop_after_delay, wait_exponential

    def attempt() -> Probe:
        result = probe(url)
        say(f"GET {url}: {result.describe()}")
        return result

    retrying = Retrying(
        stop=stop_after_delay(expect.timeout),
        wait=wait_exponential(multiplier=0.25, max=3),
        retry=retry_if_result(lambda p: not p.passes(expect)),
        sleep=sleep,
        retry_error_callback=lambda state: (
            state.outcome.result() if state.outcome else Probe(0, 0, "no attempt")
        ),
    )
    result: Probe = retrying(attempt)
    if not result.passes(expect):
        raise StepFailed(
            f"smoke test failed: GET {url} expected HTTP {expect.status}"
            + (f" with {expect.text!r}" if expect.text else "")
            + ", "
            f"got {result.describe()} (for {expect.timeout:g}s)"
        )
    return result
