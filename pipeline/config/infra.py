"""`[tool.pipeline.infra]`: where `invoke setup` puts the stacks, checked value by value."""

from __future__ import annotations

import re
from typing import Any

from .project import unknown_keys
from .settings import InfraEnvironment, InfraSettings

# [tool.pipeline.infra]: project-wide keys, and per-environment keys whose values in
# [tool.pipeline.infra] are the defaults for [tool.pipeline.infra.environments.<env>].
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ARN_RE = r"^arn:aws[a-z-]*:{service}:[a-z0-9-]+:\d{{12}}:{resource}$"


def _matches(pattern: str) -> Any:
    compiled = re.compile(pattern)
    return lambda v: isinstance(v, str) and bool(compiled.match(v))


def _ids(pattern: str) -> Any:
    compiled = re.compile(pattern)
    return lambda v: (
        isinstance(v, list) and bool(v) and all(isinstance(i, str) and compiled.match(i) for i in v)
    )


def _int_in(low: int, high: int) -> Any:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


_INFRA_PROJECT_CHECKS: dict[str, tuple[Any, str]] = {
    "ci_identity": (lambda v: v in ("oidc", "user", "none"), 'must be "oidc", "user" or "none"'),
    "circleci_org_id": (
        _matches(_UUID_RE.pattern),
        "must be CircleCI's organization id (a UUID, Organization Settings)",
    ),
    "circleci_project_id": (
        _matches(_UUID_RE.pattern),
        "must be CircleCI's project id (a UUID, Project Settings)",
    ),
    "log_retention_days": (
        lambda v: v in LOG_RETENTION_DAYS,
        f"must be one of CloudWatch's retention periods: {', '.join(map(str, LOG_RETENTION_DAYS))}",
    ),
    "keep_images": (_int_in(1, 10000), "must be a number of images, at least 1"),
    "untagged_image_days": (_int_in(1, 3650), "must be a number of days, at least 1"),
    "immutable_tags": (lambda v: isinstance(v, bool), "must be true or false"),
    "mutable_tags": (
        _matches(r"^[0-9a-zA-Z._*-]{1,128}$"),
        'must be an ECR tag wildcard such as "latest" or "*-dirty"',
    ),
}
_INFRA_ENV_CHECKS: dict[str, tuple[Any, str]] = {
    "vpc_id": (_matches(r"^vpc-[0-9a-f]{8,17}$"), "must be a VPC id (vpc-...)"),
    "subnets": (_ids(r"^subnet-[0-9a-f]{8,17}$"), "must be a non-empty list of subnet ids (subnet-...)"),
    "security_groups": (
        _ids(r"^sg-[0-9a-f]{8,17}$"),
        "must be a non-empty list of security group ids (sg-...)",
    ),
    "assign_public_ip": (lambda v: isinstance(v, bool), "must be true or false"),
    "listener_arn": (
        _matches(
            _ARN_RE.format(service="elasticloadbalancing", resource=r"listener/app/[^/]+/[0-9a-f]+/[0-9a-f]+")
        ),
        "must be an application load balancer listener ARN (arn:aws:elasticloadbalancing:...:listener/app/...)",
    ),
    "rule_priority": (_int_in(1, 50000), "must be a listener rule priority, 1-50000"),
    "domain": (_matches(_DOMAIN_RE.pattern), "must be a DNS name such as hello.example.com"),
    "hosted_zone_id": (
        _matches(r"^[A-Z0-9]{1,32}$"),
        "must be a Route53 hosted zone id such as Z0123456789ABC",
    ),
    "certificate_arn": (
        _matches(_ARN_RE.format(service="acm", resource=r"certificate/[A-Za-z0-9-]+")),
        "must be an ACM certificate ARN (arn:aws:acm:...:certificate/...)",
    ),
    "desired_count": (_int_in(0, 1000), "must be a number of tasks, 0 or more"),
    "health_check_path": (_matches(r"^/[^ ]*$"), "must be a path starting with / (e.g. /hello/health)"),
    "health_check_grace_seconds": (_int_in(0, 2147483647), "must be a number of seconds, 0 or more"),
}


def _infra(table: Any, environments: list[str], problems: list[str]) -> InfraSettings:
    if not isinstance(table, dict):
        problems.append("[tool.pipeline] infra: must be a table")
        return InfraSettings()
    env_tables = table.get("environments", {})
    if not isinstance(env_tables, dict):
        problems.append("[tool.pipeline.infra] environments: must be a table of environments")
        env_tables = {}

    def checked(where: str, given: dict[str, Any], checks: dict[str, tuple[Any, str]]) -> dict[str, Any]:
        values = {}
        for key, value in given.items():
            if key in checks:
                test, rule = checks[key]
                if test(value):
                    values[key] = tuple(value) if isinstance(value, list) else value
                else:
                    problems.append(f"{where} {key}: {value!r} {rule}")
        return values

    known = sorted({*_INFRA_PROJECT_CHECKS, *_INFRA_ENV_CHECKS, "environments"})
    problems += unknown_keys("[tool.pipeline.infra]", table, known)
    project = checked("[tool.pipeline.infra]", table, _INFRA_PROJECT_CHECKS)
    defaults = checked("[tool.pipeline.infra]", table, _INFRA_ENV_CHECKS)

    result: dict[str, InfraEnvironment] = {}
    for name in sorted(set(environments) | set(env_tables)):
        where = f"[tool.pipeline.infra.environments.{name}]"
        given = env_tables.get(name, {})
        if name not in environments:
            problems.append(f"{where}: no such environment; known: {', '.join(environments)}")
            continue
        if not isinstance(given, dict):
            problems.append(f"{where}: must be a table")
            continue
        for key in sorted(set(given) - set(_INFRA_ENV_CHECKS)):
            hint = (
                "a project-wide setting: set it in [tool.pipeline.infra]"
                if key in _INFRA_PROJECT_CHECKS
                else "unknown setting"
            )
            problems.append(f"{where} {key}: {hint}; known here: {', '.join(sorted(_INFRA_ENV_CHECKS))}")
        env = InfraEnvironment(**{**defaults, **checked(where, given, _INFRA_ENV_CHECKS)})
        if env.certificate_arn and not env.domain:
            problems.append(f"{where} certificate_arn: needs a domain to serve it for; set domain")
        if env.hosted_zone_id and not env.domain:
            problems.append(f"{where} hosted_zone_id: needs a domain to point at the service; set domain")
        if env.domain and not env.certificate_arn and not env.listener_arn:
            problems.append(
                f"{where} domain: {env.domain} would be served over plain HTTP; set certificate_arn to an ACM "
                f"certificate for it (aws acm request-certificate --domain-name {env.domain} --validation-method DNS)"
            )
        if env.security_groups and not (env.vpc_id or env.subnets):
            problems.append(f"{where} security_groups: give vpc_id or subnets too (groups belong to one VPC)")
        result[name] = env

    ci_identity = project.get("ci_identity") or ("oidc" if project.get("circleci_org_id") else "user")
    if ci_identity == "oidc":
        for key in ("circleci_org_id", "circleci_project_id"):
            if key not in project and key not in table:
                problems.append(
                    f'[tool.pipeline.infra] {key}: needed for ci_identity = "oidc" '
                    "(CircleCI: Organization Settings → Overview, Project Settings → Overview)"
                )
    if "mutable_tags" in project and not project.get("immutable_tags", True):
        problems.append(
            "[tool.pipeline.infra] mutable_tags: only means something with immutable_tags = true; drop it"
        )
    return InfraSettings(
        **{**{k: v for k, v in project.items() if k != "ci_identity"}, "ci_identity": ci_identity},
        environments=result,
    )
