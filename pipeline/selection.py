"""Which image in ECR to run: by commit sha (or a unique prefix), latest push, or highest version.

Pure: ECR's image records in, one Selection (or a one-line error) out. The rules:
- `--sha`: an exact tag wins; otherwise the sha tags starting with the prefix must belong
  to one image, else the candidates are listed.
- `--latest`: the newest `imagePushedAt`; images pushed in the same instant are ordered
  by digest, so the answer never depends on the order ECR lists them in.
- `--highest-version`: semantic-version precedence (semver.org §11) over tags like
  `v1.10.0` or `2.0.0-rc.1`; `v1.10.0` beats `v1.9.2`, a pre-release ranks below its
  release, build metadata does not count, tags that are not versions are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .config.settings import DEV_REPOSITORY_SUFFIX
from .ecr import ImageRecord
from .errors import ConfigError, NotFound
from .git import DIRTY_SUFFIX, TAG_RE, validate_sha

_SHA_TAG_RE = TAG_RE
SHORT_SHA_RE = re.compile(r"^[0-9a-f]{7,39}$")  # a commit id's unique prefix, as git abbreviates
_SEMVER_RE = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_OLDEST = datetime.min.replace(tzinfo=UTC)

Kind = Literal["sha", "latest", "highest-version"]
SHA: Kind = "sha"
LATEST: Kind = "latest"
HIGHEST_VERSION: Kind = "highest-version"


@dataclass(frozen=True)
class Selector:
    """How the person asked for an image: kind is SHA (with the sha or prefix), LATEST or HIGHEST_VERSION."""

    kind: Kind
    sha: str = ""

    def describe(self) -> str:
        return f"--sha {self.sha}" if self.kind == SHA else f"--{self.kind}"


@dataclass(frozen=True)
class Selection:
    record: ImageRecord
    tag: str | None  # what to pull by; None: the image has no tag, pull by digest
    reason: str  # why this image, for the person reading the output

    @property
    def sha(self) -> str | None:
        """The commit the image was built from, when one of its tags says so."""
        return sha_tag(self.record)


def parse_selector(sha: str | None, latest: bool, highest_version: bool) -> Selector:
    """Exactly one of --sha, --latest, --highest-version."""
    given = [
        flag
        for flag, on in (("--sha", bool(sha)), ("--latest", latest), ("--highest-version", highest_version))
        if on
    ]
    if len(given) != 1:
        problem = "choose" if not given else f"{' and '.join(given)} were given together; choose only"
        raise ConfigError(
            f"{problem} one of --sha SHA, --latest or --highest-version (`invoke images` lists them)"
        )
    if latest:
        return Selector(LATEST)
    if highest_version:
        return Selector(HIGHEST_VERSION)
    assert sha is not None
    value = sha.strip().lower()
    # `<sha>-dirty` (any build of that sha's work tree) or `<sha>-dirty-<hash>` (one).
    clean, dirty, changes = value.partition(DIRTY_SUFFIX)
    validate_sha(clean)
    if dirty and not re.fullmatch(r"(-[0-9a-f]{1,8})?", changes):
        raise ConfigError(
            f"--sha {sha!r}: not a commit id or <sha>-dirty-<hash> tag (`invoke images` lists them)"
        )
    return Selector(SHA, value)


def semver_key(tag: str) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]] | None:
    """A sort key giving semantic-version precedence, or None when the tag is no version."""
    match = _SEMVER_RE.match(tag)
    if not match:
        return None
    major, minor, patch, pre = match.groups()
    if pre is None:
        return (int(major), int(minor), int(patch), 1, ())
    # Numeric identifiers compare as numbers and rank below alphanumeric ones.
    ids = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split("."))
    return (int(major), int(minor), int(patch), 0, ids)


def sha_tag(record: ImageRecord) -> str | None:
    """The image's commit tag (`<sha>` or `<sha>-dirty-<hash>`), the clean one first."""
    shas = sorted((t for t in record.tags if _SHA_TAG_RE.match(t)), key=lambda t: (DIRTY_SUFFIX in t, t))
    return shas[0] if shas else None


def push_key(record: ImageRecord) -> tuple[datetime, str]:
    return (record.pushed_at or _OLDEST, record.digest)


def newest_first(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    return sorted(records, key=push_key, reverse=True)


def _dev_hint(repository: str) -> str:
    """Where else the image may be: -dev branches push to a repository of their own."""
    if repository.endswith(DEV_REPOSITORY_SUFFIX):
        return ""
    return f" (images that -dev branches pushed are in {repository}{DEV_REPOSITORY_SUFFIX}: add --dev)"


def select(
    records: Sequence[ImageRecord], selector: Selector, repository: str, asked: str | None = None
) -> Selection:
    """`asked`: how the caller's user named the image, for the errors (default: the flag)."""
    if not records:
        raise NotFound(
            f"no images in ECR repository {repository!r}; push one with `invoke dockerize && invoke push`"
            + _dev_hint(repository)
        )
    if selector.kind == LATEST:
        newest = newest_first(records)[0]
        when = newest.pushed_at.isoformat(timespec="seconds") if newest.pushed_at else "unknown"
        return Selection(newest, _pull_tag(newest), f"latest push ({when})")
    if selector.kind == HIGHEST_VERSION:
        return _highest_version(records, repository)
    return _by_sha(records, selector.sha, repository, asked or f"--sha {selector.sha}")


def _pull_tag(record: ImageRecord) -> str | None:
    return sha_tag(record) or (sorted(record.tags)[0] if record.tags else None)


def _by_sha(records: Sequence[ImageRecord], sha: str, repository: str, asked: str) -> Selection:
    exact = [r for r in records if sha in r.tags]
    if exact:
        return Selection(exact[0], sha, f"sha {sha}")
    matches = {r.digest: r for r in records for t in r.tags if _SHA_TAG_RE.match(t) and t.startswith(sha)}
    if not matches:
        raise NotFound(
            f"no image in {repository!r} has a sha tag starting with {sha!r}; `invoke images` lists what ECR holds"
            + _dev_hint(repository)
        )
    if len(matches) > 1:
        candidates = ", ".join(
            f"{sha_tag(r)} (pushed {r.pushed_at.isoformat(timespec='seconds') if r.pushed_at else 'unknown'})"
            for r in newest_first(matches.values())
        )
        raise ConfigError(f"{asked} matches {len(matches)} images: {candidates}; give more of the sha")
    record = next(iter(matches.values()))
    return Selection(record, sha_tag(record), f"sha prefix {sha}")


def _highest_version(records: Sequence[ImageRecord], repository: str) -> Selection:
    versions = [(key, tag, r) for r in records for tag in r.tags if (key := semver_key(tag)) is not None]
    if not versions:
        raise NotFound(
            f"no tag in {repository!r} is a semantic version (like v1.2.3); "
            "choose with --sha or --latest instead (`invoke images` lists the tags)"
        )
    # Equal precedence (tags differing only in build metadata): the greater tag text, for determinism.
    _, tag, record = max(versions, key=lambda v: (v[0], v[1]))
    return Selection(record, tag, f"highest version {tag}")
