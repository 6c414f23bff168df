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


def _tenths_in(low: float, high: float) -> Any:
    """ECS's percentages: multiples of 0.1 within [low, high]."""
    return lambda v: (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and low <= v <= high
        and abs(v * 10 - round(v * 10)) < 1e-9
    )


STRATEGIES = ("ROLLING", "BLUE_GREEN", "LINEAR", "CANARY")
# The strategies each setting means something for (the others ignore it: a mistake).
STRATEGY_SETTINGS = {
    "bake_time_minutes": ("BLUE_GREEN", "LINEAR", "CANARY"),
    "test_port": ("BLUE_GREEN", "LINEAR", "CANARY"),
    "gate_timeout_minutes": ("BLUE_GREEN", "LINEAR", "CANARY"),
    "step_percent": ("LINEAR",),
    "step_bake_time_minutes": ("LINEAR",),
    "canary_percent": ("CANARY",),
    "canary_bake_time_minutes": ("CANARY",),
}
# CloudFormation refuses a canary whose BakeTimeInMinutes + CanaryBakeTimeInMinutes exceed 33 hours.
CANARY_MAX_MINUTES = 33 * 60

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
    "dev_image_days": (_int_in(1, 3650), "must be a number of days, at least 1"),
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
    "strategy": (
        lambda v: v in STRATEGIES,
        f"must be one of ECS's deployment strategies: {', '.join(STRATEGIES)}",
    ),
    # The ranges are ECS's (API reference: DeploymentConfiguration, LinearConfiguration,
    # CanaryConfiguration, DeploymentLifecycleHookTimeoutConfiguration).
    "bake_time_minutes": (_int_in(0, 1440), "must be a number of minutes, 0-1440 (ECS's range)"),
    "step_percent": (
        _tenths_in(3, 100),
        "must be a percentage from 3.0 to 100.0 in steps of 0.1 (ECS's range)",
    ),
    "step_bake_time_minutes": (_int_in(0, 1440), "must be a number of minutes, 0-1440 (ECS's range)"),
    "canary_percent": (
        _tenths_in(0.1, 100),
        "must be a percentage from 0.1 to 100.0 in steps of 0.1 (ECS's range)",
    ),
    "canary_bake_time_minutes": (_int_in(0, 1440), "must be a number of minutes, 0-1440 (ECS's range)"),
    "test_port": (
        lambda v: _int_in(1, 65535)(v) and v not in (80, 443),
        "must be a port, 1-65535, other than the production listeners' 80 and 443",
    ),
    "gate_timeout_minutes": (
        _int_in(1, 20160),
        "must be a number of minutes, 1-20160 (ECS's hook timeout range)",
    ),
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
        problems += _strategy_settings(where, given, env.strategy)
        if env.strategy != "ROLLING" and env.listener_arn:
            problems.append(
                f"{where} strategy: {env.strategy} needs a test listener and its rules on a load balancer "
                "of the environment's own; not yet with a shared listener_arn: drop listener_arn or use ROLLING"
            )
        if (
            env.strategy == "CANARY"
            and env.bake_time_minutes + env.canary_bake_time_minutes > CANARY_MAX_MINUTES
        ):
            problems.append(
                f"{where} canary_bake_time_minutes: with bake_time_minutes the canary takes over 33 hours, "
                "which CloudFormation refuses; shorten either"
            )
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

    # A project-wide strategy setting is a default: a mistake only where no environment uses it.
    used = {env.strategy for env in result.values()} or {defaults.get("strategy", "ROLLING")}
    problems += [
        f"[tool.pipeline.infra] {key}: only means something with strategy = "
        f"{' or '.join(repr(s) for s in uses)}, which no environment uses; drop it or set strategy"
        for key, uses in STRATEGY_SETTINGS.items()
        if key in table and not used & set(uses)
    ]
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


def _strategy_settings(where: str, given: dict[str, Any], strategy: str) -> list[str]:
    """A setting given where its table's strategy never uses it (a linear step on a canary)."""
    if strategy not in STRATEGIES:
        return []  # already named
    return [
        f"{where} {key}: only means something with strategy = {' or '.join(repr(s) for s in uses)} "
        f"(here {strategy!r}); drop it or change strategy"
        for key, uses in STRATEGY_SETTINGS.items()
        if key in given and strategy not in uses
    ]
