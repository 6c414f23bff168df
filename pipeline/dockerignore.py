"""What goes into the image: the build context after .dockerignore, plus the Dockerfile.

The image tag says `<sha>-dirty-<hash>` only when one of these files differs from the
commit (pipeline/git.py), so editing pyproject.toml, the README or the deploy templates
leaves the tag at the commit's sha: the image is the commit's. Patterns follow Docker's
rules: `*` and `?` stay within a path segment, `**` spans any number of them, a leading
`/` is dropped, a pattern that matches a directory excludes everything under it, `!`
re-includes, and the last matching pattern wins.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IGNORE_FILE = ".dockerignore"


@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern[str]
    include: bool  # a `!` line: matching paths go back in


def parse(text: str) -> list[Pattern]:
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        line = line[1:].strip() if include else line
        cleaned = str(PurePosixPath("/" + line)).lstrip("/")  # Docker cleans the path first
        if cleaned:
            patterns.append(Pattern(re.compile(_regex(cleaned)), include))
    return patterns


def _regex(pattern: str) -> str:
    out, i = ["^"], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end]
                out.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out) + "$"


def excluded(path: str, patterns: list[Pattern]) -> bool:
    """Whether a context-relative path (posix) stays out of the build context."""
    parts = path.split("/")
    # The path itself and every directory above it: excluding a directory excludes its files.
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for pattern in patterns:
        if any(pattern.regex.match(candidate) for candidate in candidates):
            result = not pattern.include
    return result


def in_image(root: Path, context: Path, dockerfile: Path) -> Callable[[str], bool]:
    """A predicate over root-relative paths: does this file go into the image?

    The Dockerfile and .dockerignore always count: one says how the image is made, the
    other which files go in (re-including a file changes the image without changing it).
    A path ending in "/" asks about a directory: can any file under it go into the image?"""
    root, context = root.resolve(), context.resolve()
    ignore_file = context / IGNORE_FILE
    patterns = parse(ignore_file.read_text()) if ignore_file.is_file() else []
    always = {dockerfile.resolve(), ignore_file}
    reincludes = any(p.include for p in patterns)

    def counts(path: str) -> bool:
        if path.endswith("/"):  # a directory: can any file under it go in?
            inside = (root / path).resolve()
            if not (inside.is_relative_to(context) or context.is_relative_to(inside)):
                return dockerfile.resolve().is_relative_to(inside)
            if context.is_relative_to(inside) or reincludes:
                return True
            return not excluded(inside.relative_to(context).as_posix(), patterns)
        # Resolve the directories (the root may sit behind a symlink), not the file itself.
        full = Path((root / path).parent.resolve(), PurePosixPath(path).name)
        if full in always:
            return True
        if not full.is_relative_to(context):
            return False
        return not excluded(full.relative_to(context).as_posix(), patterns)

    return counts
