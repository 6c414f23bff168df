"""pipeline/infra/teardown.py: what a teardown plan says, and the confirmation it asks for."""

from __future__ import annotations

import io

import pytest

from pipeline import infra
from pipeline.errors import ConfigError


def test_teardown_plan_lines() -> None:
    env, project = infra.StackState("shop-prod", resources={"Service": "s"}), infra.StackState("shop-project")
    kept = infra.TeardownPlan((env, project), "shop", 4, False, ())
    assert kept.lines() == [
        "delete stack shop-prod (1 resources)",
        "delete stack shop-project (0 resources)",
        "keep ECR repository shop and its 4 images (--delete-images deletes them)",
    ]
    forced = infra.TeardownPlan((env, project), "shop", 4, True, ())
    assert forced.lines()[-1] == "delete ECR repository shop and its 4 images (--delete-images)"
    staying = infra.TeardownPlan((env,), "shop", 4, False, ("shop-staging",))
    assert staying.lines()[1:] == [
        "the project stack stays: environment stacks remain (shop-staging)",
        "ECR repository shop stays with the project stack",
    ]


@pytest.mark.parametrize(
    ("yes", "typed", "expected"),
    [(True, "", True), (False, "shop-prod\n", True), (False, "yes\n", False)],
)
def test_confirmation(yes: bool, typed: str, expected: bool) -> None:

    prompt = io.StringIO()
    assert infra.ask(yes, io.StringIO(typed), prompt)("shop-prod") is expected
    assert prompt.getvalue() == ("" if yes else "type shop-prod to delete it: ")


def test_no_stdin_and_no_yes_is_refused() -> None:

    with pytest.raises(ConfigError, match="teardown needs a confirmation and stdin has none; pass --yes"):
        infra.ask(False, io.StringIO(""), io.StringIO())("shop-prod")
