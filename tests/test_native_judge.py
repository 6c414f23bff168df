"""native.judge, as a table: what one read of a BLUE_GREEN/LINEAR/CANARY service deployment
means for the deploy that started it (pure; the emulator's real service deployments are in
tests/test_gate.py)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.rollout import native
from pipeline.rollout.model import State, Watch

ARN = "arn:aws:ecs:us-east-1:123456789012:service-deployment/c/svc/abc123"
OTHER = "arn:aws:ecs:us-east-1:123456789012:service-deployment/c/svc/zzz999"
WATCH = Watch("svc", "c", "svc", "fam:8", ARN, "fam:7", None, "BLUE_GREEN", gate_url="http://127.0.0.1:1/x/")
BACK = Watch("svc", "c", "svc", "fam:7", ARN, strategy="BLUE_GREEN", rolling_back=True)
SERVICE = {"status": "ACTIVE", "currentServiceDeployment": ARN, "deployments": []}


def sd(
    status: str, stage: str = "SCALE_UP", hooks: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    return {"serviceDeploymentArn": ARN, "status": status, "lifecycleStage": stage,
            "lifecycleHookDetails": hooks or [], **extra}  # fmt: skip


PAUSED = [{"hookId": "h1", "targetType": "PAUSE", "status": "AWAITING_ACTION", "timeoutAction": "ROLLBACK"}]


@pytest.mark.parametrize(
    ("deployment", "state"),
    [
        (sd("PENDING", "RECONCILE_SERVICE"), State.ROLLING),
        (sd("IN_PROGRESS", "TEST_TRAFFIC_SHIFT"), State.ROLLING),
        (sd("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", PAUSED), State.PAUSED),
        (sd("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", [{**PAUSED[0], "status": "SUCCEEDED"}]), State.ROLLING),
        (sd("IN_PROGRESS", "BAKE_TIME"), State.ROLLING),
        (sd("SUCCESSFUL", "CLEAN_UP"), State.SUCCEEDED),
        (sd("ROLLBACK_IN_PROGRESS"), State.FAILED),
        (sd("ROLLBACK_SUCCESSFUL"), State.FAILED),
        (sd("ROLLBACK_FAILED"), State.FAILED),
        (sd("STOPPED"), State.FAILED),
    ],
)
def test_a_forward_watch_reads_each_status(deployment: dict[str, Any], state: State) -> None:
    assert native.judge(SERVICE, deployment, WATCH).state == state


def test_paused_carries_the_hook_to_answer() -> None:
    outcome = native.judge(SERVICE, sd("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", PAUSED), WATCH)
    assert outcome.hook is not None and outcome.hook["hookId"] == "h1" and not outcome.done


def test_ecs_rolling_back_is_a_failure_with_ecs_way_back_to_the_previous_revision() -> None:
    reason = "Service deployment rolled back because of the lifecycle hook's ROLLBACK action."
    outcome = native.judge(SERVICE, sd("ROLLBACK_IN_PROGRESS", rollback={"reason": reason}), WATCH)
    assert outcome.state == State.FAILED and outcome.reason == reason
    assert outcome.rolled_back_by_ecs is not None and outcome.rolled_back_by_ecs.task_definition == "fam:7"


def test_stopped_and_another_deployment_current_is_replaced_never_rolled_back_over() -> None:
    service = {**SERVICE, "currentServiceDeployment": OTHER}
    outcome = native.judge(service, sd("STOPPED"), WATCH)
    assert outcome.state == State.REPLACED and "zzz999" in outcome.reason


def test_a_gone_service_deployment_or_service_is_a_failure() -> None:
    assert native.judge(SERVICE, None, WATCH).state == State.FAILED
    assert native.judge({**SERVICE, "status": "DRAINING"}, sd("IN_PROGRESS"), WATCH).state == State.FAILED


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("ROLLBACK_REQUESTED", State.ROLLING),
        ("ROLLBACK_IN_PROGRESS", State.ROLLING),
        ("ROLLBACK_SUCCESSFUL", State.SUCCEEDED),
        ("ROLLBACK_FAILED", State.FAILED),
    ],
)
def test_a_way_back_watch_waits_for_the_rollback_to_end(status: str, state: State) -> None:
    assert native.judge(SERVICE, sd(status), BACK).state == state


def test_the_progress_line_shows_stage_weights_and_the_waiting_hook() -> None:
    deployment = sd(
        "IN_PROGRESS",
        "POST_TEST_TRAFFIC_SHIFT",
        PAUSED,
        targetServiceRevision={"requestedProductionTrafficWeight": 0.0, "requestedTestTrafficWeight": 100.0,
                               "runningTaskCount": 1, "requestedTaskCount": 1},
    )  # fmt: skip
    assert native.line(deployment) == (
        "IN_PROGRESS; POST_TEST_TRAFFIC_SHIFT; new revision: production 0%, test 100%; tasks 1/1; "
        "hook h1 AWAITING_ACTION (on timeout: ROLLBACK)"
    )


GATED = {"deploymentConfiguration": {"lifecycleHooks": [
    {"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]}]}}  # fmt: skip


@pytest.mark.parametrize(
    ("service", "smoke_url", "test_url", "says", "warns"),
    [
        (
            GATED,
            "http://a/x/",
            "http://a:9000/x/",
            "ECS pauses at POST_TEST_TRAFFIC_SHIFT; the smoke test of "
            "http://a:9000/x/ (the test listener) decides CONTINUE or ROLLBACK",
            False,
        ),  # fmt: skip
        (
            {},
            "http://a/x/",
            "http://a:9000/x/",
            "no smoke gate (no PAUSE hook at POST_TEST_TRAFFIC_SHIFT;",
            True,
        ),
        (GATED, "http://a/x/", None, "no smoke gate (no test listener rule;", True),
        (GATED, None, None, "no smoke test (--no-smoke): any PAUSE hook is continued at once", False),
    ],
)
def test_a_deploy_says_whether_a_smoke_gate_guards_production_and_warns_when_none_does(
    service: dict[str, Any], smoke_url: str | None, test_url: str | None, says: str, warns: bool
) -> None:
    from pipeline import deploy
    from tests.test_rollout_engine import ENV

    change = deploy.DeployChange(
        deploy.Kind.DEPLOY, ENV, "abc", service, smoke_url, strategy="BLUE_GREEN", test_url=test_url
    )
    line, ungated = deploy.gate_line(change)
    assert says in line and line.startswith("BLUE_GREEN: ") and ungated == warns
