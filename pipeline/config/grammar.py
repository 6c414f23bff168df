"""Strict grammars for settings that end up in IAM documents (trust subjects, resource ARNs).

A trust policy is text: a value that carries a comma (CloudFormation's list separator),
a quote (the JSON around it), or a wildcard (IAM's StringLike) changes what the policy
admits. So each such setting is checked against the narrowest grammar its real values
need, before anything is rendered, and refused otherwise, naming the setting.
"""

from __future__ import annotations

import re

_HOST = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+"
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}"
# https://host/owner/name[.git], host/owner/name, or git@host:owner/name.git (groups may nest:
# GitLab's group/subgroup/name). No user info, port, query or fragment: CircleCI's vcs-origin
# is host/path and nothing else.
_SOURCE_URL = re.compile(
    rf"^(?:https://)?(?P<host>{_HOST})/(?P<path>{_SEGMENT}(?:/{_SEGMENT}){{1,4}})/?$"
    rf"|^git@(?P<ssh_host>{_HOST}):(?P<ssh_path>{_SEGMENT}(?:/{_SEGMENT}){{1,4}})$"
)
# Branch names the trust policy and the context restriction spell out literally.
_BRANCH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}$")
# Tag and branch suffixes (-prod, -staging, -dev): the trust policy puts "*" before them.
_SUFFIX = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")

SOURCE_URL_RULE = (
    "must be the repository's https URL, e.g. https://github.com/example/service "
    "(letters, digits, '.', '_', '-' in host/owner/name; no comma, quote, wildcard, port or query)"
)
BRANCH_RULE = "may hold only letters, digits, '.', '_', '/', '-' (no comma, quote or wildcard)"
SUFFIX_RULE = "may hold only letters, digits, '.', '_', '-' (no comma, quote, slash or wildcard)"


def source_url_problem(url: str) -> str | None:
    """Why `url` cannot name the repository in a trust policy, or None ("" is no URL: fine here)."""
    if not url:
        return None
    return None if _SOURCE_URL.match(url) else SOURCE_URL_RULE


def branch_problem(name: str) -> str | None:
    return None if _BRANCH.match(name) and ".." not in name else BRANCH_RULE


def suffix_problem(suffix: str) -> str | None:
    return None if _SUFFIX.match(suffix) else SUFFIX_RULE
