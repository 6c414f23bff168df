"""The settings types: one typed object per section, built and validated by `config.load`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..arns import partition
from ..errors import ConfigError
from ..steps import STEP_NAMES

PROJECT_FILE = "pyproject.toml"
DEFAULT_REGION = "us-east-1"  # the seed's `aws configure set default.region us-east-1`
DEFAULT_BASE_IMAGE = "python:3.11-slim"
DEV_REPOSITORY_SUFFIX = "-dev"


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
    migrate_command: str = ""  # "": no migration step before UpdateService


@dataclass(frozen=True)
class SmokeSettings:
    status: int = 200
    text: str = ""  # "" checks the status only
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
    # Steps no plan runs, with why (integration without an integration_command).
    left_out: tuple[tuple[str, str], ...] = ()


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
    # ECS's deployment strategy; the others need the test listener and alternate target
    # group setup makes, and pause at the smoke gate (README "Deployment strategies").
    strategy: str = "ROLLING"
    bake_time_minutes: int = 5  # blue kept after production traffic moved: the instant way back
    step_percent: float = 10.0  # LINEAR: ECS's defaults
    step_bake_time_minutes: int = 6
    canary_percent: float = 5.0  # CANARY: ECS's defaults
    canary_bake_time_minutes: int = 10
    test_port: int = 9000  # the test listener's port on the environment's load balancer
    gate_timeout_minutes: int = 30  # the PAUSE hook's wait for the pipeline's verdict, then ROLLBACK


@dataclass(frozen=True)
class InfraSettings:
    """`[tool.pipeline.infra]`: the project's CloudFormation stacks (pipeline/infra.py)."""

    ci_identity: str = "user"  # oidc (CircleCI's OIDC provider), user (the seed's IAM user), none
    circleci_org_id: str | None = None
    circleci_project_id: str | None = None
    log_retention_days: int = 30
    keep_images: int = 100
    untagged_image_days: int = 14
    dev_image_days: int = 14  # -dev branches' images (their own repository) expire after this
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
    execution_role: str  # EXECUTION_ROLE_ARN (an ARN or a name); "": one per environment, made by setup
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
    wheelhouse: str = "auto"  # PIPELINE_WHEELHOUSE: when dockerize resolves dependencies on the host
    dev_images: bool = False  # `repository` is the dev branches' repository (for_dev_images)

    @property
    def dev_repository(self) -> str:
        """Where the CI jobs of -dev branches push, with a push role of their own: ECR's IAM
        has no condition on the tag, so only a repository of their own keeps a branch job
        from writing a tag that main's pipeline would deploy (README, "Security model")."""
        return self.repository if self.dev_images else f"{self.repository}{DEV_REPOSITORY_SUFFIX}"

    def for_dev_images(self) -> Settings:
        """These settings with the dev branches' repository as the one images go to."""
        return self if self.dev_images else replace(self, repository=self.dev_repository, dev_images=True)

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

    def task_role_name(self, env: str) -> str:
        """The role the service's code runs as in `env`; `invoke setup` creates one per
        environment (pipeline/infra), so staging's code holds none of prod's rights."""
        return f"{self.prefix}-{env}-ecs-task-role"

    def task_role_arn(self, account_id: str, env: str) -> str:
        return f"arn:{partition(self.region)}:iam::{account_id}:role/{self.task_role_name(env)}"

    def infrastructure_role_name(self, env: str) -> str:
        """The role ECS assumes to move `env`'s traffic between its target groups
        (strategies other than ROLLING; pipeline/templates/environment.yaml)."""
        return f"{self.prefix}-{env}-ecs-infrastructure-role"

    def execution_role_name(self, env: str) -> str:
        """`env`'s execution role: EXECUTION_ROLE_ARN's (one role made elsewhere, for every
        environment), else the one `invoke setup` makes for `env`, reading `env`'s secrets only."""
        if self.execution_role:
            return self.execution_role.rsplit("/", 1)[-1]
        return f"{self.prefix}-{env}-ecs-execution-role"

    def execution_role_arn(self, account_id: str, env: str) -> str:
        if self.execution_role.startswith("arn:"):
            return self.execution_role
        return f"arn:{partition(self.region)}:iam::{account_id}:role/{self.execution_role_name(env)}"

    def secrets_path(self, env: str) -> str:
        """Where `env`'s secrets live: SSM /<path>/..., Secrets Manager <path>/..."""
        return f"{self.prefix}/{env}"
