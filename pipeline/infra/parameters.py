"""Each stack's template, parameters and tags from the settings and the gathered facts (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from .. import ci_identity
from ..config import Environment, Settings
from .facts import Facts
from .names import (
    TAG_PREFIX,
    TAG_STACK,
    ci_dev_name,
    ci_name,
    environment_stack_name,
    path_patterns,
    project_stack_name,
)

PROJECT_TEMPLATE = "project.yaml"


ENVIRONMENT_TEMPLATE = "environment.yaml"


# The first revision only has to start the service; the deploy's template sets the real size.
BOOTSTRAP_CPU, BOOTSTRAP_MEMORY = "256", "512"


@dataclass(frozen=True)
class StackRequest:
    """One stack as setup wants it: template, parameters, tags."""

    name: str
    template: str
    parameters: Mapping[str, str]
    tags: Mapping[str, str]


def project_parameters(settings: Settings, facts: Facts) -> dict[str, str]:
    infra = settings.infra
    region, account, part = settings.region, facts.account_id, facts.partition
    if not infra.immutable_tags:
        mutability = "MUTABLE"
    else:
        mutability = "IMMUTABLE_WITH_EXCLUSION" if infra.mutable_tags else "IMMUTABLE"
    # CI may deploy every environment that runs in this project's cluster, and nothing else.
    envs = sorted(
        (e for e in settings.environments.values() if e.cluster == facts.cluster), key=lambda e: e.name
    )
    dev_images = bool(ci_identity.dev_push_refs(settings.ci))
    return {
        "Prefix": settings.prefix,
        "RepositoryName": settings.repository,
        "CreateRepository": str(facts.create_repository).lower(),
        "ImageTagMutability": mutability,
        "MutableTagPattern": infra.mutable_tags or "latest",
        "KeepImages": str(infra.keep_images),
        "UntaggedImageDays": str(infra.untagged_image_days),
        "ClusterName": facts.cluster,
        "LogGroupName": settings.log_group,
        "LogRetentionDays": str(infra.log_retention_days),
        "CiIdentity": infra.ci_identity,
        "CiRoleName": ci_name(settings),
        "CircleCiOrgId": infra.circleci_org_id or "",
        "OidcProviderArn": facts.oidc_provider_arn,
        "CiPushSubjects": ",".join(
            ci_identity.role_subjects(settings, ci_identity.push_refs(settings.ci), "push role")
        ),
        "DevRepositoryName": settings.dev_repository if dev_images else "",
        "DevImageDays": str(infra.dev_image_days),
        "CiDevRoleName": ci_dev_name(settings),
        "CiDevPushSubjects": ",".join(
            ci_identity.role_subjects(settings, ci_identity.dev_push_refs(settings.ci), "dev push role")
        ),
        "CiServiceArns": ",".join(
            f"arn:{part}:ecs:{region}:{account}:service/{e.cluster}/{e.service}" for e in envs
        ),
        "CiTaskDefinitionArns": ",".join(
            f"arn:{part}:ecs:{region}:{account}:task-definition/{family}:*"
            for family in sorted({e.family for e in envs})
        ),
        "CiPassRoleArns": ",".join(
            sorted(
                {settings.execution_role_arn(account, e.name) for e in envs}
                | {settings.task_role_arn(account, e.name) for e in envs}
            )
        ),
    }


def environment_parameters(settings: Settings, env: Environment, facts: Facts) -> dict[str, str]:
    infra = settings.infra.environment(env.name)
    network, listener = facts.network, facts.listener
    if network is None:
        raise ValueError("environment_parameters needs the facts of an environment")
    return {
        "Prefix": settings.prefix,
        "EnvironmentName": env.name,
        "ClusterName": env.cluster,
        "ServiceName": env.service,
        "Family": env.family,
        "ContainerName": env.container,
        "ContainerPort": str(settings.container_port),
        "BasePath": settings.base_path,
        "PathPatterns": ",".join(path_patterns(settings.base_path)),
        "HealthCheckPath": infra.health_check_path or f"{settings.base_path}health",
        "HealthCheckGraceSeconds": str(infra.health_check_grace_seconds),
        "Image": facts.image,
        "Cpu": BOOTSTRAP_CPU,
        "Memory": BOOTSTRAP_MEMORY,
        "DesiredCount": str(infra.desired_count),
        "ExecutionRoleName": settings.execution_role_name(env.name),
        "ExistingExecutionRoleArn": (
            settings.execution_role_arn(facts.account_id, env.name) if settings.execution_role else ""
        ),
        "TaskRoleName": settings.task_role_name(env.name),
        "SecretsPath": settings.secrets_path(env.name),
        "LogGroupName": settings.log_group,
        "LiveTaskDefinition": facts.live_task_definition,
        "VpcId": network.vpc_id,
        "Subnets": ",".join(network.subnets),
        "ExtraSecurityGroups": ",".join(network.security_groups),
        "AssignPublicIp": "ENABLED" if network.assign_public_ip else "DISABLED",
        "ListenerArn": listener.arn if listener else "",
        "SharedAlbSecurityGroup": listener.security_group if listener else "",
        "SharedAlbDnsName": listener.dns_name if listener else "",
        "SharedAlbHostedZoneId": listener.hosted_zone_id if listener else "",
        "RulePriority": str(facts.rule_priority),
        "CertificateArn": infra.certificate_arn or "",
        "DomainName": infra.domain or "",
        "HostedZoneId": facts.hosted_zone_id,
        **ci_identity.deploy_role_parameters(settings, env.name),
        **strategy_parameters(settings, env),
    }


def strategy_parameters(settings: Settings, env: Environment) -> dict[str, str]:
    """The deployment strategy's parameters; the template uses those its strategy needs."""
    infra = settings.infra.environment(env.name)
    return {
        "Strategy": infra.strategy,
        "BakeTimeMinutes": str(infra.bake_time_minutes),
        "StepPercent": f"{infra.step_percent:g}",
        "StepBakeTimeMinutes": str(infra.step_bake_time_minutes),
        "CanaryPercent": f"{infra.canary_percent:g}",
        "CanaryBakeTimeMinutes": str(infra.canary_bake_time_minutes),
        "TestPort": str(infra.test_port),
        "GateTimeoutMinutes": str(infra.gate_timeout_minutes),
        "InfrastructureRoleName": settings.infrastructure_role_name(env.name),
    }


def stack_requests(settings: Settings, env_name: str | None, facts: Facts) -> list[StackRequest]:
    """The project stack, then the environment's."""
    requests = [
        StackRequest(
            project_stack_name(settings),
            PROJECT_TEMPLATE,
            project_parameters(settings, facts),
            {TAG_PREFIX: settings.prefix, TAG_STACK: "project"},
        )
    ]
    if env_name:
        requests.append(
            StackRequest(
                environment_stack_name(settings, env_name),
                ENVIRONMENT_TEMPLATE,
                environment_parameters(settings, settings.environment(env_name), facts),
                {TAG_PREFIX: settings.prefix, TAG_STACK: env_name},
            )
        )
    return requests


def template_body(name: str) -> str:
    return (resources.files("pipeline") / "templates" / name).read_text()
