"""pipeline/git.py: which commit and ref we build, and whether the work tree is dirty."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline import git
from pipeline.errors import ConfigError

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    "given", ["abc123", "xyz1234", "0123456789abcdef0123456789abcdef012345678", "", "v1.2.3"]
)
def test_sha_must_be_a_commit_id(given: str) -> None:
    with pytest.raises(ConfigError, match=r"--sha .*: not a commit id"):
        git.validate_sha(given)


def test_sha_is_normalised() -> None:
    assert git.validate_sha(" ABCDEF1 ") == "abcdef1"


def test_flag_beats_circle_sha1_beats_git(tmp_path: Path) -> None:
    assert git.current(tmp_path, {"CIRCLE_SHA1": SHA}, "abcdef1") == git.Revision("abcdef1")
    assert git.current(tmp_path, {"CIRCLE_SHA1": SHA}) == git.Revision(SHA)


def test_no_git_and_no_circle_sha1_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a git repository with a commit and CIRCLE_SHA1 is not set"):
        git.current(tmp_path, {})


def _repo(tmp_path: Path) -> str:
    def run(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True
        ).stdout.strip()

    run("init", "-q", "-b", "feature/x")
    (tmp_path / "f.txt").write_text("one")
    run("add", "f.txt")
    run("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "one")
    return run("rev-parse", "HEAD")


def test_a_dirty_tree_is_tagged_as_such(tmp_path: Path) -> None:
    head = _repo(tmp_path)
    assert git.current(tmp_path, {}) == git.Revision(head)
    (tmp_path / "f.txt").write_text("two")
    revision = git.current(tmp_path, {})
    assert revision.dirty and git.TAG_RE.match(revision.tag) and revision.tag.startswith(f"{head}-dirty-")
    assert git.current(tmp_path, {}) == revision  # the same changes, the same tag
    (tmp_path / "f.txt").write_text("three")
    assert git.current(tmp_path, {}).tag != revision.tag


def test_ref_prefers_ci_variables_then_git(tmp_path: Path) -> None:
    _repo(tmp_path)
    assert git.ref(tmp_path, {}) == ("branch", "feature/x")
    assert git.ref(tmp_path, {"CIRCLE_BRANCH": "main"}) == ("branch", "main")
    assert git.ref(tmp_path, {"CIRCLE_TAG": "v1-prod", "CIRCLE_BRANCH": "main"}) == ("tag", "v1-prod")
