"""pipeline/rollout/: the strategy table, deploy's pure decision, and the engine's round (one read,
judged by the strategy) with the read handed in — the seam a retry policy wraps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline import deploy, ecs, prepare
from pipeline.config import Environment
from pipeline.errors import ConfigError, Throttled, Unavailable
from pipeline.rollout import engine, strategy
from pipeline.rollout.model import Outcome, Result, State, Unit, Watch, Way
from pipeline.safety import Busy
from tests.ecs_standin import deployment
from tests.helpers import context, said

OLD, NEW = "arn:aws:ecs:us-east-1:1:task-definition/fam:1", "arn:aws:ecs:us-east-1:1:task-definition/fam:2"
ENV = Environment("prod", "c", "svc", "fam", "app", Path("t.json"), Path("v.json"))


def service(**extra: Any) -> dict[str, Any]:
    return {"serviceName": "svc", "status": "ACTIVE", "deployments": [deployment("d1", OLD)], **extra}


@pytest.mark.parametrize(
    ("extra", "chosen"),
    [
        ({}, "ROLLING"),
        ({"deploymentConfiguration": {"strategy": "ROLLING"}}, "ROLLING"),
        ({"deploymentController": {"type": "ECS"}, "deploymentConfiguration": {}}, "ROLLING"),
        ({"deploymentConfiguration": {"strategy": "BLUE_GREEN"}}, "BLUE_GREEN"),
        ({"deploymentConfiguration": {"strategy": "CANARY"}}, "CANARY"),
        (
            {"deploymentConfiguration": {"strategy": "SOMETHING_NEW"}},
            "deploys with the SOMETHING_NEW strategy",
        ),
        ({"deploymentController": {"type": "CODE_DEPLOY"}}, "uses the CODE_DEPLOY deployment controller"),
    ],
)
def test_the_strategy_is_the_services_own_and_one_not_driven_is_refused_by_name(
    extra: dict[str, Any], chosen: str
) -> None:
    if chosen in ("ROLLING", "BLUE_GREEN", "CANARY"):
        assert strategy.named(service(**extra)) == chosen and chosen in strategy.STRATEGIES
        return
    with pytest.raises(ConfigError) as info:
        strategy.named(service(**extra))
    assert chosen in info.value.message and "ecs-pipeline drives" in info.value.message


NEW_REVISION = prepare.NewRevision("abc", "registry/app:abc", {"family": "fam"})


@pytest.mark.parametrize(
    ("options", "facts", "expected"),
    [
        (  # a deploy: the new request, the revision a failure returns to
            deploy.DeployOptions("prod"),
            deploy.DeployFacts(ENV, service(), "http://x/", new=NEW_REVISION),
            ("deploy", "abc", {"family": "fam"}, None, OLD, "http://x/"),
        ),
        (  # a rollback: no request, the target and its sha
            deploy.DeployOptions.rollback_to("prod", "1"),
            deploy.DeployFacts(ENV, service(), None, target=OLD, target_sha="def"),
            ("rollback", "def", None, OLD, OLD, None),
        ),
        (  # nothing ever COMPLETED: nothing to return to
            deploy.DeployOptions("prod"),
            deploy.DeployFacts(
                ENV, service(deployments=[deployment("d1", OLD, state="IN_PROGRESS")]), None, new=NEW_REVISION
            ),
            ("deploy", "abc", {"family": "fam"}, None, None, None),
        ),
        (  # a service being deleted is refused before anything changes
            deploy.DeployOptions("prod"),
            deploy.DeployFacts(ENV, service(status="DRAINING"), None, new=NEW_REVISION),
            "ECS service 'svc' is DRAINING; nothing was changed",
        ),
        (  # a deployment controller this tool does not drive is refused before anything changes
            deploy.DeployOptions("prod"),
            deploy.DeployFacts(
                ENV, service(deploymentController={"type": "EXTERNAL"}), None, new=NEW_REVISION
            ),
            "service svc uses the EXTERNAL deployment controller",
        ),
    ],
)
def test_decide_is_a_pure_table_from_the_facts(
    options: deploy.DeployOptions, facts: deploy.DeployFacts, expected: Any
) -> None:
    if isinstance(expected, str):
        with pytest.raises(ConfigError) as info:
            deploy.decide(options, facts)
        assert info.value.message.startswith(expected)
        return
    change = deploy.decide(options, facts)
    assert (
        change.kind,
        change.sha,
        change.request,
        change.target,
        change.previous,
        change.smoke_url,
    ) == expected
    assert change.strategy == "ROLLING"


@pytest.mark.parametrize(
    ("wait", "force", "busy"),
    [(False, False, Busy.REFUSE), (True, False, Busy.WAIT), (False, True, Busy.REPLACE)],
)
def test_one_enum_for_a_rollout_in_progress(wait: bool, force: bool, busy: Busy) -> None:
    assert Busy.from_flags(wait, force) == busy


def test_wait_and_force_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="--wait and --force: choose one"):
        Busy.from_flags(True, True)


def rounds(*answers: Any) -> Any:
    """A read that gives one scripted answer per round (an exception is raised)."""
    script = list(answers)

    def read(_clients: Any, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, Exception):
            raise answer
        return {pair: answer for pair in pairs}

    return read


def run_rounds(read: Any, timeout: float = 60.0) -> tuple[Any, str]:
    ctx = context({"AWS_RESOURCE_NAME_PREFIX": "engine-test", "AWS_DEFAULT_REGION": "us-east-1"})
    options = engine.RolloutOptions(timeout=timeout, sleep=lambda _s: None, read=read)
    watch = Watch("svc", "c", "svc", NEW, "d2", OLD)
    outcomes, _ = engine.wait_all(ctx, [watch], options, engine.Progress(ctx.out))
    return outcomes["svc"], said(ctx)


def test_a_throttled_round_is_no_verdict_and_the_next_round_decides() -> None:
    done = service(deployments=[deployment("d2", NEW)])
    outcome, output = run_rounds(rounds(Throttled("ecs:DescribeServices was throttled"), done))
    assert outcome.state == State.SUCCEEDED
    assert "DescribeServices throttled; polling again" in output


def test_a_read_that_fails_otherwise_is_the_verdict_of_every_open_watch() -> None:
    rolling = service(deployments=[deployment("d2", NEW, state="IN_PROGRESS"), deployment("d1", OLD)])
    outcome, _ = run_rounds(
        rounds(rolling, Unavailable("ecs:DescribeServices failed: ServiceNotFoundException"))
    )
    assert (outcome.state, outcome.reason) == (
        State.FAILED,
        "ecs:DescribeServices failed: ServiceNotFoundException",
    )


def test_a_service_missing_from_the_answer_is_gone() -> None:
    def read(_clients: Any, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        return {pair: None for pair in pairs}

    outcome, _ = run_rounds(read)
    assert (outcome.state, outcome.reason) == (State.FAILED, "ECS service 'svc' is gone from cluster 'c'")


@pytest.mark.parametrize(
    ("rollback_timeout", "way", "reason"),
    [
        (None, Way.ROLLBACK_FAILED, "timed out after 10s waiting for deployment d3"),  # --timeout again
        (60.0, Way.BY_ECS, ""),
    ],
)
def test_the_way_back_is_waited_for_up_to_the_rollback_timeout_not_the_rollouts(
    rollback_timeout: float | None, way: Way, reason: str
) -> None:
    now = [0.0]
    back = ecs.Deployment("d3", "PRIMARY", OLD, 1, 0, 1, 0, "IN_PROGRESS", "")

    def read(_clients: Any, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        state = "COMPLETED" if now[0] >= 30 else "IN_PROGRESS"  # ECS's rollback takes 30 s
        return {pair: service(deployments=[deployment("d3", OLD, state=state)]) for pair in pairs}

    def sleep(seconds: float) -> None:
        now[0] += seconds

    ctx = context({"AWS_RESOURCE_NAME_PREFIX": "engine-test", "AWS_DEFAULT_REGION": "us-east-1"})
    unit = Unit("svc", ENV, NEW, {"events": []}, OLD)
    failed = Outcome(State.FAILED, "tasks failed to start", rolled_back_by_ecs=back)
    results = {"svc": Result(unit, failed, updated=True)}
    options = engine.RolloutOptions(
        timeout=10, rollback_timeout=rollback_timeout, sleep=sleep, clock=lambda: now[0], read=read
    )
    engine.recover(ctx, results, options, engine.Progress(ctx.out))
    assert (results["svc"].way, results["svc"].back_reason) == (way, reason)
