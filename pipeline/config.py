"""Settings: one typed object, built from environment variables and the project file.

Environment variables carry the seed's names (AWS_RESOURCE_NAME_PREFIX, ECR_ENDPOINT...);
the project file (`[tool.pipeline]` in the service repository's pyproject.toml) carries
what is not secret and belongs to the project (directories, commands, base path, port,
environments, the CI policy). `load` validates everything at once and raises one
ConfigError listing every problem, each with its name, before any step has side effects.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .plan import ENVIRONMENT_STEPS, ref_problem

PROJECT_FILE = "pyproject.toml"
DEFAULT_REGION = "us-east-1"  # the seed's `aws configure set default.region us-east-1`
DEFAULT_BASE_IMAGE = "python:3.11-slim"

# ECR's own rule for repository names.
_REPO_RE = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# ECS clusters, services, task families and container names.
_ECS_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")
_ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

STEP_NAMES = ("test", "build", "dockerize", "push", "deploy", "integration")


@dataclass(frozen=True)
class Environment:
    """Where one environment runs and how its task definition is made."""

    name: str
    cluster: str
    service: str
    family: str
    container: str
    template: Path
    values: Path


@dataclass(frozen=True)
class SmokeSettings:
    status: int = 200
    text: str = "Hello World!"
    timeout: float = 60.0


@dataclass(frozen=True)
class CIPolicy:
    """The seed's flow, per kind of ref; see pipeline/plan.py."""

    mainline_branches: tuple[str, ...] = ("main", "master")
    mainline_environment: str | None = "prod"
    dev_suffix: str = "-dev"
    tag_environments: tuple[tuple[str, str], ...] = (("-staging", "staging"), ("-prod", "prod"))
    branch_steps: tuple[str, ...] = ("test", "build")
    mainline_steps: tuple[str, ...] = STEP_NAMES
    dev_steps: tuple[str, ...] = ("test", "build", "dockerize", "push")
    tag_steps: tuple[str, ...] = ("deploy", "integration")


@dataclass(frozen=True)
class InfraEnvironment:
    """Where `invoke setup` puts one environment's service and how traffic reaches it."""

    vpc_id: str | None = None  # None: the subnets' VPC, else the account's default VPC
    subnets: tuple[str, ...] = ()  # (): the VPC's default subnets
    security_groups: tuple[str, ...] = ()  # added to the service's own group
    assign_public_ip: bool | None = None  # None: yes in the default VPC (no NAT there)
    listener_arn: str | None = None  # a shared load balancer's listener; None: one per environment
    rule_priority: int | None = None  # None: the stack's current one, else the lowest free
    domain: str | None = None
    hosted_zone_id: str | None = None  # None: found in Route53 from the domain
    certificate_arn: str | None = None
    desired_count: int = 1
    health_check_path: str | None = None  # None: <base_path>health
    health_check_grace_seconds: int = 60


@dataclass(frozen=True)
class InfraSettings:
    """`[tool.pipeline.infra]`: the project's CloudFormation stacks (pipeline/infra.py)."""

    ci_identity: str = "user"  # oidc (CircleCI's OIDC provider), user (the seed's IAM user), none
    circleci_org_id: str | None = None
    circleci_project_id: str | None = None
    log_retention_days: int = 30
    keep_images: int = 100
    untagged_image_days: int = 14
    immutable_tags: bool = True
    mutable_tags: str | None = None  # a wildcard of tags that may move despite immutability
    environments: Mapping[str, InfraEnvironment] = field(default_factory=dict)

    def environment(self, name: str) -> InfraEnvironment:
        return self.environments.get(name, InfraEnvironment())


@dataclass(frozen=True)
class Settings:
    root: Path
    prefix: str
    region: str
    account_id: str | None
    ecr_endpoint: str | None
    repository: str
    execution_role: str
    service_dir: Path
    dockerfile: Path
    docker_target: str
    build_command: str
    test_command: str
    integration_command: str
    serve_command: str
    base_path: str
    container_port: int
    source_url: str
    base_image: str
    log_group: str
    environments: Mapping[str, Environment]
    smoke: SmokeSettings = field(default_factory=SmokeSettings)
    ci: CIPolicy = field(default_factory=CIPolicy)
    infra: InfraSettings = field(default_factory=InfraSettings)
    pass_env: tuple[str, ...] = ()  # variables the service's commands get despite service_env

    def environment(self, name: str) -> Environment:
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments))
            raise ConfigError(
                f"--env {name}: unknown environment; choose one of: {known} "
                f"(or add [tool.pipeline.environments.{name}] to {PROJECT_FILE})"
            ) from None

    def registry(self, account_id: str) -> str:
        return self.ecr_endpoint or f"{account_id}.dkr.ecr.{self.region}.amazonaws.com"

    def execution_role_arn(self, account_id: str) -> str:
        if self.execution_role.startswith("arn:"):
            return self.execution_role
        return f"arn:aws:iam::{account_id}:role/{self.execution_role}"


# What the project file may hold, with defaults. Unknown keys are errors: a typo
# must not silently fall back to a default.
_PROJECT_DEFAULTS: dict[str, Any] = {
    "service_dir": "hello_world",
    "dockerfile": None,  # <service_dir>/Dockerfile
    "docker_target": "",  # a multi-stage Dockerfile's stage to build; "" = the last one
    "build_command": "python -m compileall -q hello_world",
    "test_command": "python -m pytest -q hello_world/tests",
    "integration_command": "python -m pytest -q hello_world/integration",
    "serve_command": "python -m hello_world.app",  # `invoke serve`: the service without Docker
    "base_path": "/hello/",
    "container_port": 8080,
    "source_url": "",
    "log_group": None,  # /ecs/<prefix>
    "environments": {},
    "smoke": {},
    "ci": {},
    "infra": {},
    "pass_env": [],
}
_ENV_KEYS = {"cluster", "service", "family", "container", "template", "values"}


def read_project_file(root: Path) -> dict[str, Any]:
    """The `[tool.pipeline]` table of the project file, or {} when there is none."""
    path = root / PROJECT_FILE
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file") from None
    section = data.get("tool", {}).get("pipeline", {})
    return section if isinstance(section, dict) else {}


def load(environ: Mapping[str, str], root: Path, project: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from the environment and the project file; every problem at once."""
    project = read_project_file(root) if project is None else project
    problems: list[str] = []

    def need(cond: bool, message: str) -> None:
        if not cond:
            problems.append(message)

    unknown = sorted(set(project) - set(_PROJECT_DEFAULTS))
    for key in unknown:
        problems.append(
            f"[tool.pipeline] {key}: unknown setting; known: {', '.join(sorted(_PROJECT_DEFAULTS))}"
        )
    cfg = {**_PROJECT_DEFAULTS, **{k: v for k, v in project.items() if k in _PROJECT_DEFAULTS}}

    prefix = environ.get("AWS_RESOURCE_NAME_PREFIX", "").strip()
    problems_before_prefix = len(problems)
    if not prefix:
        problems.append(
            "AWS_RESOURCE_NAME_PREFIX: must be set (e.g. export AWS_RESOURCE_NAME_PREFIX=hello-world)"
        )
    elif not (2 <= len(prefix) <= 200 and _REPO_RE.match(prefix) and _ECS_NAME_RE.match(prefix)):
        problems.append(
            f"AWS_RESOURCE_NAME_PREFIX: {prefix!r} is not a valid name; use lowercase letters, "
            "digits and single hyphens or underscores (it names the ECR repository and ECS resources)"
        )

    # Derived names are only worth checking when the prefix they derive from is valid.
    prefix_ok = len(problems) == problems_before_prefix
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

    base_path = str(cfg["base_path"])
    need(
        base_path.startswith("/") and base_path.endswith("/") and " " not in base_path,
        f"[tool.pipeline] base_path: {base_path!r} must start and end with '/' (e.g. /hello/)",
    )
    port = cfg["container_port"]
    need(
        isinstance(port, int) and 1 <= port <= 65535,
        f"[tool.pipeline] container_port: {port!r} must be a port number 1-65535",
    )
    for key in ("build_command", "test_command", "integration_command", "serve_command"):
        need(
            isinstance(cfg[key], str) and bool(cfg[key].strip()),
            f"[tool.pipeline] {key}: must be a non-empty command",
        )

    pass_env = cfg["pass_env"]
    need(
        isinstance(pass_env, list) and all(isinstance(v, str) and _VAR_RE.match(v) for v in pass_env),
        f"[tool.pipeline] pass_env: {pass_env!r} must be a list of environment variable names",
    )

    service_dir = root / str(cfg["service_dir"])
    need(service_dir.is_dir(), f"[tool.pipeline] service_dir: {service_dir} is not a directory")
    dockerfile = root / str(cfg["dockerfile"]) if cfg["dockerfile"] else service_dir / "Dockerfile"

    smoke = _smoke(cfg["smoke"], problems)

    cluster = environ.get("ECS_CLUSTER_NAME") or f"{prefix}-cluster"
    environments = _environments(
        cfg["environments"], environ, prefix_ok, prefix, cluster, service_dir, problems
    )
    ci = _ci_policy(cfg["ci"], _environment_names(cfg["environments"]), problems)
    infra = _infra(cfg["infra"], _environment_names(cfg["environments"]), problems)

    if problems:
        raise ConfigError(problems)
    return Settings(
        root=root,
        prefix=prefix,
        region=region,
        account_id=account_id,
        ecr_endpoint=ecr_endpoint,
        repository=repository,
        execution_role=environ.get("EXECUTION_ROLE_ARN") or f"{prefix}-ecs-execution-role",
        service_dir=service_dir,
        dockerfile=dockerfile,
        docker_target=str(cfg["docker_target"]),
        build_command=cfg["build_command"],
        test_command=cfg["test_command"],
        integration_command=cfg["integration_command"],
        serve_command=cfg["serve_command"],
        base_path=base_path,
        container_port=port,
        source_url=str(cfg["source_url"]),
        base_image=environ.get("BASE_IMAGE") or DEFAULT_BASE_IMAGE,
        log_group=str(cfg["log_group"] or f"/ecs/{prefix}"),
        environments=environments,
        smoke=smoke,
        ci=ci,
        infra=infra,
        pass_env=tuple(pass_env),
    )


def _environments(
    table: Any,
    environ: Mapping[str, str],
    prefix_ok: bool,
    prefix: str,
    cluster: str,
    service_dir: Path,
    problems: list[str],
) -> dict[str, Environment]:
    """prod keeps the seed's names; staging shares the cluster with its own service.

    The seed's variables (ECS_SERVICE_NAME, ECS_TASK_FAMILY_NAME,
    ECS_CONTAINER_DEFINITION_NAME) override prod, the seed's only service.
    """
    if not isinstance(table, dict):
        problems.append("[tool.pipeline] environments: must be a table of environments")
        table = {}
    defaults: dict[str, dict[str, str]] = {
        "prod": {
            "service": environ.get("ECS_SERVICE_NAME") or f"{prefix}-service",
            "family": environ.get("ECS_TASK_FAMILY_NAME") or f"{prefix}-service",
            "container": environ.get("ECS_CONTAINER_DEFINITION_NAME") or f"{prefix}-service",
        },
        "staging": {
            "service": f"{prefix}-staging-service",
            "family": f"{prefix}-staging-service",
            "container": environ.get("ECS_CONTAINER_DEFINITION_NAME") or f"{prefix}-service",
        },
    }
    result: dict[str, Environment] = {}
    for name in _environment_names(table):
        given = table.get(name, {})
        if not _ENV_NAME_RE.match(name):
            problems.append(f"[tool.pipeline.environments] {name!r}: use lowercase letters, digits, hyphens")
            continue
        if not isinstance(given, dict):
            problems.append(f"[tool.pipeline.environments.{name}]: must be a table")
            continue
        for key in sorted(set(given) - _ENV_KEYS):
            problems.append(
                f"[tool.pipeline.environments.{name}] {key}: unknown setting; known: {', '.join(sorted(_ENV_KEYS))}"
            )
        base = defaults.get(
            name,
            {k: f"{prefix}-{name}-service" for k in ("service", "family")}
            | {"container": f"{prefix}-service"},
        )
        values = {**base, "cluster": cluster, **{k: str(v) for k, v in given.items() if k in _ENV_KEYS}}
        for key in ("cluster", "service", "family", "container"):
            if prefix_ok and not _ECS_NAME_RE.match(values[key]):
                problems.append(f"environment {name} {key}: {values[key]!r} is not a valid ECS name")
        template = service_dir / "deploy" / "taskdef.json"
        result[name] = Environment(
            name=name,
            cluster=values["cluster"],
            service=values["service"],
            family=values["family"],
            container=values["container"],
            template=service_dir.parent / values["template"] if "template" in given else template,
            values=service_dir.parent / values["values"]
            if "values" in given
            else service_dir / "deploy" / f"{name}.json",
        )
    return result


def _smoke(table: Any, problems: list[str]) -> SmokeSettings:
    if not isinstance(table, dict):
        problems.append("[tool.pipeline] smoke: must be a table")
        return SmokeSettings()
    for key in sorted(set(table) - {"status", "text", "timeout"}):
        problems.append(f"[tool.pipeline.smoke] {key}: unknown setting; known: status, text, timeout")
    smoke = SmokeSettings(**{k: v for k, v in table.items() if k in {"status", "text", "timeout"}})
    if not (isinstance(smoke.status, int) and 100 <= smoke.status <= 599):
        problems.append(f"[tool.pipeline.smoke] status: {smoke.status!r} must be an HTTP status")
    if not (isinstance(smoke.timeout, int | float) and smoke.timeout > 0):
        problems.append(
            f"[tool.pipeline.smoke] timeout: {smoke.timeout!r} must be a positive number of seconds"
        )
    return smoke


def load_policy(root: Path, project: Mapping[str, Any] | None = None) -> CIPolicy:
    """Only the CI policy (for `invoke plan`): needs no AWS settings, checks the same rules."""
    project = read_project_file(root) if project is None else project
    problems: list[str] = []
    ci = _ci_policy(project.get("ci", {}), _environment_names(project.get("environments", {})), problems)
    if problems:
        raise ConfigError(problems)
    return ci


def _environment_names(table: Any) -> list[str]:
    """prod and staging always exist (with the seed's names); the project file may add more."""
    return sorted({"prod", "staging", *(table if isinstance(table, dict) else {})})


_CI_KEYS = (
    "mainline_branches",
    "mainline_environment",
    "dev_suffix",
    "tag_environments",
    "branch_steps",
    "mainline_steps",
    "dev_steps",
    "tag_steps",
)


def _ci_policy(table: Any, environments: list[str], problems: list[str]) -> CIPolicy:
    if not isinstance(table, dict):
        problems.append("[tool.pipeline] ci: must be a table")
        return CIPolicy()
    for key in sorted(set(table) - set(_CI_KEYS)):
        problems.append(f"[tool.pipeline.ci] {key}: unknown setting; known: {', '.join(sorted(_CI_KEYS))}")
    kwargs: dict[str, Any] = {}
    for key in ("mainline_branches", "branch_steps", "mainline_steps", "dev_steps", "tag_steps"):
        if key in table:
            value = table[key]
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                problems.append(f"[tool.pipeline.ci] {key}: must be a list of strings")
                continue
            if key.endswith("_steps"):
                for step in value:
                    if step not in STEP_NAMES:
                        problems.append(
                            f"[tool.pipeline.ci] {key}: unknown step {step!r}; steps are: {', '.join(STEP_NAMES)}"
                        )
                # Steps always run in the pipeline's order, whatever order the file lists.
                value = sorted(set(value) & set(STEP_NAMES), key=STEP_NAMES.index)
            else:
                for branch in value:
                    why = ref_problem(branch, "branch")
                    if why:
                        problems.append(f"[tool.pipeline.ci] {key}: {branch!r} is not a branch name ({why})")
            kwargs[key] = tuple(value)
    for key in ("mainline_environment", "dev_suffix"):
        if key in table and not isinstance(table[key], str):
            problems.append(f'[tool.pipeline.ci] {key}: must be a string ("" for none)')
        elif key in table:
            kwargs[key] = table[key] or (None if key == "mainline_environment" else "")
    if "tag_environments" in table:
        value = table["tag_environments"]
        if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            problems.append(
                '[tool.pipeline.ci] tag_environments: must map a tag suffix to an environment, e.g. {"-prod" = "prod"}'
            )
        else:
            kwargs["tag_environments"] = tuple(value.items())
    ci = CIPolicy(**kwargs)

    named = [("mainline_environment", ci.mainline_environment)]
    named += [(f"tag_environments {suffix!r}", env) for suffix, env in ci.tag_environments]
    for key, env in named:
        if env is not None and env not in environments:
            problems.append(
                f"[tool.pipeline.ci] {key}: {env!r} is not an environment; known: {', '.join(environments)} "
                f"(or add [tool.pipeline.environments.{env}])"
            )
    # A step that deploys or tests a deployment needs an environment to act on.
    homeless = {
        "branch_steps": ci.branch_steps,
        "dev_steps": ci.dev_steps,
        "mainline_steps": ci.mainline_steps if ci.mainline_environment is None else (),
    }
    for key, steps in homeless.items():
        for step in sorted(ENVIRONMENT_STEPS & set(steps)):
            problems.append(
                f"[tool.pipeline.ci] {key}: {step!r} needs an environment and these builds have none; "
                "deploy from mainline_steps (with mainline_environment) or tag_steps"
            )
    # Build once, deploy many: a tag deploys the image its commit's branch build pushed.
    for step in ("dockerize", "push"):
        if step in ci.tag_steps:
            problems.append(
                f"[tool.pipeline.ci] tag_steps: {step!r} would rebuild the commit's image; tags deploy "
                "the image a mainline or dev-branch build pushed (build once, deploy many)"
            )
    return ci


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
    for key in sorted(set(table) - set(known)):
        problems.append(f"[tool.pipeline.infra] {key}: unknown setting; known: {', '.join(known)}")
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
