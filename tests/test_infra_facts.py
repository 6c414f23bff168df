"""pipeline/infra/facts.py: the rules over what setup found: priorities, clashing rules, zones, images, the cluster."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline import infra
from pipeline.ecr import ImageRecord
from pipeline.errors import ConfigError
from tests.infra_fixtures import load


def rule(
    arn: str, priority: int | None, paths: tuple[str, ...] = (), hosts: tuple[str, ...] = ()
) -> infra.ListenerRule:
    return infra.ListenerRule(arn, priority, paths, hosts)


RULES = [
    rule("default", None),
    rule("a", 1, ("/a/*",)),
    rule("b", 2, ("/b/*",)),
    rule("ours", 3, ("/hello/*",)),
]


@pytest.mark.parametrize(
    ("ours", "configured", "current", "expected"),
    [
        (None, None, None, 4),  # the lowest free one (3 is a rule of another stack here)
        ("ours", None, 3, 3),  # keeps its own
        ("ours", 10, 3, 10),  # a configured priority wins
        (None, None, 2, 4),  # the stack's old priority was taken meanwhile
        ("ours", 3, None, 3),  # our own rule does not block us
    ],
)
def test_choose_priority(
    ours: str | None, configured: int | None, current: int | None, expected: int
) -> None:
    assert infra.choose_priority(RULES, ours, configured, current) == expected


def test_a_configured_priority_another_rule_holds_is_refused() -> None:
    with pytest.raises(
        ConfigError,
        match="rule_priority 2: another rule on the shared listener holds it \\(b\\); choose a free one, e.g. 4",
    ):
        infra.choose_priority(RULES, None, 2, None)


@pytest.mark.parametrize(
    ("existing", "paths", "host", "clash"),
    [
        ([rule("x", 5, ("/hello/*",))], ["/hello", "/hello/*"], None, "x"),
        ([rule("x", 5, ("/hello/*",), ("a.example.com",))], ["/hello/*"], "b.example.com", None),
        ([rule("x", 5, ("/hello/*",), ("a.example.com",))], ["/hello/*"], "a.example.com", "x"),
        ([rule("x", 5, ("/hello/*",))], ["/hello/*"], "a.example.com", "x"),  # x takes every host
        ([rule("x", 5, ("/other/*",))], ["/hello/*"], None, None),
        ([rule("ours", 5, ("/hello/*",))], ["/hello/*"], None, None),
        ([rule("default", None, ())], ["/hello/*"], None, None),
    ],
)
def test_conflicting_rule(
    existing: list[infra.ListenerRule], paths: list[str], host: str | None, clash: str | None
) -> None:
    found = infra.conflicting_rule(existing, "ours", paths, host)
    assert (found.arn if found else None) == clash


@pytest.mark.parametrize(
    ("domain", "zones", "expected"),
    [
        ("shop.example.com", [("/hostedzone/Z1", "example.com.", False)], "Z1"),
        (
            "shop.example.com",
            [("/hostedzone/Z1", "example.com.", False), ("/hostedzone/Z2", "shop.example.com.", False)],
            "Z2",
        ),
        (
            "shop.example.com",
            [("/hostedzone/Z1", "example.com.", True), ("/hostedzone/Z2", "example.com.", False)],
            "Z2",
        ),
        ("shop.example.com", [("/hostedzone/Z1", "ample.com.", False)], None),
        ("shop.example.com", [("/hostedzone/Z1", "other.com.", False)], None),
        ("example.com", [("/hostedzone/Z1", "example.com.", False)], "Z1"),
    ],
)
def test_zone_for(domain: str, zones: list[tuple[str, str, bool]], expected: str | None) -> None:
    assert infra.zone_for(domain, zones) == expected


def image(tags: tuple[str, ...], day: int) -> ImageRecord:
    return ImageRecord(f"sha256:{day}", tags, datetime(2025, 1, day, tzinfo=UTC), 1)


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ([], None),
        ([image((), 3)], None),
        ([image(("old",), 1), image(("new",), 2), image((), 3)], "new"),
    ],
)
def test_newest_tag(images: list[ImageRecord], expected: str | None) -> None:
    assert infra.newest_tag(images) == expected


def test_project_cluster_is_shared_by_the_environments() -> None:
    s = load()
    project = infra.StackState("shop-project", "id", "CREATE_COMPLETE", {"ClusterName": "shop-cluster"})
    assert infra.project_cluster(s, "staging", project) == "shop-cluster"
    assert infra.project_cluster(s, None, infra.StackState("shop-project")) == "shop-cluster"
    other = infra.StackState("shop-project", "id", "CREATE_COMPLETE", {"ClusterName": "elsewhere"})
    with pytest.raises(
        ConfigError, match="environment staging uses cluster shop-cluster but the project stack"
    ):
        infra.project_cluster(s, "staging", other)
