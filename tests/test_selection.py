"""The selection rules, as tables: semantic-version order, sha prefixes, push-time ties."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from pipeline.ecr import ImageRecord
from pipeline.errors import ConfigError, NotFound
from pipeline.selection import (
    HIGHEST_VERSION,
    LATEST,
    SHA,
    Selector,
    newest_first,
    parse_selector,
    select,
    semver_key,
    sha_tag,
)

A = "abc1234" + "a" * 33
B = "abc1234" + "b" * 33
C = "c0ffee1" + "c" * 33


def at(second: int) -> datetime:
    return datetime(2024, 5, 1, 12, 0, second, tzinfo=UTC)


def record(digest: str, *tags: str, pushed: int | None = 0) -> ImageRecord:
    return ImageRecord(f"sha256:{digest}", tags, None if pushed is None else at(pushed), 100)


IMAGES = [
    record("1" * 64, A, "v1.9.2", pushed=1),
    record("2" * 64, B, "v1.10.0", pushed=2),
    record("3" * 64, C, "v1.10.0-rc.1", "nightly", pushed=3),
]


# --- semantic versions -------------------------------------------------------------

# semver.org §11's own example, then this project's: numbers compare as numbers.
ASCENDING = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "v1.9.2",
    "v1.10.0-rc.1",
    "v1.10.0",
    "1.10.1",
    "2.0.0",
    "10.0.0",
]


def test_semver_precedence_follows_the_spec() -> None:
    keys = [semver_key(tag) for tag in ASCENDING]
    assert all(key is not None for key in keys)
    assert sorted(ASCENDING, key=semver_key) == ASCENDING  # type: ignore[arg-type,return-value]
    assert len(set(keys)) == len(keys)  # strictly ascending


@pytest.mark.parametrize(
    ("tag", "same_as"),
    [("v1.2.3", "1.2.3"), ("1.2.3+build.7", "1.2.3"), ("v1.2.3-rc.1+exp.sha.5114f85", "1.2.3-rc.1")],
)
def test_the_v_prefix_and_build_metadata_do_not_count(tag: str, same_as: str) -> None:
    assert semver_key(tag) == semver_key(same_as) is not None


@pytest.mark.parametrize(
    "tag",
    [
        "latest",
        "nightly",
        A,
        "1.2",
        "v1",
        "1.2.3.4",
        "01.2.3",
        "1.02.3",
        "1.2.3-",
        "1.2.3-01",
        "V1.2.3",
        "1.2.3-a..b",
        "",
    ],
)
def test_tags_that_are_not_versions_are_ignored(tag: str) -> None:
    assert semver_key(tag) is None


# --- the selector flags --------------------------------------------------------------


@pytest.mark.parametrize(
    ("sha", "latest", "highest", "expected"),
    [
        (A, False, False, Selector(SHA, A)),
        ("ABC1234", False, False, Selector(SHA, "abc1234")),
        (f" {A}-dirty ", False, False, Selector(SHA, f"{A}-dirty")),
        (f"{A}-dirty-0A1B2C3D", False, False, Selector(SHA, f"{A}-dirty-0a1b2c3d")),
        (None, True, False, Selector(LATEST)),
        (None, False, True, Selector(HIGHEST_VERSION)),
    ],
)
def test_exactly_one_selector(sha: str | None, latest: bool, highest: bool, expected: Selector) -> None:
    assert parse_selector(sha, latest, highest) == expected


@pytest.mark.parametrize(
    ("sha", "latest", "highest", "words"),
    [
        (None, False, False, "choose one of --sha SHA, --latest or --highest-version"),
        (A, True, False, "--sha and --latest were given together; choose only one"),
        (None, True, True, "--latest and --highest-version were given together"),
        (A, True, True, "--sha and --latest and --highest-version were given together"),
        ("abc", False, False, "not a commit id; give 7-40 hexadecimal characters"),
        ("xyz1234", False, False, "not a commit id"),
    ],
)
def test_bad_selectors_say_what_to_do(sha: str | None, latest: bool, highest: bool, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_selector(sha, latest, highest)
    assert words in info.value.message


# --- selecting -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "digest", "tag", "sha"),
    [
        (Selector(SHA, A), "1", A, A),
        (Selector(SHA, "abc1234a"), "1", A, A),
        (Selector(SHA, C[:7]), "3", C, C),
        (Selector(LATEST), "3", C, C),
        (Selector(HIGHEST_VERSION), "2", "v1.10.0", B),
    ],
)
def test_select(selector: Selector, digest: str, tag: str, sha: str) -> None:
    chosen = select(IMAGES, selector, "shop")
    assert (chosen.record.digest, chosen.tag, chosen.sha) == (f"sha256:{digest * 64}", tag, sha)


def test_an_ambiguous_prefix_lists_the_candidates_newest_first() -> None:
    with pytest.raises(ConfigError) as info:
        select(IMAGES, Selector(SHA, "abc1234"), "shop")
    assert info.value.message == (
        f"--sha abc1234 matches 2 images: {B} (pushed 2024-05-01T12:00:02+00:00), "
        f"{A} (pushed 2024-05-01T12:00:01+00:00); give more of the sha"
    )


def test_an_exact_sha_beats_its_dirty_build_and_a_prefix_matching_both_is_ambiguous() -> None:
    images = [record("1" * 64, A, pushed=1), record("2" * 64, f"{A}-dirty-0a1b2c3d", pushed=2)]
    assert select(images, Selector(SHA, A), "shop").record.digest == f"sha256:{'1' * 64}"
    assert select(images, Selector(SHA, f"{A}-dirty"), "shop").record.digest == f"sha256:{'2' * 64}"
    assert select(images, Selector(SHA, f"{A}-dirty-0a1b"), "shop").record.digest == f"sha256:{'2' * 64}"
    with pytest.raises(ConfigError, match="matches 2 images"):
        select(images, Selector(SHA, A[:10]), "shop")


def test_a_prefix_matching_two_tags_of_one_image_is_not_ambiguous() -> None:
    images = [record("1" * 64, A, f"{A}-dirty-0a1b2c3d")]
    chosen = select(images, Selector(SHA, "abc1234"), "shop")
    assert (chosen.tag, chosen.sha) == (A, A)  # the clean tag names it


def test_prefixes_match_sha_tags_only() -> None:
    with pytest.raises(NotFound, match="no image in 'shop' has a sha tag starting with 'abcdef0'"):
        select([record("1" * 64, "abcdef0-is-not-a-sha")], Selector(SHA, "abcdef0"), "shop")


@pytest.mark.parametrize(
    ("images", "selector", "words"),
    [
        (
            [],
            Selector(LATEST),
            "no images in ECR repository 'shop'; push one with `invoke dockerize && invoke push`",
        ),
        (IMAGES, Selector(SHA, "deadbee"), "no image in 'shop' has a sha tag starting with 'deadbee'"),
        (
            [record("1" * 64, A, "latest")],
            Selector(HIGHEST_VERSION),
            "no tag in 'shop' is a semantic version",
        ),
    ],
)
def test_nothing_to_select(images: list[ImageRecord], selector: Selector, words: str) -> None:
    with pytest.raises(NotFound) as info:
        select(images, selector, "shop")
    assert words in info.value.message


def test_push_time_ties_do_not_depend_on_the_listing_order() -> None:
    tied = [record("1" * 64, A, pushed=5), record("2" * 64, B, pushed=5), record("3" * 64, C, pushed=4)]
    chosen = {
        select(list(order), Selector(LATEST), "shop").record.digest for order in itertools.permutations(tied)
    }
    assert chosen == {f"sha256:{'2' * 64}"}  # the greater digest, every time


def test_newest_first_puts_unknown_push_times_last() -> None:
    images = [record("1" * 64, A, pushed=None), record("2" * 64, B, pushed=1), record("3" * 64, C, pushed=9)]
    assert [r.digest[7] for r in newest_first(images)] == ["3", "2", "1"]


def test_an_untagged_latest_image_is_pulled_by_digest() -> None:
    chosen = select([record("1" * 64, A, pushed=1), record("2" * 64, pushed=2)], Selector(LATEST), "shop")
    assert (chosen.record.digest, chosen.tag, chosen.sha) == (f"sha256:{'2' * 64}", None, None)


def test_the_highest_version_ignores_other_tags_and_ranks_pre_releases_below_their_release() -> None:
    images = [
        record("1" * 64, "v2.0.0-rc.2", "zzz"),
        record("2" * 64, "v1.10.0"),
        record("3" * 64, "v2.0.0-rc.10"),
    ]
    assert select(images, Selector(HIGHEST_VERSION), "shop").tag == "v2.0.0-rc.10"
    images.append(record("4" * 64, "2.0.0"))
    assert select(images, Selector(HIGHEST_VERSION), "shop").tag == "2.0.0"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ((A, "v1.0.0"), A),
        ((f"{A}-dirty-0a1b2c3d", A), A),
        ((f"{A}-dirty-0a1b2c3d",), f"{A}-dirty-0a1b2c3d"),
        (("v1.0.0", "latest"), None),
    ],
)
def test_sha_tag(tags: tuple[str, ...], expected: str | None) -> None:
    assert sha_tag(record("1" * 64, *tags)) == expected
