"""pipeline/infra/apply.py (no AWS): a ChangeSetPlan as a person reads it, and what a dry
run reports for each kind of plan."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline import infra

REQUEST = infra.StackRequest("shop-project", "project.yaml", {"Prefix": "shop", "KeepImages": "30"}, {})
STATE = infra.StackState(
    "shop-project", "arn:stack/shop-project/1", "UPDATE_COMPLETE", outputs={"Cluster": "c"}
)
CHANGES = (
    infra.Change("Add", "TaskRole", "AWS::IAM::Role"),
    infra.Change("Modify", "Repository", "AWS::ECR::Repository", "False"),
)


def plan(action: str, **rest: Any) -> infra.ChangeSetPlan:
    return infra.ChangeSetPlan(REQUEST, STATE, action, **rest)


@pytest.mark.parametrize(
    ("the_plan", "lines"),
    [
        (plan("unchanged"), ["no changes: the stack already matches"]),
        (
            infra.ChangeSetPlan(
                REQUEST, infra.StackState("shop-project", status="ROLLBACK_COMPLETE"), "recreate"
            ),
            ["shop-project is ROLLBACK_COMPLETE (its first creation failed): it is deleted and made afresh"],
        ),
        (
            plan(
                "update",
                change_set="setup-20260101-000000",
                arn="arn:cs",
                stack_id="arn:stack",
                changes=CHANGES,
            ),
            [
                "change set setup-20260101-000000 (update shop-project):",
                *(f"  {line}" for line in infra.summary(CHANGES)),
            ],
        ),
    ],
    ids=["unchanged", "recreate", "update"],
)
def test_a_plan_says_what_would_change(the_plan: infra.ChangeSetPlan, lines: list[str]) -> None:
    assert the_plan.lines() == lines
    assert the_plan.lines(parameters=True) == ["Prefix = shop", "KeepImages = 30", *lines]


def test_a_dry_run_of_a_plan_without_a_change_set_touches_nothing() -> None:
    nothing: Any = None  # no change set waits: withdrawing one asks no AWS client
    assert infra.withdraw(nothing, plan("unchanged")) == infra.StackResult(
        "shop-project", "unchanged", outputs={"Cluster": "c"}
    )
    assert infra.withdraw(nothing, plan("recreate")) == infra.StackResult("shop-project", "previewed")
