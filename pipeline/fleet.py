"""Watch many ECS deployments at once: one DescribeServices per cluster per round.

DescribeServices takes up to 10 services of one cluster, and ECS throttles it per
account: a fleet polled one call per service per round would spend the account's budget
N times over. Each round here asks each cluster once per 10 services, judges every
answer with `ecs.observe` (the same verdicts as a single deploy), and sleeps for the
shortest interval any still-rolling service's `Pace` asks for. A throttled call is not
an outcome: its services are simply asked again next round, within the same timeout.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import ecs
from .clients import Clients, aws_errors
from .errors import Transient
from .output import Output
from .pace import Pace
from .transient import outlast

BATCH = 10  # ECS's limit of services per DescribeServices call


@dataclass(frozen=True)
class Watch:
    """One deployment to watch: `key` names it in the release."""

    key: str
    cluster: str
    service: str
    deployment_id: str
    target: str


def batches(pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(cluster, up to 10 service names) per DescribeServices call, in first-seen order. Pure."""
    by_cluster: dict[str, list[str]] = {}
    for cluster, service in pairs:
        names = by_cluster.setdefault(cluster, [])
        if service not in names:
            names.append(service)
    return [
        (cluster, names[i : i + BATCH])
        for cluster, names in by_cluster.items()
        for i in range(0, len(names), BATCH)
    ]


def describe_many(
    clients: Clients, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any] | None]:
    """Every (cluster, service) → its DescribeServices answer, None where it is missing.

    Raises botocore's ClientError for throttling (the caller decides what a lost round means)
    and a one-line pipeline error for anything else."""
    client = clients.aws("ecs")
    found: dict[tuple[str, str], dict[str, Any] | None] = {pair: None for pair in pairs}
    for cluster, names in batches(pairs):
        with aws_errors("ecs:DescribeServices", handled=("ClusterNotFoundException", *ecs.THROTTLED)):
            try:
                answer = client.describe_services(cluster=cluster, services=names)
            except client.exceptions.ClusterNotFoundException:
                continue
        for service in answer.get("services", []):
            if service.get("status") != "INACTIVE":
                found[(cluster, service["serviceName"])] = service
    return found


def drain_seconds(clients: Clients, service: dict[str, Any]) -> float:
    """The longest deregistration delay of the service's target groups (ELB's default 300 s);
    0 when it cannot be read — polling then just stays on the fast side."""
    from botocore.exceptions import BotoCoreError, ClientError

    longest = 0.0
    for balancer in service.get("loadBalancers", []):
        if not balancer.get("targetGroupArn"):
            continue
        try:
            attributes = clients.aws("elbv2").describe_target_group_attributes(
                TargetGroupArn=balancer["targetGroupArn"]
            )["Attributes"]
        except (BotoCoreError, ClientError):
            continue
        for attribute in attributes:
            if attribute["Key"] == "deregistration_delay.timeout_seconds":
                longest = max(longest, float(attribute["Value"]))
    return longest


@dataclass
class Progress:
    """Prints each service's deployments when they change and each new event once."""

    out: Output
    seen: dict[str, set[str]] = field(default_factory=dict)
    lines: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def prime(self, key: str, service: dict[str, Any]) -> None:
        self.seen.setdefault(key, set()).update(e["id"] for e in service.get("events", []))

    def show(self, key: str, service: dict[str, Any]) -> None:
        lines = tuple(d.line() for d in ecs.deployments(service))
        if lines != self.lines.get(key):
            self.lines[key] = lines
            for line in lines:
                self.out.detail(f"{key}: {line}")
        seen = self.seen.setdefault(key, set())
        for event in reversed(service.get("events", [])):  # the API lists newest first
            if event["id"] not in seen:
                seen.add(event["id"])
                self.out.detail(f"{key}: event: {event['message']}")


def wait_all(
    clients: Clients,
    watches: list[Watch],
    progress: Progress,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    finished: dict[str, float] | None = None,
) -> dict[str, ecs.Outcome]:
    """Poll in rounds until every watched deployment has an outcome or `timeout` passes;
    `finished` receives the clock time each outcome was seen."""
    from botocore.exceptions import ClientError

    started = clock()
    paces = {w.key: Pace(drain_lookup=lambda service: drain_seconds(clients, service)) for w in watches}
    outcomes: dict[str, ecs.Outcome] = {}
    while True:
        pending = [w for w in watches if w.key not in outcomes]
        pairs = [(w.cluster, w.service) for w in pending]
        try:
            answers = describe_many(clients, pairs)
        except ClientError:  # only the THROTTLED codes get here
            progress.out.detail("DescribeServices throttled; polling again")
            answers = None
        except Transient as fault:  # a network blip is no verdict: ride it out until the deadline
            answers = outlast(
                functools.partial(describe_many, clients, pairs),
                started + timeout,
                progress.out.detail,
                fault,
                clock,
                sleep,
            )
        now, wall = clock(), datetime.now(UTC)
        waits = []
        for watch in pending:
            if answers is None:
                waits.append(paces[watch.key].next(None, watch.deployment_id, now, wall))
                continue
            service = answers[(watch.cluster, watch.service)]
            if service is None:
                outcomes[watch.key] = ecs.Outcome(
                    "failed", f"service {watch.service} is gone from cluster {watch.cluster}"
                )
                continue
            progress.show(watch.key, service)
            outcome = ecs.observe(service, watch.deployment_id, watch.target)
            if outcome.done:
                outcomes[watch.key] = outcome
                if finished is not None:
                    finished[watch.key] = now
            else:
                waits.append(paces[watch.key].next(service, watch.deployment_id, now, wall))
        if len(outcomes) == len(watches):
            return outcomes
        left = timeout - (now - started)
        if left <= 0:
            for watch in watches:
                outcomes.setdefault(
                    watch.key,
                    ecs.Outcome(
                        "failed", f"timed out after {timeout:g}s waiting for deployment {watch.deployment_id}"
                    ),
                )
            return outcomes
        sleep(min(min(waits), left))
