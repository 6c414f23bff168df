"""The environment variables a pipeline reads (the seed's names), each checked with its name."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .project import ECS_NAME_RE
from .settings import DEFAULT_BASE_IMAGE, DEFAULT_REGION

# ECR's own rule for repository names.
_REPO_RE = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")
# IAM's role names without the comma it allows: the role reaches iam:PassRole's resource,
# where "*" would pass any role of the account.
_ROLE_RE = re.compile(r"^(?:arn:aws[a-z-]*:iam::\d{12}:role/(?:[\w+=.@-]+/)*)?[\w+=.@-]{1,64}$", re.ASCII)


@dataclass(frozen=True)
class EnvironValues:
    prefix: str
    prefix_ok: bool  # names derived from a bad prefix are not worth checking
    region: str
    account_id: str | None
    ecr_endpoint: str | None
    repository: str
    execution_role: str
    cluster: str
    base_image: str
    wheelhouse: str  # PIPELINE_WHEELHOUSE: auto, always, never (pipeline/wheelhouse.py)


def read_environ(
    environ: Mapping[str, str], problems: list[str], project_prefix: str = "", need_prefix: bool = True
) -> EnvironValues:
    """The seed's variables, with defaults derived from the prefix; problems appended.

    The prefix is AWS_RESOURCE_NAME_PREFIX, else `prefix` in [tool.pipeline]. A task that
    names no AWS resource (build, test, serve) passes need_prefix=False and runs without."""

    def need(cond: bool, message: str) -> None:
        if not cond:
            problems.append(message)

    from_environ = environ.get("AWS_RESOURCE_NAME_PREFIX", "").strip()
    prefix = from_environ or project_prefix.strip()
    where = "AWS_RESOURCE_NAME_PREFIX" if from_environ else "[tool.pipeline] prefix"
    problems_before_prefix = len(problems)
    if not prefix:
        if need_prefix:
            problems.append(
                '[tool.pipeline] prefix: not set; add prefix = "orders" (`ecs-pipeline init` writes '
                "one) or export AWS_RESOURCE_NAME_PREFIX=orders; it names the ECR repository and ECS resources"
            )
    elif not (2 <= len(prefix) <= 200 and _REPO_RE.match(prefix) and ECS_NAME_RE.match(prefix)):
        problems.append(
            f"{where}: {prefix!r} is not a valid name; use lowercase letters, "
            "digits and single hyphens or underscores (it names the ECR repository and ECS resources)"
        )

    # Derived names are only worth checking when the prefix they derive from is valid.
    prefix_ok = bool(prefix) and len(problems) == problems_before_prefix
    region = environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION") or DEFAULT_REGION
    need(
        bool(_REGION_RE.match(region)),
        f"AWS_DEFAULT_REGION: {region!r} is not an AWS region (e.g. us-east-1)",
    )

    account_id = environ.get("AWS_ACCOUNT_ID") or None
    need(
        account_id is None or bool(_ACCOUNT_RE.match(account_id)),
        f"AWS_ACCOUNT_ID: {account_id!r} must be 12 digits (or unset it to ask STS)",
    )

    ecr_endpoint = environ.get("ECR_ENDPOINT") or None
    if ecr_endpoint and "://" in ecr_endpoint:
        ecr_endpoint = ecr_endpoint.split("://", 1)[1]
    need(
        ecr_endpoint is None or bool(_HOST_RE.match(ecr_endpoint.rstrip("/"))),
        f"ECR_ENDPOINT: {ecr_endpoint!r} must be a registry host such as "
        "123456789012.dkr.ecr.us-east-1.amazonaws.com or 127.0.0.1:5000",
    )
    ecr_endpoint = ecr_endpoint.rstrip("/") if ecr_endpoint else None

    repository = environ.get("ECR_REPOSITORY_NAME") or prefix
    if environ.get("ECR_REPOSITORY_NAME"):
        need(
            bool(_REPO_RE.match(repository)),
            f"ECR_REPOSITORY_NAME: {repository!r} is not a valid ECR repository name",
        )

    execution_role = environ.get("EXECUTION_ROLE_ARN", "")
    need(
        not execution_role or bool(_ROLE_RE.match(execution_role)),
        f"EXECUTION_ROLE_ARN: {execution_role!r} must be an IAM role ARN "
        "(arn:aws:iam::123456789012:role/NAME) or role name; no wildcard or comma",
    )

    wheelhouse = environ.get("PIPELINE_WHEELHOUSE", "").strip().lower() or "auto"
    need(
        wheelhouse in ("auto", "always", "never"),
        f"PIPELINE_WHEELHOUSE: {wheelhouse!r} must be auto (a wheelhouse when builds have no network), "
        "always or never",
    )

    return EnvironValues(
        prefix=prefix,
        prefix_ok=prefix_ok,
        region=region,
        account_id=account_id,
        ecr_endpoint=ecr_endpoint,
        repository=repository,
        execution_role=execution_role,
        cluster=environ.get("ECS_CLUSTER_NAME") or f"{prefix}-cluster",
        base_image=environ.get("BASE_IMAGE") or DEFAULT_BASE_IMAGE,
        wheelhouse=wheelhouse,
    )
