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
from collections.abc import Mapping
from dataclasses import dataclass
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


def _git_bytes(root: Path, *args: str) -> bytes:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    return proc.stdout if proc.returncode == 0 else b""


def current(root: Path, environ: Mapping[str, str], sha: str | None = None) -> Revision:
    """The revision to build or deploy: --sha, else CIRCLE_SHA1, else HEAD (+ dirty state)."""
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
    diff = _git_bytes(root, "diff", "HEAD", "--binary")
    return Revision(head, hashlib.sha256(diff).hexdigest()[:8] if diff else "")


def ref(root: Path, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(kind, name) of the ref being built: CIRCLE_TAG, CIRCLE_BRANCH, else git."""
    if environ.get("CIRCLE_TAG"):
        return ("tag", environ["CIRCLE_TAG"])
    if environ.get("CIRCLE_BRANCH"):
        return ("branch", environ["CIRCLE_BRANCH"])
    tag = _git(root, "describe", "--tags", "--exact-match", "HEAD")
    if tag:
        return ("tag", tag)
    branch = _git(root, "symbolic-ref", "--short", "-q", "HEAD")
    return ("branch", branch) if branch else None
