"""Per-project infrastructure as code: `invoke setup` and `invoke teardown` with CloudFormation.

Two kinds of stack, from the templates in pipeline/templates/:

  <prefix>-project  what every environment shares: ECR repository, ECS cluster, log group,
                    execution and task roles, the CI identity and its policy
  <prefix>-<env>    one environment: the ECS service, its target group and listener rule,
                    a load balancer of its own unless a shared listener is configured, DNS

Decide, then act: `gather` makes every lookup (read-only) and check, so bad input stops
before anything changes; pure functions turn settings and those facts into each stack's
parameters; `apply` runs one change set: create, print, execute, wait with the stack's
events, print the outputs.

Who owns the service's task definition: the deploy. The stack registers a first
revision only to create the service with (BootstrapTaskDefinition). Every later setup
passes the revision the service runs at that moment (LiveTaskDefinition), so CloudFormation
never sets the service back to an older revision than the last deploy.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TextIO

from . import ecr
from .arns import partition
from .clients import Clients, aws_errors
from .config import Environment, InfraEnvironment, Settings
from .context import Context
from .errors import ConfigError, NotFound, StepFailed, Unavailable

PROJECT_TEMPLATE = "project.yaml"
ENVIRONMENT_TEMPLATE = "environment.yaml"
TAG_PREFIX = "ecs-pipeline:prefix"
TAG_STACK = "ecs-pipeline:stack"
# The first revision only has to start the service; the deploy's template sets the real size.
BOOTSTRAP_CPU, BOOTSTRAP_MEMORY = "256", "512"
POLL_SECONDS = 5.0
# CloudFormation's two ways of saying a change set would change nothing.
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE", "IMPORT_COMPLETE"}
_STACK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
_IAM_NAME_MAX = 64

Sleep = Callable[[float], None]


# --- names ----------------------------------------------------------------------


def project_stack_name(settings: Settings) -> str:
    return f"{settings.prefix.replace('_', '-')}-project"


def environment_stack_name(settings: Settings, env_name: str) -> str:
    return f"{settings.prefix.replace('_', '-')}-{env_name}"


def task_role_name(settings: Settings) -> str:
    return f"{settings.prefix}-ecs-task-role"


def ci_name(settings: Settings) -> str:
    """The CI role (or user) and its policy."""
    return f"{settings.prefix}-ci"


def path_patterns(base_path: str) -> list[str]:
    """The listener rule's paths: the base path itself and everything under it."""
    stem = base_path.rstrip("/")
    return [stem, f"{stem}/*"] if stem else ["/*"]


def name_problems(settings: Settings) -> list[str]:
    """Names CloudFormation or IAM would refuse, found before anything is asked of AWS."""
    problems = []
    stacks = [project_stack_name(settings)] + [
        environment_stack_name(settings, n) for n in settings.environments
    ]
    for stack in stacks:
        if not _STACK_NAME_RE.match(stack):
            problems.append(
                f"AWS_RESOURCE_NAME_PREFIX: {settings.prefix!r} makes the stack name {stack!r}, which "
                "CloudFormation refuses (a letter first, then letters, digits, hyphens; 128 at most)"
            )
            break
    if "project" in settings.environments:
        problems.append(
            "[tool.pipeline.environments] project: that name is taken by the project stack "
            f"({project_stack_name(settings)}); rename the environment"
        )
    roles = [task_role_name(settings), ci_name(settings)]
    if not settings.execution_role.startswith("arn:"):
        roles.append(settings.execution_role)
    for role in roles:
        if len(role) > _IAM_NAME_MAX:
            problems.append(
                f"IAM name {role!r} is longer than IAM's {_IAM_NAME_MAX} characters; "
                "use a shorter AWS_RESOURCE_NAME_PREFIX"
            )
    return problems


# --- what AWS holds now ------------------------------------------------------------


@dataclass(frozen=True)
class StackState:
    """One stack as CloudFormation describes it; status None: there is no such stack."""

    name: str
    stack_id: str | None = None
    status: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, str] = field(default_factory=dict)  # logical id -> physical id

    @property
    def exists(self) -> bool:
        """Created (maybe failed); a stack still in review holds nothing yet."""
        return self.status not in (None, "REVIEW_IN_PROGRESS")


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: bool


@dataclass(frozen=True)
class ListenerRule:
    arn: str
    priority: int | None  # None: the listener's default rule
    paths: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class SharedListener:
    arn: str
    security_group: str
    dns_name: str
    hosted_zone_id: str
    rules: tuple[ListenerRule, ...]


@dataclass(frozen=True)
class Facts:
    """Everything setup looked up and checked, before it changes anything."""

    account_id: str
    partition: str
    registry: str
    cluster: str
    project: StackState
    create_repository: bool
    oidc_provider_arn: str  # "": the project stack creates CircleCI's provider
    environment: StackState | None = None
    network: Network | None = None
    listener: SharedListener | None = None
    rule_priority: int = 1
    hosted_zone_id: str = ""
    live_task_definition: str = ""  # "": the service does not exist yet
    image: str = ""  # the first revision's image, when the service is created
    notes: tuple[str, ...] = ()


def describe_stack(clients: Clients, name: str) -> StackState:
    cfn = clients.aws("cloudformation")
    with aws_errors("cloudformation:DescribeStacks", handled=("ValidationError",)):
        try:
            stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        except cfn.exceptions.ClientError as exc:
            error = exc.response["Error"]
            if error["Code"] != "ValidationError":
                raise
            if "does not exist" in error.get("Message", ""):
                return StackState(name)
            raise Unavailable(
                f"cloudformation:DescribeStacks {name} failed: {error.get('Message')}"
            ) from None
    physical: dict[str, str] = {}
    if stack["StackStatus"] != "REVIEW_IN_PROGRESS":
        with aws_errors("cloudformation:ListStackResources"):
            for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack["StackId"]):
                for item in page["StackResourceSummaries"]:
                    physical[item["LogicalResourceId"]] = item.get("PhysicalResourceId", "")
    return StackState(
        name=name,
        stack_id=stack["StackId"],
        status=stack["StackStatus"],
        parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])},
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []},
        tags={t["Key"]: t["Value"] for t in stack.get("Tags", [])},
        resources=physical,
    )


def check_stack(settings: Settings, state: StackState) -> None:
    """Refuse stacks that are not this project's, or that another run is changing now."""
    if state.status is None:
        return
    owner = state.tags.get(TAG_PREFIX)
    if owner != settings.prefix:
        raise ConfigError(
            f"stack {state.name} exists but was not made by `invoke setup` for prefix {settings.prefix!r} "
            f"(its {TAG_PREFIX} tag: {owner!r}); use another AWS_RESOURCE_NAME_PREFIX or remove that stack"
        )
    if state.status.endswith("_IN_PROGRESS") and state.status != "REVIEW_IN_PROGRESS":
        raise Unavailable(
            f"stack {state.name} is busy ({state.status}): another setup or teardown is running; "
            "wait for it and try again"
        )


def project_cluster(settings: Settings, env_name: str | None, project: StackState) -> str:
    """The project stack's cluster: the environment's, and the same for every environment."""
    held = project.parameters.get("ClusterName") if project.exists else None
    if env_name is None:
        clusters = {e.cluster for e in settings.environments.values()}
        if held:
            return held
        if len(clusters) == 1:
            return clusters.pop()
        listed = ", ".join(f"{e.name}: {e.cluster}" for e in settings.environments.values())
        raise ConfigError(
            f"environments use different clusters ({listed}); run `invoke setup --env ENV`: "
            "the project stack takes that environment's cluster"
        )
    cluster = settings.environment(env_name).cluster
    if held and held != cluster:
        raise ConfigError(
            f"environment {env_name} uses cluster {cluster} but the project stack {project.name} holds "
            f"cluster {held}: environments in one account share the project's cluster; give them the same "
            "cluster (ECS_CLUSTER_NAME, or `cluster` in [tool.pipeline.environments.*])"
        )
    return cluster


def choose_priority(
    rules: Iterable[ListenerRule], ours: str | None, configured: int | None, current: int | None
) -> int:
    """A listener rule priority no other rule holds: configured, else the stack's own, else the lowest free."""
    taken = {r.priority: r.arn for r in rules if r.priority is not None and r.arn != ours}
    free = next(p for p in range(1, 50001) if p not in taken)
    if configured is not None:
        if configured in taken:
            raise ConfigError(
                f"rule_priority {configured}: another rule on the shared listener holds it ({taken[configured]}); "
                f"choose a free one, e.g. {free}"
            )
        return configured
    if current is not None and current not in taken:
        return current
    return free


def conflicting_rule(
    rules: Iterable[ListenerRule], ours: str | None, paths: Sequence[str], host: str | None
) -> ListenerRule | None:
    """Another rule matching the same paths for the same hosts: one of the two would never see traffic."""
    hosts = {host} if host else set()
    for rule in rules:
        if rule.arn == ours or rule.priority is None or not set(rule.paths) & set(paths):
            continue
        if not rule.hosts or not hosts or set(rule.hosts) & hosts:
            return rule
    return None


# EC2 lookups by id: (API call, response key, id argument, the error code for an unknown id).
_EC2_LOOKUPS = {
    "vpc_id": ("DescribeVpcs", "describe_vpcs", "Vpcs", "VpcIds", "InvalidVpcID.NotFound"),
    "subnets": ("DescribeSubnets", "describe_subnets", "Subnets", "SubnetIds", "InvalidSubnetID.NotFound"),
    "security_groups": (
        "DescribeSecurityGroups",
        "describe_security_groups",
        "SecurityGroups",
        "GroupIds",
        "InvalidGroup.NotFound",
    ),
}


def _ec2_ids(ec2: Any, setting: str, ids: Sequence[str], where: str) -> list[dict[str, Any]]:
    """What EC2 holds for a setting's ids; an id it does not know is the setting's problem."""
    action, call, key, argument, missing = _EC2_LOOKUPS[setting]
    with aws_errors(f"ec2:{action}", handled=(missing,)):
        try:
            return list(getattr(ec2, call)(**{argument: list(ids)})[key])
        except ec2.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != missing:
                raise
            message = exc.response["Error"].get("Message", "").rstrip(".")
            raise ConfigError(
                f"{where} {setting}: {message} (in this account and region); check the ids"
            ) from None


def _network(clients: Clients, infra: InfraEnvironment, where: str, own_alb: bool) -> Network:
    ec2 = clients.aws("ec2")
    vpc_id = infra.vpc_id
    if infra.subnets:
        subnets = _ec2_ids(ec2, "subnets", infra.subnets, where)
        vpcs = {s["VpcId"] for s in subnets}
        vpc_id = vpc_id or (vpcs.pop() if len(vpcs) == 1 else None)
        if vpc_id is None or any(s["VpcId"] != vpc_id for s in subnets):
            listed = ", ".join(f"{s['SubnetId']} in {s['VpcId']}" for s in subnets)
            raise ConfigError(
                f"{where} subnets: all must be in one VPC, {vpc_id or 'the same'}; got {listed}"
            )
    if vpc_id:
        vpc = _ec2_ids(ec2, "vpc_id", [vpc_id], where)[0]
    else:
        with aws_errors("ec2:DescribeVpcs"):
            found = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not found:
            raise ConfigError(
                f"{where}: this region has no default VPC; set vpc_id and subnets in [tool.pipeline.infra]"
            )
        vpc = found[0]
    vpc_id = vpc["VpcId"]
    if not infra.subnets:
        with aws_errors("ec2:DescribeSubnets"):
            subnets = ec2.describe_subnets(
                Filters=[
                    {"Name": "vpc-id", "Values": [vpc_id]},
                    {"Name": "default-for-az", "Values": ["true"]},
                ]
            )["Subnets"]
        if not subnets:
            raise ConfigError(
                f"{where} subnets: VPC {vpc_id} has no default subnets; list the subnets to use"
            )
    zones = {s["AvailabilityZone"] for s in subnets}
    if own_alb and len(zones) < 2:
        raise ConfigError(
            f"{where} subnets: a load balancer needs subnets in two availability zones; "
            f"these are all in {zones.pop()}"
        )
    if infra.security_groups:
        groups = _ec2_ids(ec2, "security_groups", infra.security_groups, where)
        outside = [g["GroupId"] for g in groups if g["VpcId"] != vpc_id]
        if outside:
            raise ConfigError(f"{where} security_groups: {', '.join(outside)} not in VPC {vpc_id}")
    public = bool(vpc.get("IsDefault")) if infra.assign_public_ip is None else infra.assign_public_ip
    return Network(vpc_id, tuple(sorted(s["SubnetId"] for s in subnets)), infra.security_groups, public)


def _rule(item: dict[str, Any]) -> ListenerRule:
    paths: list[str] = []
    hosts: list[str] = []
    for condition in item.get("Conditions", []):
        if condition.get("Field") == "path-pattern":
            paths += condition.get("PathPatternConfig", {}).get("Values") or condition.get("Values", [])
        elif condition.get("Field") == "host-header":
            hosts += condition.get("HostHeaderConfig", {}).get("Values") or condition.get("Values", [])
    priority = None if item.get("IsDefault") or item.get("Priority") == "default" else int(item["Priority"])
    return ListenerRule(item["RuleArn"], priority, tuple(paths), tuple(hosts))


def _shared_listener(clients: Clients, arn: str, vpc_id: str, where: str) -> SharedListener:
    elb = clients.aws("elbv2")
    with aws_errors(
        "elasticloadbalancing:DescribeListeners", handled=("ListenerNotFound", "ListenerNotFoundException")
    ):
        try:
            listener = elb.describe_listeners(ListenerArns=[arn])["Listeners"][0]
        except elb.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] not in ("ListenerNotFound", "ListenerNotFoundException"):
                raise
            raise ConfigError(
                f"{where} listener_arn: no such listener in this account and region ({arn})"
            ) from None
    with aws_errors("elasticloadbalancing:DescribeLoadBalancers"):
        balancer = elb.describe_load_balancers(LoadBalancerArns=[listener["LoadBalancerArn"]])[
            "LoadBalancers"
        ][0]
    if balancer.get("VpcId") != vpc_id:
        raise ConfigError(
            f"{where} listener_arn: its load balancer is in {balancer.get('VpcId')}, the service in {vpc_id}; "
            "set vpc_id/subnets to the load balancer's VPC"
        )
    if not balancer.get("SecurityGroups"):
        raise ConfigError(
            f"{where} listener_arn: its load balancer has no security group to admit to the service"
        )
    rules: list[ListenerRule] = []
    with aws_errors("elasticloadbalancing:DescribeRules"):
        marker: str | None = None
        while True:
            page = elb.describe_rules(ListenerArn=arn, **({"Marker": marker} if marker else {}))
            rules += [_rule(item) for item in page.get("Rules", [])]
            marker = page.get("NextMarker")
            if not marker:
                break
    return SharedListener(
        arn=arn,
        security_group=balancer["SecurityGroups"][0],
        dns_name=balancer["DNSName"],
        hosted_zone_id=balancer.get("CanonicalHostedZoneId", ""),
        rules=tuple(rules),
    )


def zone_for(domain: str, zones: Iterable[tuple[str, str, bool]]) -> str | None:
    """The id of the hosted zone (id, name, private) that holds domain: the longest matching name, public first."""
    best: tuple[int, bool, str] | None = None
    for zone_id, name, private in zones:
        name = name.rstrip(".").lower()
        if domain == name or domain.endswith("." + name):
            key = (len(name), not private, zone_id)
            best = key if best is None or key[:2] > best[:2] else best
    return best[2].rsplit("/", 1)[-1] if best else None


def _hosted_zone(clients: Clients, infra: InfraEnvironment, where: str) -> str:
    route53 = clients.aws("route53")
    domain = str(infra.domain)
    if infra.hosted_zone_id:
        with aws_errors("route53:GetHostedZone", handled=("NoSuchHostedZone",)):
            try:
                zone = route53.get_hosted_zone(Id=infra.hosted_zone_id)["HostedZone"]
            except route53.exceptions.NoSuchHostedZone:
                raise ConfigError(
                    f"{where} hosted_zone_id: no hosted zone {infra.hosted_zone_id} in this account"
                ) from None
        if not zone_for(domain, [(zone["Id"], zone["Name"], False)]):
            raise ConfigError(f"{where} hosted_zone_id: zone {zone['Name']} cannot hold {domain}")
        return infra.hosted_zone_id
    zones: list[tuple[str, str, bool]] = []
    with aws_errors("route53:ListHostedZones"):
        for page in route53.get_paginator("list_hosted_zones").paginate():
            zones += [
                (z["Id"], z["Name"], z.get("Config", {}).get("PrivateZone", False))
                for z in page["HostedZones"]
            ]
    found = zone_for(domain, zones)
    if not found:
        raise ConfigError(
            f"{where} domain: no Route53 hosted zone for {domain} (or a parent) in this account; "
            "create one (aws route53 create-hosted-zone) or set hosted_zone_id"
        )
    return found


def _check_certificate(clients: Clients, arn: str, where: str) -> None:
    acm = clients.aws("acm")
    with aws_errors("acm:DescribeCertificate", handled=("ResourceNotFoundException",)):
        try:
            status = acm.describe_certificate(CertificateArn=arn)["Certificate"].get("Status")
        except acm.exceptions.ResourceNotFoundException:
            raise ConfigError(
                f"{where} certificate_arn: no such certificate in this region ({arn})"
            ) from None
    if status in {"EXPIRED", "REVOKED", "FAILED", "VALIDATION_TIMED_OUT", "INACTIVE"}:
        raise ConfigError(f"{where} certificate_arn: the certificate is {status}; request a new one")


def _live_service(clients: Clients, env: Environment) -> dict[str, Any] | None:
    ecs = clients.aws("ecs")
    with aws_errors("ecs:DescribeServices", handled=("ClusterNotFoundException",)):
        try:
            found = ecs.describe_services(cluster=env.cluster, services=[env.service])
        except ecs.exceptions.ClusterNotFoundException:
            return None
    active = [s for s in found.get("services", []) if s.get("status") == "ACTIVE"]
    return dict(active[0]) if active else None


def newest_tag(images: Iterable[ecr.ImageRecord]) -> str | None:
    tagged = [i for i in images if i.tags]
    if not tagged:
        return None
    newest = max(tagged, key=lambda i: i.pushed_at or datetime.min.replace(tzinfo=UTC))
    return sorted(newest.tags)[0]


def _repository_exists(settings: Settings, clients: Clients) -> bool:
    try:
        ecr.ensure_repository(settings, clients)
    except NotFound:
        return False
    return True


def _oidc_provider(clients: Clients, settings: Settings, account: str, project: StackState) -> str:
    """CircleCI's provider when the account has it and the project stack did not make it; "" otherwise."""
    if settings.infra.ci_identity != "oidc" or "CircleCiOidcProvider" in project.resources:
        return ""
    suffix = f"oidc-provider/oidc.circleci.com/org/{settings.infra.circleci_org_id}"
    with aws_errors("iam:ListOpenIDConnectProviders"):
        found = clients.aws("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"]
    return next((p["Arn"] for p in found if p["Arn"].endswith(suffix)), "")


def gather(ctx: Context, env_name: str | None, image_tag: str | None = None, dry_run: bool = False) -> Facts:
    """Every lookup and check setup needs; raises before anything changes."""
    settings, clients = ctx.settings, ctx.clients
    env = settings.environment(env_name) if env_name else None
    problems = name_problems(settings)
    if problems:
        raise ConfigError(problems)
    account = ecr.account_id(settings, clients)
    project = describe_stack(clients, project_stack_name(settings))
    check_stack(settings, project)
    cluster = project_cluster(settings, env_name, project)
    repository_exists = _repository_exists(settings, clients)
    create_repository = "Repository" in project.resources or not repository_exists
    notes = []
    if not create_repository:
        notes.append(
            f"ECR repository {settings.repository} exists outside the stack (kept by an earlier teardown, "
            "or made by hand): the stack uses it as it is and leaves its settings alone"
        )
    facts = Facts(
        account_id=account,
        partition=partition(settings.region),
        registry=ecr.registry(settings, clients),
        cluster=cluster,
        project=project,
        create_repository=create_repository,
        oidc_provider_arn=_oidc_provider(clients, settings, account, project),
        notes=tuple(notes),
    )
    if env is None:
        return facts
    return _gather_environment(ctx, env, facts, repository_exists, image_tag, dry_run)


def _gather_environment(
    ctx: Context,
    env: Environment,
    facts: Facts,
    repository_exists: bool,
    image_tag: str | None,
    dry_run: bool,
) -> Facts:
    settings, clients = ctx.settings, ctx.clients
    infra = settings.infra.environment(env.name)
    where = f"[tool.pipeline.infra.environments.{env.name}]"
    state = describe_stack(clients, environment_stack_name(settings, env.name))
    check_stack(settings, state)
    network = _network(clients, infra, where, own_alb=not infra.listener_arn)

    ours = state.resources.get("ListenerRule")
    current = int(state.parameters["RulePriority"]) if state.parameters.get("RulePriority") else None
    listener = None
    if infra.listener_arn:
        listener = _shared_listener(clients, infra.listener_arn, network.vpc_id, where)
        clash = conflicting_rule(listener.rules, ours, path_patterns(settings.base_path), infra.domain)
        if clash:
            raise ConfigError(
                f"{where} listener_arn: rule {clash.arn} (priority {clash.priority}) already routes "
                f"{', '.join(clash.paths)}{' for ' + ', '.join(clash.hosts) if clash.hosts else ''}: this service "
                "would get no traffic; give the environment a domain (host rule) or the project another base_path"
            )
    priority = choose_priority(listener.rules if listener else (), ours, infra.rule_priority, current)
    zone = _hosted_zone(clients, infra, where) if infra.domain else ""
    if infra.certificate_arn:
        _check_certificate(clients, infra.certificate_arn, where)

    notes = list(facts.notes)
    service = _live_service(clients, env)
    if service and "Service" not in state.resources:
        raise ConfigError(
            f"ECS service {env.service} already runs in cluster {env.cluster} outside the stack "
            f"{state.name} (made by hand?); delete it (aws ecs delete-service --force) or name this "
            f"environment's service differently ([tool.pipeline.environments.{env.name}] service)"
        )
    live = str(service["taskDefinition"]) if service else ""
    image = state.parameters.get("Image", "")
    if not live:
        image = _bootstrap_image(ctx, env, facts.registry, repository_exists, image_tag, dry_run, notes)
    elif "BootstrapTaskDefinition" in state.resources:
        notes.append(
            f"the service runs {live.rsplit('/', 1)[-1]}: from now on the deploy owns its task definition"
        )
    return replace(
        facts,
        environment=state,
        network=network,
        listener=listener,
        rule_priority=priority,
        hosted_zone_id=zone,
        live_task_definition=live,
        image=image,
        notes=tuple(notes),
    )


def _bootstrap_image(
    ctx: Context,
    env: Environment,
    registry: str,
    repository_exists: bool,
    image_tag: str | None,
    dry_run: bool,
    notes: list[str],
) -> str:
    """The image the stack's first revision runs: --image-tag, else the newest pushed."""
    settings = ctx.settings
    if image_tag and repository_exists:
        ecr.require_image(settings, ctx.clients, image_tag)
        return f"{registry}/{settings.repository}:{image_tag}"
    tag = newest_tag(ecr.list_images(settings, ctx.clients)) if repository_exists else None
    if tag:
        notes.append(f"the service starts with {settings.repository}:{tag}, the newest image in ECR")
        return f"{registry}/{settings.repository}:{tag}"
    first = "" if repository_exists else "run `invoke setup` (no --env) to create the repository, "
    advice = (
        f"no image in ECR repository {settings.repository} to start service {env.service} with: "
        f"{first}push one (`invoke dockerize && invoke push`), then run `invoke setup --env {env.name}` again"
    )
    if not dry_run:
        raise NotFound(advice)
    notes.append(advice)
    return f"{registry}/{settings.repository}:{image_tag or 'none-yet'}"


# --- decide: the stacks' parameters (pure) -------------------------------------------


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
    existing_role = settings.execution_role if settings.execution_role.startswith("arn:") else ""
    if not infra.immutable_tags:
        mutability = "MUTABLE"
    else:
        mutability = "IMMUTABLE_WITH_EXCLUSION" if infra.mutable_tags else "IMMUTABLE"
    # CI may deploy every environment that runs in this project's cluster, and nothing else.
    envs = sorted(
        (e for e in settings.environments.values() if e.cluster == facts.cluster), key=lambda e: e.name
    )
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
        "ExecutionRoleName": existing_role.rsplit("/", 1)[-1] if existing_role else settings.execution_role,
        "ExistingExecutionRoleArn": existing_role,
        "TaskRoleName": task_role_name(settings),
        "SecretsPath": settings.prefix,
        "CiIdentity": infra.ci_identity,
        "CiRoleName": ci_name(settings),
        "CircleCiOrgId": infra.circleci_org_id or "",
        "CircleCiProjectId": infra.circleci_project_id or "",
        "OidcProviderArn": facts.oidc_provider_arn,
        "CiServiceArns": ",".join(
            f"arn:{part}:ecs:{region}:{account}:service/{e.cluster}/{e.service}" for e in envs
        ),
        "CiTaskDefinitionArns": ",".join(
            f"arn:{part}:ecs:{region}:{account}:task-definition/{family}:*"
            for family in sorted({e.family for e in envs})
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
        "ExecutionRoleArn": settings.execution_role_arn(facts.account_id),
        "TaskRoleArn": f"arn:{facts.partition}:iam::{facts.account_id}:role/{task_role_name(settings)}",
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


# --- change sets and stack events (pure) ---------------------------------------------


@dataclass(frozen=True)
class Change:
    action: str  # Add, Modify, Remove, Import, Dynamic
    logical_id: str
    resource_type: str
    replacement: str = ""  # True, False, Conditional (Modify only)

    def line(self) -> str:
        mark = {"Add": "+", "Modify": "~", "Remove": "-"}.get(self.action, "*")
        replaced = (
            f"  (replacement: {self.replacement})" if self.action == "Modify" and self.replacement else ""
        )
        return f"{mark} {self.action:<7} {self.logical_id:<26} {self.resource_type}{replaced}"

    def to_json(self) -> dict[str, str]:
        return {
            "action": self.action,
            "logicalId": self.logical_id,
            "type": self.resource_type,
            "replacement": self.replacement,
        }


def changes_from(api_changes: Iterable[dict[str, Any]]) -> list[Change]:
    """DescribeChangeSet's Changes as plain rows, in the order CloudFormation gave them."""
    rows = []
    for item in api_changes:
        change = item.get("ResourceChange", {})
        if item.get("Type", "Resource") != "Resource" or not change:
            continue
        rows.append(
            Change(
                action=change.get("Action", "?"),
                logical_id=change.get("LogicalResourceId", "?"),
                resource_type=change.get("ResourceType", "?"),
                replacement=str(change.get("Replacement", "")),
            )
        )
    return rows


def summary(changes: Sequence[Change]) -> list[str]:
    """What a change set will do, one line per resource and a count; replacements called out."""
    if not changes:
        return ["no resource changes (parameters or outputs only)"]
    counts = {a: sum(1 for c in changes if c.action == a) for a in ("Add", "Modify", "Remove")}
    head = ", ".join(f"{n} to {a.lower()}" for a, n in counts.items() if n) or f"{len(changes)} changes"
    replaced = [c.logical_id for c in changes if c.replacement == "True"]
    if replaced:
        head += f"; REPLACES {', '.join(replaced)}"
    return [head, *(c.line() for c in changes)]


def is_no_change(status: str, reason: str) -> bool:
    return status == "FAILED" and any(words in reason for words in NO_CHANGES)


def event_line(event: Mapping[str, Any]) -> str:
    at = event.get("Timestamp")
    stamp = at.strftime("%H:%M:%S") if isinstance(at, datetime) else str(at or "")[11:19]
    reason = event.get("ResourceStatusReason") or ""
    return f"{stamp}  {event.get('LogicalResourceId', '?'):<26} {event.get('ResourceStatus', '?')}" + (
        f"  {reason}" if reason else ""
    )


def root_cause(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The first resource that failed (events oldest first); others only report cancellation."""
    for event in events:
        reason = event.get("ResourceStatusReason") or ""
        if str(event.get("ResourceStatus", "")).endswith("_FAILED") and "cancelled" not in reason.lower():
            return f"{event.get('LogicalResourceId')} ({event.get('ResourceType')}) {event['ResourceStatus']}: {reason}"
    return None


def failure_message(stack: str, status: str, events: Iterable[Mapping[str, Any]]) -> str:
    cause = root_cause(events) or "no resource reported a failure"
    if status == "ROLLBACK_COMPLETE":
        after = "CloudFormation rolled the creation back (the next setup replaces the empty stack)"
    elif status == "UPDATE_ROLLBACK_COMPLETE":
        after = "CloudFormation rolled the stack back to what it was before"
    elif status.endswith("ROLLBACK_FAILED"):
        after = f"and the rollback failed too ({status}): look at the stack in the CloudFormation console"
    elif status == "DELETE_FAILED":
        after = "the stack is not deleted (DELETE_FAILED): remove the cause and run teardown again"
    else:
        after = f"the stack is {status}"
    return f"{stack}: {cause}; {after}"


# --- act: change sets on the aws seam --------------------------------------------------


@dataclass(frozen=True)
class StackResult:
    name: str
    action: str  # created, updated, unchanged, previewed
    changes: tuple[Change, ...] = ()
    outputs: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.name,
            "action": self.action,
            "changes": [c.to_json() for c in self.changes],
            "outputs": dict(self.outputs),
        }


def _shown_events(clients: Clients, stack_id: str) -> set[str]:
    """The newest event so far: what happens next is what a person has not seen yet."""
    with aws_errors("cloudformation:DescribeStackEvents"):
        events = clients.aws("cloudformation").describe_stack_events(StackName=stack_id)["StackEvents"]
    return {events[0]["EventId"]} if events else set()


def _new_events(clients: Clients, stack_id: str, seen: set[str]) -> list[dict[str, Any]]:
    """Events not shown yet, oldest first (the API pages newest first)."""
    fresh: list[dict[str, Any]] = []
    with aws_errors("cloudformation:DescribeStackEvents"):
        for page in (
            clients.aws("cloudformation").get_paginator("describe_stack_events").paginate(StackName=stack_id)
        ):
            for event in page["StackEvents"]:
                if event["EventId"] in seen:
                    break
                fresh.append(event)
            else:
                continue
            break
    seen.update(e["EventId"] for e in fresh)
    return fresh[::-1]


def wait_for_stack(
    ctx: Context, stack_id: str, name: str, seen: set[str], timeout: float, sleep: Sleep
) -> tuple[str, list[dict[str, Any]]]:
    """Show the stack's events as they arrive until it settles; returns its status and those events.

    Settled means the stack itself reported a final status since `seen`: right after
    ExecuteChangeSet or DeleteStack, DescribeStacks may still show the previous one.
    """
    cfn = ctx.clients.aws("cloudformation")
    deadline = time.monotonic() + timeout
    shown: list[dict[str, Any]] = []
    while True:
        with aws_errors("cloudformation:DescribeStacks"):
            status = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"]
        fresh = _new_events(ctx.clients, stack_id, seen)
        for event in fresh:
            ctx.out.detail(event_line(event))
        shown += fresh
        reported = {
            e["ResourceStatus"] for e in shown if e.get("ResourceType") == "AWS::CloudFormation::Stack"
        }
        if not status.endswith("_IN_PROGRESS") and status in reported:
            return status, shown
        if time.monotonic() > deadline:
            raise Unavailable(
                f"{name}: still {status} after {timeout:.0f}s; CloudFormation carries on: follow it with "
                f"`aws cloudformation describe-stack-events --stack-name {name}`"
            )
        sleep(POLL_SECONDS)


def _change_set(ctx: Context, arn: str, timeout: float, sleep: Sleep) -> dict[str, Any]:
    """The change set once CloudFormation has worked it out, with every page of changes."""
    cfn = ctx.clients.aws("cloudformation")
    deadline = time.monotonic() + timeout
    while True:
        with aws_errors("cloudformation:DescribeChangeSet"):
            found = cfn.describe_change_set(ChangeSetName=arn)
        if found["Status"] in ("CREATE_COMPLETE", "FAILED"):
            break
        if time.monotonic() > deadline:
            raise Unavailable(f"change set {arn} still {found['Status']} after {timeout:.0f}s")
        sleep(POLL_SECONDS / 2)
    changes = list(found.get("Changes", []))
    token = found.get("NextToken")
    while token:
        with aws_errors("cloudformation:DescribeChangeSet"):
            page = cfn.describe_change_set(ChangeSetName=arn, NextToken=token)
        changes += page.get("Changes", [])
        token = page.get("NextToken")
    return {**found, "Changes": changes}


def _discard(ctx: Context, arn: str, stack_id: str, created_stack: bool) -> None:
    """Delete a change set that will not run, and the empty stack a CREATE change set made."""
    cfn = ctx.clients.aws("cloudformation")
    with aws_errors("cloudformation:DeleteChangeSet"):
        cfn.delete_change_set(ChangeSetName=arn)
    if created_stack:
        with aws_errors("cloudformation:DeleteStack"):
            cfn.delete_stack(StackName=stack_id)


def delete_stack(ctx: Context, state: StackState, timeout: float, sleep: Sleep) -> None:
    if state.stack_id is None:
        return
    seen = _shown_events(ctx.clients, state.stack_id)
    with aws_errors("cloudformation:DeleteStack"):
        ctx.clients.aws("cloudformation").delete_stack(StackName=state.stack_id)
    status, events = wait_for_stack(ctx, state.stack_id, state.name, seen, timeout, sleep)
    if status != "DELETE_COMPLETE":
        raise StepFailed(failure_message(state.name, status, events))


def apply(
    ctx: Context, request: StackRequest, state: StackState, dry_run: bool, timeout: float, sleep: Sleep
) -> StackResult:
    """Create or update one stack through a change set; print it before it runs."""
    cfn = ctx.clients.aws("cloudformation")
    out = ctx.out
    if dry_run:
        for key, value in request.parameters.items():
            out.detail(f"{key} = {value}")
    if state.status == "ROLLBACK_COMPLETE":
        out.detail(
            f"{state.name} is ROLLBACK_COMPLETE (its first creation failed): it is deleted and made afresh"
        )
        if dry_run:
            return StackResult(request.name, "previewed")
        delete_stack(ctx, state, timeout, sleep)
        state = StackState(state.name)
    kind = "UPDATE" if state.exists else "CREATE"
    name = f"setup-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with aws_errors("cloudformation:CreateChangeSet", handled=("ValidationError",)):
        try:
            created = cfn.create_change_set(
                StackName=request.name,
                ChangeSetName=name,
                ChangeSetType=kind,
                TemplateBody=template_body(request.template),
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in request.parameters.items()],
                Capabilities=["CAPABILITY_NAMED_IAM"],
                Tags=[{"Key": k, "Value": v} for k, v in request.tags.items()],
                Description="invoke setup",
            )
        except cfn.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != "ValidationError":
                raise
            message = exc.response["Error"].get("Message", "")
            if any(words in message for words in NO_CHANGES):
                out.detail("no changes: the stack already matches")
                return StackResult(request.name, "unchanged", outputs=state.outputs)
            raise ConfigError(f"{request.name}: CloudFormation refused the change set: {message}") from None
    found = _change_set(ctx, created["Id"], timeout, sleep)
    created_stack = kind == "CREATE"
    if found["Status"] == "FAILED":
        reason = found.get("StatusReason", "")
        _discard(ctx, created["Id"], created["StackId"], created_stack)
        if is_no_change(found["Status"], reason):
            out.detail("no changes: the stack already matches")
            return StackResult(request.name, "unchanged", outputs=state.outputs)
        raise ConfigError(f"{request.name}: CloudFormation refused the change set: {reason}")
    changes = tuple(changes_from(found["Changes"]))
    out.detail(f"change set {name} ({'create' if created_stack else 'update'} {request.name}):")
    for line in summary(changes):
        out.detail(f"  {line}")
    if dry_run:
        _discard(ctx, created["Id"], created["StackId"], created_stack)
        return StackResult(request.name, "previewed", changes, state.outputs)

    seen = _shown_events(ctx.clients, created["StackId"])
    with aws_errors("cloudformation:ExecuteChangeSet"):
        cfn.execute_change_set(ChangeSetName=created["Id"])
    status, events = wait_for_stack(ctx, created["StackId"], request.name, seen, timeout, sleep)
    if status not in DONE:
        raise StepFailed(failure_message(request.name, status, events))
    outputs = describe_stack(ctx.clients, request.name).outputs
    out.detail("outputs:")
    for key, value in outputs.items():
        out.detail(f"  {key} = {value}")
    return StackResult(request.name, "created" if created_stack else "updated", changes, outputs)


def setup(
    ctx: Context,
    env_name: str | None = None,
    dry_run: bool = False,
    image_tag: str | None = None,
    timeout: float = 3600.0,
    sleep: Sleep = time.sleep,
) -> dict[str, Any]:
    """Create or update the project stack, then the environment's; returns what each did."""
    with ctx.out.step(f"check setup{' of ' + env_name if env_name else ''}"):
        facts = gather(ctx, env_name, image_tag, dry_run)
        requests = stack_requests(ctx.settings, env_name, facts)
        for note in facts.notes:
            ctx.out.detail(note)
    states = [facts.project] + ([facts.environment] if facts.environment else [])
    results = []
    for request, state in zip(requests, states, strict=True):
        with ctx.out.step(f"stack {request.name}"):
            results.append(apply(ctx, request, state, dry_run, timeout, sleep))
    if dry_run:
        ctx.out.say("dry run: the change sets were shown and deleted; nothing was changed")
    return {"dryRun": dry_run, "stacks": [r.to_json() for r in results]}


# --- teardown ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeardownPlan:
    stacks: tuple[StackState, ...]  # in deletion order
    repository: str
    images: int | None  # None: there is no repository
    delete_repository: bool
    remaining: tuple[str, ...]  # environment stacks that stay

    def lines(self) -> list[str]:
        lines = [f"delete stack {s.name} ({len(s.resources)} resources)" for s in self.stacks]
        if self.remaining:
            lines.append(f"the project stack stays: environment stacks remain ({', '.join(self.remaining)})")
        if self.images is not None:
            if self.delete_repository:
                lines.append(
                    f"delete ECR repository {self.repository} and its {self.images} images (--force)"
                )
            elif self.remaining:
                lines.append(f"ECR repository {self.repository} stays with the project stack")
            else:
                lines.append(
                    f"keep ECR repository {self.repository} and its {self.images} images (--force deletes them)"
                )
        return lines


def teardown_plan(ctx: Context, env_name: str | None, force: bool) -> TeardownPlan:
    settings, clients = ctx.settings, ctx.clients
    if env_name:
        settings.environment(env_name)
    project = describe_stack(clients, project_stack_name(settings))
    others = {}
    for name in sorted(settings.environments):
        state = describe_stack(clients, environment_stack_name(settings, name))
        if state.status is not None:
            others[name] = state
    target = others.pop(env_name, None) if env_name else None
    if env_name and target is None:
        raise NotFound(
            f"stack {environment_stack_name(settings, env_name)} does not exist: nothing to tear down for {env_name}"
        )
    if env_name is None:
        if project.status is None:
            raise NotFound(f"stack {project.name} does not exist: nothing to tear down")
        if others:
            names = ", ".join(s.name for s in others.values())
            raise ConfigError(
                f"environment stacks remain ({names}); tear them down first with `invoke teardown --env ENV`"
            )
    stacks = [s for s in (target,) if s is not None]
    if not others and project.status is not None:
        stacks.append(project)
    for state in stacks:
        check_stack(settings, state)
    last = project in stacks
    images = len(ecr.list_images(settings, clients)) if _repository_exists(settings, clients) else None
    return TeardownPlan(
        stacks=tuple(stacks),
        repository=settings.repository,
        images=images,
        delete_repository=force and last and images is not None,
        remaining=tuple(s.name for s in others.values()),
    )


def ask(yes: bool, stdin: TextIO | None = None, prompt_to: TextIO | None = None) -> Callable[[str], bool]:
    """A confirmation: --yes, else the expected answer typed on stdin; no stdin at all is refused."""

    def confirm(expected: str) -> bool:
        if yes:
            return True
        print(f"type {expected} to delete it: ", end="", file=prompt_to or sys.stderr, flush=True)
        answer = (stdin or sys.stdin).readline()
        if not answer:
            print(file=prompt_to or sys.stderr)
            raise ConfigError(
                "teardown needs a confirmation and stdin has none; pass --yes to tear down from a script"
            )
        return answer.strip() == expected

    return confirm


def teardown(
    ctx: Context,
    env_name: str | None,
    force: bool,
    confirm: Callable[[str], bool],
    timeout: float = 3600.0,
    sleep: Sleep = time.sleep,
) -> None:
    """Delete an environment's stack, and the project stack with the last environment."""
    with ctx.out.step(f"check teardown{' of ' + env_name if env_name else ''}"):
        plan = teardown_plan(ctx, env_name, force)
        for line in plan.lines():
            ctx.out.detail(line)
    if not confirm(plan.stacks[0].name):
        raise StepFailed("teardown cancelled: nothing was deleted")
    for state in plan.stacks:
        with ctx.out.step(f"delete stack {state.name}"):
            delete_stack(ctx, state, timeout, sleep)
    if plan.delete_repository:
        with ctx.out.step(f"delete ECR repository {plan.repository}"), aws_errors("ecr:DeleteRepository"):
            ctx.clients.aws("ecr").delete_repository(repositoryName=plan.repository, force=True)
    elif plan.images is not None and not plan.remaining:
        ctx.out.say(
            f"kept ECR repository {plan.repository} ({plan.images} images); the next setup uses it again. "
            f"Delete it with `aws ecr delete-repository --repository-name {plan.repository} --force`"
        )
