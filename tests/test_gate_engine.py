"""The smoke gate in the engine, at the seam: a scripted BLUE_GREEN service deployment that
waits at POST_TEST_TRAFFIC_SHIFT and goes where the hook's answer sends it, and a real HTTP
server on loopback as the test listener. The real service deployments on real containers
are in tests/test_gate.py; this proves the engine's half: one smoke test at the gate, one
answer, and a failure that says the gate stopped it; and, while a canary holds part of
production, a sample of production every round until the share moves."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Environment, SmokeSettings
from pipeline.rollout import engine
from pipeline.rollout.model import State, Unit, Way
from tests.helpers import answering

ARN = "arn:aws:ecs:us-east-1:123456789012:service-deployment/c/svc/gate1"
OLD, NEW = "arn:aws:ecs:us-east-1:1:task-definition/fam:7", "arn:aws:ecs:us-east-1:1:task-definition/fam:8"
ENV = Environment("prod", "c", "svc", "fam", "app", Path("t.json"), Path("v.json"))
SMOKE = SmokeSettings(200, "Hello World!", timeout=3.0)


@dataclass
class GateECS:
    """STAND-IN at the seam: ECS running one BLUE_GREEN service deployment that pauses at the
    gate (a PAUSE hook at POST_TEST_TRAFFIC_SHIFT) until ContinueServiceDeployment."""

    actions: list[tuple[str, str]] = field(default_factory=list)
    deployment: dict[str, Any] = field(default_factory=dict)

    def update_service(self, **kwargs: Any) -> dict[str, Any]:
        self.deployment = {
            "serviceDeploymentArn": ARN,
            "status": "IN_PROGRESS",
            "lifecycleStage": "POST_TEST_TRAFFIC_SHIFT",
            "lifecycleHookDetails": [
                {
                    "hookId": "h1",
                    "targetType": "PAUSE",
                    "status": "AWAITING_ACTION",
                    "timeoutAction": "ROLLBACK",
                }
            ],
            "targetServiceRevision": {
                "requestedProductionTrafficWeight": 0.0,
                "requestedTestTrafficWeight": 100.0,
            },
        }
        return {"service": self._service()}

    def _service(self) -> dict[str, Any]:
        return {
            "serviceName": "svc",
            "status": "ACTIVE",
            "deployments": [],
            "events": [],
            "currentServiceDeployment": ARN,
            "deploymentConfiguration": {"strategy": "BLUE_GREEN"},
        }

    def describe_services(self, cluster: str, services: list[str]) -> dict[str, Any]:
        return {"services": [self._service()]}

    def describe_service_deployments(self, serviceDeploymentArns: list[str]) -> dict[str, Any]:  # noqa: N803
        return {"serviceDeployments": [dict(self.deployment)]}

    def continue_service_deployment(
        self, serviceDeploymentArn: str, hookId: str, action: str
    ) -> dict[str, Any]:  # noqa: N803
        self.actions.append((hookId, action))
        hooks = [{**self.deployment["lifecycleHookDetails"][0], "status": "SUCCEEDED"}]
        if action == "CONTINUE":
            self.deployment.update(status="SUCCESSFUL", lifecycleStage="CLEAN_UP", lifecycleHookDetails=hooks)
        else:
            self.deployment.update(
                status="ROLLBACK_SUCCESSFUL",
                lifecycleHookDetails=hooks,
                rollback={
                    "reason": "Service deployment rolled back because of the lifecycle hook's ROLLBACK action."
                },
            )
        return {"serviceDeploymentArn": serviceDeploymentArn}


@pytest.fixture
def test_listener() -> Iterator[Callable[[bytes], str]]:
    """A loopback server answering what the test sets: green's answers on the test listener."""
    body = [b"Hello World!\n"]
    with answering(lambda: (200, body[0])) as url:

        def answering_with(text: bytes) -> str:
            body[0] = text
            return url

        yield answering_with


def run(make_context: Callable[..., Any], fake: GateECS, test_url: str | None) -> dict[str, Any]:
    ctx = make_context(aws_factory=lambda name: fake)
    unit = Unit("svc", ENV, NEW, {"events": []}, OLD, "BLUE_GREEN", None, SMOKE, test_url)
    options = engine.RolloutOptions("deploy", timeout=30.0, sleep=lambda s: None)
    progress = engine.Progress(ctx.out)
    results = engine.advance(ctx, [unit], options, progress)
    if not results["svc"].succeeded:
        engine.recover(ctx, results, options, progress)
    return results


def test_a_revision_that_passes_the_gate_is_continued_once_and_succeeds(
    make_context: Callable[..., Any], test_listener: Callable[[bytes], str]
) -> None:
    fake = GateECS()
    result = run(make_context, fake, test_listener(b"Hello World!\n"))["svc"]
    assert fake.actions == [("h1", "CONTINUE")]
    assert result.succeeded and "SUCCESSFUL" in result.outcome.reason


def test_a_revision_that_answers_wrongly_at_the_gate_is_sent_back_and_never_promoted(
    make_context: Callable[..., Any], test_listener: Callable[[bytes], str]
) -> None:
    fake = GateECS()
    result = run(make_context, fake, test_listener(b"Goodbye\n"))["svc"]
    assert fake.actions == [("h1", "ROLLBACK")]
    assert result.outcome.state == State.FAILED and result.outcome.gate_failed
    assert result.outcome.reason.startswith("the smoke test at the gate failed: ")
    assert result.outcome.reason.endswith("production traffic never reached it")
    assert result.way == Way.BY_ECS and result.back_to == OLD  # ECS's own rollback, already ended


def test_without_a_gate_the_hook_is_continued_without_a_smoke_test(make_context: Callable[..., Any]) -> None:
    fake = GateECS()
    result = run(make_context, fake, None)["svc"]
    assert fake.actions == [("h1", "CONTINUE")] and result.succeeded


@dataclass
class CanaryECS:
    """STAND-IN at the seam: a CANARY service deployment holding 50 % of production for
    `rounds` reads of it, then SUCCESSFUL; StopServiceDeployment(ROLLBACK) ends it as ECS's
    rollback does (ROLLBACK_SUCCESSFUL)."""

    rounds: int
    stops: list[str] = field(default_factory=list)
    reads: int = 0
    status: str = "IN_PROGRESS"

    def update_service(self, **kwargs: Any) -> dict[str, Any]:
        return {"service": self.describe_services("c", ["svc"])["services"][0]}

    def describe_services(self, cluster: str, services: list[str]) -> dict[str, Any]:
        return {
            "services": [
                {
                    "serviceName": "svc",
                    "status": "ACTIVE",
                    "deployments": [],
                    "events": [],
                    "currentServiceDeployment": ARN,
                    "deploymentConfiguration": {"strategy": "CANARY"},
                }
            ]
        }

    def describe_service_deployments(self, serviceDeploymentArns: list[str]) -> dict[str, Any]:  # noqa: N803
        self.reads += 1
        if self.status == "IN_PROGRESS" and self.reads > self.rounds:
            self.status = "SUCCESSFUL"
        split = self.status == "IN_PROGRESS"
        deployment: dict[str, Any] = {
            "serviceDeploymentArn": ARN,
            "status": self.status,
            "lifecycleStage": "PRODUCTION_TRAFFIC_SHIFT" if split else "CLEAN_UP",
            "lifecycleHookDetails": [],
            "targetServiceRevision": {
                "requestedProductionTrafficWeight": 50.0 if split else 100.0,
                "requestedTestTrafficWeight": 100.0,
            },
        }
        if self.status == "ROLLBACK_SUCCESSFUL":
            deployment["rollback"] = {"reason": "StopServiceDeployment(ROLLBACK)"}
        return {"serviceDeployments": [deployment]}

    def stop_service_deployment(self, serviceDeploymentArn: str, stopType: str) -> dict[str, Any]:  # noqa: N803
        self.stops.append(stopType)
        self.status = "ROLLBACK_SUCCESSFUL"
        return {"serviceDeploymentArn": serviceDeploymentArn}


@pytest.fixture
def production() -> Iterator[Callable[[int], tuple[str, list[int]]]]:
    """A loopback production URL whose first `good` answers are right and the rest wrong (a
    canary that turns bad under production's traffic); and the count of GETs it answered."""
    with contextlib.ExitStack() as servers:

        def serving(good: int) -> tuple[str, list[int]]:
            count = [0]

            def answer() -> tuple[int, bytes]:
                count[0] += 1
                return 200, b"Hello World!\n" if count[0] <= good else b"Goodbye\n"

            return servers.enter_context(answering(answer)), count

        yield serving


def run_canary(make_context: Callable[..., Any], fake: CanaryECS, url: str) -> tuple[Any, str]:
    ctx = make_context(aws_factory=lambda name: fake)
    unit = Unit("svc", ENV, NEW, {"events": []}, OLD, "CANARY", url, SMOKE, None)
    options = engine.RolloutOptions("deploy", timeout=30.0, sleep=lambda s: None)
    results = engine.advance(ctx, [unit], options, engine.Progress(ctx.out))
    return results["svc"], ctx.out.stream.getvalue()


def test_a_canary_that_passes_its_first_sample_and_then_answers_wrongly_is_stopped_during_the_bake(
    make_context: Callable[..., Any], production: Callable[[int], tuple[str, list[int]]]
) -> None:
    url, answered = production(15)  # the first sample's ten GETs pass; the next round's fail
    fake = CanaryECS(rounds=5)
    result, said = run_canary(make_context, fake, url)
    assert "step: 50% passed its first sample" in said
    assert fake.stops == ["ROLLBACK"] and answered[0] == 16  # stopped at the first wrong answer
    assert result.outcome.state == State.FAILED and result.outcome.gate_failed
    assert result.outcome.reason.startswith(
        f"the smoke test of production at 50% on the new revision failed: GET {url}"
    )
    assert "Goodbye" in result.outcome.reason


def test_a_good_canary_is_sampled_every_round_of_its_bake_and_says_so_once(
    make_context: Callable[..., Any], production: Callable[[int], tuple[str, list[int]]]
) -> None:
    url, answered = production(1_000)
    fake = CanaryECS(rounds=4)
    result, said = run_canary(make_context, fake, url)
    assert result.succeeded and fake.stops == []
    assert answered[0] == 4 * 10 + 1  # ten GETs in each of the four rounds at 50 %, then the smoke test
    assert said.count("sampling") == 1 and said.count("passed its first sample") == 1
