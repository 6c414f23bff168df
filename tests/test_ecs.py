"""pipeline/ecs.py: reading ECS's answers (pure): a deployment's outcome, the last known good revision."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline import ecs
from pipeline.rollout import rolling
from pipeline.rollout.model import Outcome
from tests.ecs_standin import deployment

OLD, NEW = "arn:aws:ecs:us-east-1:1:task-definition/fam:1", "arn:aws:ecs:us-east-1:1:task-definition/fam:2"


@pytest.mark.parametrize(
    ("deployments", "state", "reason"),
    [
        ([deployment("new", NEW)], "succeeded", ""),
        (
            [
                deployment("new", NEW, running=0, pending=1, state="IN_PROGRESS"),
                deployment("old", OLD, "ACTIVE"),
            ],
            "rolling",
            "",
        ),
        (
            [deployment("new", NEW, state="FAILED", reason="circuit breaker"), deployment("rb", OLD)],
            "failed",
            "circuit breaker",
        ),
        # Another PRIMARY with no sign of ECS's circuit breaker: a deploy we did not start.
        ([deployment("rb", OLD)], "replaced", "replaced by deployment rb of fam:1, which we did not start"),
        ([deployment("other", NEW)], "replaced", "replaced by deployment other of fam:2"),
        # Ours COMPLETED, then a later deploy (one that waited for ours) started: ours succeeded.
        (
            [
                deployment("later", OLD, state="IN_PROGRESS"),
                deployment("new", NEW, "ACTIVE", state="COMPLETED"),
            ],
            "succeeded",
            "deployment new COMPLETED; deployment later of fam:1 has started since",
        ),
        ([deployment("new", NEW, state=None)], "succeeded", "no stale deployments"),
        ([deployment("new", NEW, state=None), deployment("old", OLD, "ACTIVE", state=None)], "rolling", ""),
        ([deployment("new", NEW, state=None, running=0, pending=1)], "rolling", ""),
        ([deployment("new", NEW, "ACTIVE", state="IN_PROGRESS")], "failed", "no longer PRIMARY"),
    ],
)
def test_observe(deployments: list[dict[str, Any]], state: str, reason: str) -> None:
    outcome = rolling.judge({"status": "ACTIVE", "deployments": deployments}, "new", NEW)
    assert outcome.state == state and reason in outcome.reason


def test_a_draining_service_is_a_failure() -> None:
    outcome = rolling.judge({"status": "DRAINING", "deployments": [deployment("new", NEW)]}, "new", NEW)
    assert outcome == Outcome("failed", "the service is DRAINING")


@pytest.mark.parametrize(
    ("deployments", "expected"),
    [
        ([deployment("new", NEW, state="IN_PROGRESS"), deployment("old", OLD, "ACTIVE")], OLD),
        ([deployment("old", OLD)], OLD),
        ([deployment("old", OLD, state=None)], OLD),
        ([deployment("new", NEW, state="IN_PROGRESS", running=0)], None),
        ([deployment("old", OLD, state=None, running=0)], None),
    ],
)
def test_last_known_good_is_what_completed_not_revision_minus_one(
    deployments: list[dict[str, Any]], expected: str | None
) -> None:
    assert ecs.last_known_good({"deployments": deployments}) == expected


def test_observe_names_the_deployment_ecs_rolled_back_with() -> None:
    failed = rolling.judge(
        {
            "deployments": [
                deployment("rb", OLD, state="IN_PROGRESS"),
                deployment("new", NEW, "ACTIVE", state="FAILED"),
            ]
        },
        "new",
        NEW,
    )
    assert failed.state == "failed" and failed.rolled_back_by_ecs is not None
    assert (failed.rolled_back_by_ecs.id, failed.rolled_back_by_ecs.task_definition) == ("rb", OLD)
    timed_out_so_far = rolling.judge(
        {"deployments": [deployment("new", NEW, state="IN_PROGRESS"), deployment("old", OLD, "ACTIVE")]},
        "new",
        NEW,
    )
    assert timed_out_so_far.rolled_back_by_ecs is None
