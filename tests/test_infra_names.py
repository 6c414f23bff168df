"""pipeline/infra/names.py: stack and role names, listener paths, the names AWS would refuse."""

from __future__ import annotations

import pytest

from pipeline import infra
from tests.infra_fixtures import BASE, load


def test_stack_names() -> None:
    s = load(environ={**BASE, "AWS_RESOURCE_NAME_PREFIX": "my_shop"})
    assert infra.project_stack_name(s) == "my-shop-project"
    assert infra.environment_stack_name(s, "staging") == "my-shop-staging"
    assert infra.name_problems(s) == []


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("9shop", "makes the stack name '9shop-project', which CloudFormation refuses"),
        ("s" * 60, "longer than IAM's 64 characters"),
    ],
)
def test_names_aws_would_refuse(prefix: str, expected: str) -> None:
    found = infra.name_problems(load(environ={**BASE, "AWS_RESOURCE_NAME_PREFIX": prefix}))
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(
    ("base_path", "patterns"),
    [("/hello/", ["/hello", "/hello/*"]), ("/a/b/", ["/a/b", "/a/b/*"]), ("/", ["/*"])],
)
def test_path_patterns(base_path: str, patterns: list[str]) -> None:
    assert infra.path_patterns(base_path) == patterns
