"""What commit we are building: CI's variables first, then git itself.

A dirty work tree is never passed off as its commit: its image tag (and revision
label) is `<sha>-dirty-<hash of the uncommitted changes>`. So every tag names exact
content — a commit, or a commit plus one diff — and tags can stay immutable in ECR:
the same changes build the same tag, other changes a new one.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from .errors import ConfigError

_SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")
DIRTY_SUFFIX = "-dirty"
# Any image tag this pipeline makes: a commit, or a commit and a diff's hash.
TAG_RE = re.compile(r"^[0-9a-f]{7,40}(?:-dirty-[0-9a-f]{8})?$")

Kind = Literal["branch", "tag"]
_FORBIDDEN_CHARS = {
    " ": "a space",
    "~": "'~'",
    "^": "'^'",
    ":": "':'",
    "?": "'?'",
    "*": "'*'",
    "[": "'['",
    "\\": "'\\'",
}


def ref_problem(name: str, kind: Kind) -> str | None:
    """Why git would refuse `name` as a branch or tag name (git check-ref-format), or None."""
    if not name:
        return "it is empty"
    if name.startswith("-"):
        return "it starts with '-'"
    if kind == "branch" and name == "HEAD":
        return "HEAD is not a branch"
    for char in name:
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return "it contains a control character"
        if char in _FORBIDDEN_CHARS:
            return f"it contains {_FORBIDDEN_CHARS[char]}"
    for part, why in (("..", "'..'"), ("@{", "'@{'"), ("//", "'//'")):
        if part in name:
            return f"it contains {why}"
    if name.startswith("/") or name.endswith("/"):
        return "it starts or ends with '/'"
    if name.endswith("."):
        return "it ends with '.'"
    for component in name.split("/"):
        if component.startswith("."):
            return f"a part starts with '.' ({component!r})"
        if component.endswith(".lock"):
            return f"a part ends with '.lock' ({component!r})"
    return None


@dataclass(frozen=True)
class Revision:
    sha: str
    changes: str = ""  # hash of the uncommitted changes; "" for a clean tree

    @property
    def dirty(self) -> bool:
        return bool(self.changes)

    @property
    def tag(self) -> str:
        """The image tag: the sha, plus the changes' hash when the work tree had some."""
        return f"{self.sha}{DIRTY_SUFFIX}-{self.changes}" if self.changes else self.sha


def validate_sha(value: str, flag: str = "--sha") -> str:
    sha = value.strip().lower()
    if not _SHA_RE.match(sha):
        raise ConfigError(
            f"{flag} {value!r}: not a commit id; give 7-40 hexadecimal characters (git rev-parse HEAD)"
        )
    return sha


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def commit_time(root: Path, sha: str) -> datetime | None:
    """When `sha` was committed (UTC), or None without git or the commit."""
    found = _git(root, "show", "-s", "--format=%cI", sha)
    try:
        return datetime.fromisoformat(found).astimezone(UTC) if found else None
    except ValueError:
        return None


def on_branches(root: Path, sha: str, branches: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(the branches whose remote-tracking ref, origin/<branch>, contains `sha`; the branches
    origin does not have, or this clone cannot fetch). Remote-tracking refs only: a job can
    make local branches."""
    containing, missing = [], []
    for branch in branches:
        ref = f"refs/remotes/origin/{branch}"
        # A CI clone of a tag may lack the branches: fetch the one asked about (CI jobs hold no
        # logic of their own, so the tool does it).
        if _git(root, "rev-parse", "--verify", "--quiet", ref) is None:
            _git(root, "fetch", "--quiet", "--no-tags", "origin", f"+refs/heads/{branch}:{ref}")
        if _git(root, "rev-parse", "--verify", "--quiet", ref) is None:
            missing.append(branch)
        elif _git(root, "merge-base", "--is-ancestor", sha, ref) is not None:
            containing.append(branch)
    return containing, missing


def _git_bytes(root: Path, *args: str) -> bytes:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    return proc.stdout if proc.returncode == 0 else b""


def current(
    root: Path,
    environ: Mapping[str, str],
    sha: str | None = None,
    counts: Callable[[str], bool] | None = None,
) -> Revision:
    """The revision to build or deploy: --sha, else CIRCLE_SHA1, else HEAD (+ dirty state).

    `counts` says which root-relative paths go into the image (pipeline/dockerignore.py;
    a path ending in "/" asks whether anything under that directory can): only their
    changes make the tree dirty. Without it, any change to a tracked file does."""
    if sha:
        return Revision(validate_sha(sha))
    if environ.get("CIRCLE_SHA1"):
        return Revision(validate_sha(environ["CIRCLE_SHA1"], "CIRCLE_SHA1"))
    head = _git(root, "rev-parse", "HEAD")
    if head is None:
        raise ConfigError(
            f"{root} is not a git repository with a commit and CIRCLE_SHA1 is not set; "
            "run inside a git checkout, or pass --sha"
        )
    if counts is not None:
        return Revision(head, content_changes(root, counts))
    diff = _git_bytes(root, "diff", "HEAD", "--binary")
    return Revision(head, hashlib.sha256(diff).hexdigest()[:8] if diff else "")


def content_changes(root: Path, counts: Callable[[str], bool]) -> str:
    """The hash of the files `counts` keeps that differ from HEAD (changed, deleted or new),
    over their paths and current content; "" when there are none.

    New files count whether git ignores them or not: Docker's build context is the
    directory after .dockerignore, not the commit, so a changed file in a gitignored
    `vendor/` changes the image and must change the tag."""
    changed = _git_bytes(root, "diff", "HEAD", "--name-only", "--no-renames", "--relative", "-z")
    kept = [p for p in _split(changed) if counts(p)]
    # Untracked files, ignored ones included; whole untracked directories come back as one
    # entry ("vendor/"), walked here only when the image can take something from them.
    for entry in _split(_git_bytes(root, "ls-files", "--others", "--directory", "-z")):
        if not entry.endswith("/"):
            kept += [entry] if counts(entry) else []
        elif counts(entry):  # a directory: could anything under it go in?
            kept += [p for p in _files_under(root, entry) if counts(p)]
    if not kept:
        return ""
    digest = hashlib.sha256()
    for path in sorted(set(kept)):
        file = root / path
        content = file.read_bytes() if file.is_file() else b"\0deleted"
        digest.update(path.encode(errors="surrogateescape") + b"\0" + content + b"\0")
    return digest.hexdigest()[:8]


def _split(listing: bytes) -> list[str]:
    return [p.decode(errors="surrogateescape") for p in listing.split(b"\0") if p]


def _files_under(root: Path, directory: str) -> list[str]:
    base = root / directory
    return sorted(
        path.relative_to(root).as_posix()
        for path in base.rglob("*")
        if path.is_file() or (path.is_symlink() and not path.exists())
    )


def ref(root: Path | None, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(kind, name) of the ref being built: CIRCLE_TAG, CIRCLE_BRANCH, else git (with a root)."""
    if environ.get("CIRCLE_TAG"):
        return ("tag", environ["CIRCLE_TAG"])
    if environ.get("CIRCLE_BRANCH"):
        return ("branch", environ["CIRCLE_BRANCH"])
    if root is None:
        return None
    tag = _git(root, "describe", "--tags", "--exact-match", "HEAD")
    if tag:
        return ("tag", tag)
    branch = _git(root, "symbolic-ref", "--short", "-q", "HEAD")
    return ("branch", branch) if branch else None
