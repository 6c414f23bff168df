"""The smoke test: find the service's URL through its ALB, then check it answers."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import http
from .clients import Clients, aws_errors
from .config import Environment, Settings, SmokeSettings
from .ecs import describe_service
from .errors import NotFound, StepFailed

LOCAL_LISTENER_ADDRESS = "ecs-pipeline:emulator-address"


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
    settings: Settings,
    environment: Environment,
    clients: Clients,
    instead: str = "pass --url URL",
    path: str | None = None,
) -> str:
    """The seed's way: service → target group → load balancer → its DNS name, plus the path
    of the listener rule that forwards to the group (its path pattern: `/audit/*` gives
    /audit/), else the base path. `path` (a release's smoke_path) replaces that path.

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
    if path is None:
        path = _rule_path(elbv2, balancer["LoadBalancerArn"], group["TargetGroupArn"]) or settings.base_path
    return f"http://{balancer['DNSName']}{path}"


def test_listener_url(clients: Clients, service: dict[str, Any], url: str) -> str | None:
    """Where a native (blue/green, linear, canary) deployment's new revision answers before
    production traffic reaches it: `url`'s path on the test listener of the load balancer
    whose test listener rule the service names (loadBalancers[].advancedConfiguration);
    None when the service names none."""
    from urllib.parse import urlsplit

    rule = next(
        (
            lb["advancedConfiguration"]["testListenerRule"]
            for lb in service.get("loadBalancers", [])
            if (lb.get("advancedConfiguration") or {}).get("testListenerRule")
        ),
        None,
    )
    if rule is None:
        return None
    # A rule's ARN is its listener's plus one id: …:listener-rule/app/NAME/LB/LISTENER/RULE.
    listener_arn = str(rule).replace(":listener-rule/", ":listener/", 1).rsplit("/", 1)[0]
    elbv2 = clients.aws("elbv2")
    with aws_errors("elasticloadbalancing:DescribeListeners"):
        listener = elbv2.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]
    with aws_errors("elasticloadbalancing:DescribeLoadBalancers"):
        balancer = elbv2.describe_load_balancers(LoadBalancerArns=[listener["LoadBalancerArn"]])[
            "LoadBalancers"
        ][0]
    path = urlsplit(url).path or "/"
    scheme = "https" if listener.get("Protocol") == "HTTPS" else "http"
    name = str(balancer["DNSName"])
    if ":" in name:  # no DNS name has a port: the local stack's stand-in, which serves each
        # listener on a loopback port of its own and names it in a tag (emulator/loadbalancer.py)
        with aws_errors("elasticloadbalancing:DescribeTags"):
            described = elbv2.describe_tags(ResourceArns=[listener_arn])["TagDescriptions"]
        tags = {t["Key"]: t["Value"] for d in described for t in d.get("Tags", [])}
        if LOCAL_LISTENER_ADDRESS in tags:
            return f"{scheme}://{tags[LOCAL_LISTENER_ADDRESS]}{path}"
    return f"{scheme}://{name}:{listener['Port']}{path}"


def _rule_path(elbv2: Any, balancer_arn: str, group_arn: str) -> str | None:
    """The path of the first listener rule forwarding to the group, by listener then priority."""
    with aws_errors("elasticloadbalancing:DescribeListeners"):
        listeners = elbv2.describe_listeners(LoadBalancerArn=balancer_arn)["Listeners"]
    for listener in sorted(listeners, key=lambda item: (item.get("Protocol") != "HTTP", item.get("Port", 0))):
        with aws_errors("elasticloadbalancing:DescribeRules"):
            rules = elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
        for rule in sorted(rules, key=lambda r: (r.get("IsDefault", False), _priority(r))):
            if group_arn in _forwards_to(rule):
                found = rule_path(_path_patterns(rule))
                if found:
                    return found
    return None


def _priority(rule: dict[str, Any]) -> int:
    value = str(rule.get("Priority", ""))
    return int(value) if value.isdigit() else 1 << 30


def _forwards_to(rule: dict[str, Any]) -> set[str]:
    groups = set()
    for action in rule.get("Actions", []):
        if action.get("TargetGroupArn"):
            groups.add(action["TargetGroupArn"])
        for weighted in (action.get("ForwardConfig") or {}).get("TargetGroups", []):
            groups.add(weighted.get("TargetGroupArn", ""))
    return groups


def _path_patterns(rule: dict[str, Any]) -> list[str]:
    patterns: list[str] = []
    for condition in rule.get("Conditions", []):
        if condition.get("Field") == "path-pattern":
            patterns += (
                (condition.get("PathPatternConfig") or {}).get("Values") or condition.get("Values") or []
            )
    return patterns


def rule_path(patterns: list[str]) -> str | None:
    """The path a listener rule's path patterns route: the fixed part of the first pattern
    that covers a directory (`/audit/*` → /audit/), else of the first pattern. Pure."""
    ordered = sorted(patterns, key=lambda p: not p.endswith("/*"))
    for pattern in ordered:
        fixed = re.split(r"[*?]", pattern, maxsplit=1)[0]
        if fixed.startswith("/"):
            return fixed
    return None


def probe(url: str, timeout: float = 5.0) -> Probe:
    answer = http.get(url, timeout)
    return Probe(answer.status, answer.seconds, answer.body)


def sample(url: str, expect: SmokeSettings, count: int = 10) -> Probe | None:
    """`count` GETs in a row; the first that fails, None when all pass. For a URL whose traffic
    is split between revisions (a canary's bake), where one passing answer proves nothing
    about the other revision."""
    for _ in range(count):
        result = probe(url)
        if not result.passes(expect):
            return result
    return None


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
