"""Setup's read-only lookups on the aws seam: `gather` finds and checks every fact before anything changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .. import ecr
from ..arns import partition, short
from ..clients import Clients, aws_errors
from ..config import Environment, InfraEnvironment, Settings
from ..context import Context
from ..errors import ConfigError, NotFound, Unavailable
from .facts import (
    Facts,
    ListenerRule,
    Network,
    SharedListener,
    StackState,
    check_stack,
    choose_priority,
    conflicting_rule,
    newest_tag,
    project_cluster,
    zone_for,
)
from .names import environment_stack_name, name_problems, path_patterns, project_stack_name


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


def gather(ctx: Context, env_name: str | None, image_tag: str | None = None) -> Facts:
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
    return _gather_environment(ctx, env, facts, repository_exists, image_tag)


def _gather_environment(
    ctx: Context,
    env: Environment,
    facts: Facts,
    repository_exists: bool,
    image_tag: str | None,
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
    image, missing = state.parameters.get("Image", ""), ""
    if not live:
        image, missing = _bootstrap_image(ctx, env, facts.registry, repository_exists, image_tag, notes)
    elif "BootstrapTaskDefinition" in state.resources:
        notes.append(f"the service runs {short(live)}: from now on the deploy owns its task definition")
    return replace(
        facts,
        environment=state,
        network=network,
        listener=listener,
        rule_priority=priority,
        hosted_zone_id=zone,
        live_task_definition=live,
        image=image,
        missing_image=missing,
        notes=tuple(notes),
    )


def _bootstrap_image(
    ctx: Context,
    env: Environment,
    registry: str,
    repository_exists: bool,
    image_tag: str | None,
    notes: list[str],
) -> tuple[str, str]:
    """The image the stack's first revision runs (--image-tag, else the newest pushed), and
    when there is none, the advice on pushing one."""
    settings = ctx.settings
    if image_tag and repository_exists:
        ecr.require_image(settings, ctx.clients, image_tag)
        return f"{registry}/{settings.repository}:{image_tag}", ""
    tag = newest_tag(ecr.list_images(settings, ctx.clients)) if repository_exists else None
    if tag:
        notes.append(f"the service starts with {settings.repository}:{tag}, the newest image in ECR")
        return f"{registry}/{settings.repository}:{tag}", ""
    first = "" if repository_exists else "run `invoke setup` (no --env) to create the repository, "
    advice = (
        f"no image in ECR repository {settings.repository} to start service {env.service} with: "
        f"{first}push one (`invoke dockerize && invoke push`), then run `invoke setup --env {env.name}` again"
    )
    return f"{registry}/{settings.repository}:{image_tag or 'none-yet'}", advice
