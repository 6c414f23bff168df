"""`invoke setup` / `invoke teardown` against the emulator's CloudFormation: create, no-op
update, real update and delete of the project and environment stacks; the outputs are
the names the pipeline uses; a setup after a deploy leaves the deployed revision alone;
the CI policy names only this project; bad input stops before anything exists.

moto drops most ECS properties, so these tests assert on what it keeps (names,
task definitions, desired counts, target groups, listener rules, IAM documents, DNS
records) and leave the rest to cfn-lint (tests/test_infra.py). CloudFormation's failures
and rollbacks, which moto never produces, come from a stand-in at the boto3 seam.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline import infra
from pipeline.clients import Clients
from pipeline.context import Context
from pipeline.errors import ConfigError, NotFound, StepFailed
from tests.conftest import hello_task_definition
from tests.helpers import put_image_record, said

Aws = Callable[[str], Any]
MakeCtx = Callable[..., Context]

# The emulator must run change sets as CloudFormation does (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("emulator_runs_change_sets")


def stack_status(aws: Aws, name: str) -> str | None:
    return infra.describe_stack(Clients(aws_factory=aws), name).status


@pytest.fixture
def vpc(aws: Aws) -> dict[str, Any]:
    """A VPC of this test's own: two subnets in two zones and a security group."""
    ec2 = aws("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"us-east-1{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate("ab")
    ]
    group = ec2.create_security_group(
        GroupName=f"g-{uuid.uuid4().hex[:8]}", Description="test", VpcId=vpc_id
    )["GroupId"]
    return {"vpc_id": vpc_id, "subnets": subnets, "security_group": group}


# --- the project stack, through the tasks ----------------------------------------------------


@pytest.mark.heavy
def test_project_stack_create_no_op_and_delete_through_invoke(
    run_task: Callable[..., Any], aws: Aws, aws_cli: Callable[..., Any], prefix: str
) -> None:
    preview = run_task("setup", "--dry-run")
    assert preview.returncode == 0, preview.stderr
    assert "+ Add     Repository                 AWS::ECR::Repository" in preview.stdout
    assert f"RepositoryName = {prefix}" in preview.stdout  # the parameters are printed too
    assert "nothing was changed" in preview.stdout
    assert stack_status(aws, f"{prefix}-project") is None
    assert not aws_cli("ecr", "describe-repositories")["repositories"] or prefix not in {
        r["repositoryName"] for r in aws_cli("ecr", "describe-repositories")["repositories"]
    }

    created = run_task("setup", "--json")
    assert created.returncode == 0, created.stderr
    [project] = json.loads(created.stdout)["stacks"]
    assert project["action"] == "created"
    assert "==> stack" in created.stderr  # progress on stderr, JSON alone on stdout
    outputs = project["outputs"]
    assert outputs["RepositoryName"] == prefix and outputs["RepositoryUri"].endswith(
        f".amazonaws.com/{prefix}"
    )
    assert outputs["ClusterName"] == f"{prefix}-cluster"
    assert outputs["LogGroupName"] == f"/ecs/{prefix}"
    assert "ExecutionRoleArn" not in outputs  # each environment's own (environment stack)
    assert outputs["CiUserName"] == f"{prefix}-ci"
    assert outputs["DevRepositoryUri"].endswith(f".amazonaws.com/{prefix}-dev")

    # The aws CLI, an independent client, sees what the pipeline's other tasks will use.
    repo = aws_cli("ecr", "describe-repositories", "--repository-names", prefix)["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"  # moto drops scan-on-push and lifecycle: cfn-lint's
    [group] = aws_cli("logs", "describe-log-groups", "--log-group-name-prefix", f"/ecs/{prefix}")["logGroups"]
    assert group["retentionInDays"] == 30
    assert (
        aws_cli("ecs", "describe-clusters", "--clusters", f"{prefix}-cluster")["clusters"][0]["status"]
        == "ACTIVE"
    )
    roles = {r["RoleName"] for r in aws_cli("iam", "list-roles")["Roles"]}
    assert not {f"{prefix}-prod-ecs-execution-role", f"{prefix}-ecs-execution-role"} & roles

    again = run_task("setup")
    assert again.returncode == 0, again.stderr
    assert "no changes: the stack already matches" in again.stdout
    left = aws_cli("cloudformation", "list-change-sets", "--stack-name", f"{prefix}-project")["Summaries"]
    assert not [s for s in left if s["StackName"] == f"{prefix}-project" and s["Status"] == "FAILED"]

    # -dev branches' images are disposable: their repository goes with the stack, images and all.
    put_image_record(aws, f"{prefix}-dev", "a1b2c3d")
    gone = run_task("teardown", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert stack_status(aws, f"{prefix}-project") is None
    assert f"delete ECR repository {prefix}-dev and its 1 images" in gone.stdout + gone.stderr
    assert f"kept ECR repository {prefix} (0 images)" in gone.stdout
    assert aws_cli("ecr", "describe-repositories", "--repository-names", prefix)["repositories"]
    names = {r["repositoryName"] for r in aws_cli("ecr", "describe-repositories")["repositories"]}
    assert f"{prefix}-dev" not in names


# --- an environment: create, a deploy, a real update, no-op, delete -------------------------------


def test_environment_lifecycle_and_a_setup_never_undoes_a_deploy(
    infra_ctx: MakeCtx, aws: Aws, prefix: str
) -> None:
    ctx = infra_ctx()
    env = ctx.settings.environment("staging")
    infra.setup(ctx)
    put_image_record(aws, prefix, "abc1234")

    result = infra.setup(ctx, "staging")
    project, staging = result["stacks"]
    assert (project["action"], staging["action"]) == ("unchanged", "created")
    outputs = staging["outputs"]
    assert (outputs["ServiceName"], outputs["ClusterName"]) == (env.service, env.cluster)
    assert outputs["Url"] == f"http://{outputs['LoadBalancerDnsName']}/hello/"

    ecs, elb = aws("ecs"), aws("elbv2")
    service = ecs.describe_services(cluster=env.cluster, services=[env.service])["services"][0]
    assert service["desiredCount"] == 1
    bootstrap = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    assert bootstrap["family"] == env.family
    [container] = bootstrap["containerDefinitions"]
    assert (container["name"], container["image"]) == (
        env.container,
        f"{ctx.settings.ecr_endpoint}/{prefix}:abc1234",
    )
    [group] = elb.describe_target_groups(TargetGroupArns=[outputs["TargetGroupArn"]])["TargetGroups"]
    assert (group["TargetType"], group["Port"], group["HealthCheckPath"]) == ("ip", 8080, "/hello/health")
    [rule] = elb.describe_rules(RuleArns=[outputs["ListenerRuleArn"]])["Rules"]
    assert rule["Priority"] == "1"
    assert rule["Conditions"][0]["PathPatternConfig"]["Values"] == ["/hello", "/hello/*"]
    assert rule["Actions"][0]["TargetGroupArn"] == outputs["TargetGroupArn"]
    [balancer] = elb.describe_load_balancers(LoadBalancerArns=[group["LoadBalancerArns"][0]])["LoadBalancers"]
    assert balancer["DNSName"] == outputs["LoadBalancerDnsName"]

    # A deploy, as pipeline/deploy.py makes one: register a revision, point the service at it.
    def register(tag: str) -> str:
        image = f"{ctx.settings.ecr_endpoint}/{prefix}:{tag}"
        definition = hello_task_definition(env.family, image)
        definition["containerDefinitions"][0]["name"] = env.container
        return str(ecs.register_task_definition(**definition)["taskDefinition"]["taskDefinitionArn"])

    deployed = register("def5678")
    ecs.update_service(cluster=env.cluster, service=env.service, taskDefinition=deployed)
    register("0badbad")  # registered, never live: a deploy that was rolled back

    # A real update (two tasks instead of one) after the deploy.
    bigger = infra_ctx({"environments": {"staging": {"desired_count": 2}}})
    result = infra.setup(bigger, "staging")
    assert [s["action"] for s in result["stacks"]] == ["unchanged", "updated"]
    service = ecs.describe_services(cluster=env.cluster, services=[env.service])["services"][0]
    assert service["desiredCount"] == 2
    assert service["taskDefinition"] == deployed  # neither the stack's first revision nor the newest
    live = infra.describe_stack(bigger.clients, f"{prefix}-staging").parameters["LiveTaskDefinition"]
    assert live == deployed
    assert "from now on the deploy owns its task definition" in said(bigger)

    again = infra_ctx({"environments": {"staging": {"desired_count": 2}}})
    result = infra.setup(again, "staging")
    assert [s["action"] for s in result["stacks"]] == ["unchanged", "unchanged"]
    assert result["stacks"][1]["outputs"]["ServiceName"] == env.service
    # Nothing to change still ends with every stack's outputs.
    shown = said(again)
    assert f"outputs of {prefix}-project (unchanged):" in shown
    assert f"outputs of {prefix}-staging (unchanged):" in shown and f"  ServiceName = {env.service}" in shown

    asked: list[str] = []
    infra.teardown(again, "staging", delete_images=False, confirm=lambda name: asked.append(name) or True)
    assert asked == [f"{prefix}-staging"]
    assert stack_status(aws, f"{prefix}-staging") is None and stack_status(aws, f"{prefix}-project") is None
    assert [i["imageTags"] for i in aws("ecr").describe_images(repositoryName=prefix)["imageDetails"]] == [
        ["abc1234"]
    ]
    assert f"kept ECR repository {prefix} (1 images)" in said(again)


def test_two_environments_coexist_and_the_last_teardown_takes_the_project_and_with_force_the_images(
    infra_ctx: MakeCtx, aws: Aws, prefix: str
) -> None:
    ctx = infra_ctx()
    infra.setup(ctx)
    put_image_record(aws, prefix, "abc1234")
    infra.setup(ctx, "staging")
    infra.setup(ctx, "prod")
    ecs = aws("ecs")
    for name in ("staging", "prod"):
        env = ctx.settings.environment(name)
        assert (
            ecs.describe_services(cluster=env.cluster, services=[env.service])["services"][0]["status"]
            == "ACTIVE"
        )

    infra.teardown(ctx, "staging", delete_images=True, confirm=lambda _name: True)
    assert stack_status(aws, f"{prefix}-staging") is None
    assert stack_status(aws, f"{prefix}-prod") == stack_status(aws, f"{prefix}-project") == "CREATE_COMPLETE"
    assert "the project stack stays: environment stacks remain" in said(ctx)

    with pytest.raises(ConfigError, match=f"environment stacks remain \\({prefix}-prod\\)"):
        infra.teardown(ctx, None, delete_images=True, confirm=lambda _name: True)

    infra.teardown(ctx, "prod", delete_images=True, confirm=lambda _name: True)
    assert stack_status(aws, f"{prefix}-prod") is None and stack_status(aws, f"{prefix}-project") is None
    repositories = aws("ecr").describe_repositories()["repositories"]
    assert prefix not in {r["repositoryName"] for r in repositories}


def test_a_repository_kept_by_teardown_is_used_again(infra_ctx: MakeCtx, aws: Aws, prefix: str) -> None:
    ctx = infra_ctx()
    infra.setup(ctx)
    put_image_record(aws, prefix, "abc1234")
    infra.teardown(ctx, None, delete_images=False, confirm=lambda _name: True)

    again = infra_ctx()
    result = infra.setup(again, "staging")
    assert [s["action"] for s in result["stacks"]] == ["created", "created"]
    assert f"ECR repository {prefix} exists outside the stack" in said(again)
    assert infra.describe_stack(again.clients, f"{prefix}-project").parameters["CreateRepository"] == "false"
    assert result["stacks"][0]["outputs"]["RepositoryUri"].endswith(f"/{prefix}")


# --- the CI identity -----------------------------------------------------------------------------------


@pytest.fixture
def circleci(aws: Aws) -> Iterator[dict[str, str]]:
    """CircleCI's OIDC provider for an organization of this test's own, as an account has it."""
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    iam = aws("iam")
    arn = iam.create_open_id_connect_provider(
        Url=f"https://oidc.circleci.com/org/{org}", ClientIDList=[org], ThumbprintList=["9" * 40]
    )["OpenIDConnectProviderArn"]
    yield {"org": org, "project": project, "provider": arn}
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)


# Actions without resource-level permissions: AWS only accepts "*" for them.
NEED_STAR = {
    "ecr:GetAuthorizationToken",
    "ecs:RegisterTaskDefinition",
    "ecs:DescribeTaskDefinition",
    "ecs:ListTaskDefinitions",
    "ecs:ListTasks",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeRules",
}


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_ci_push_roles_trust_only_their_refs_and_each_pushes_to_its_own_repository_only(
    infra_ctx: MakeCtx, aws: Aws, aws_cli: Callable[..., Any], prefix: str, circleci: dict[str, str]
) -> None:
    ctx = infra_ctx({"circleci_org_id": circleci["org"], "circleci_project_id": circleci["project"]})
    [project] = infra.setup(ctx)["stacks"]
    assert project["outputs"]["CiRoleArn"] == f"arn:aws:iam::123456789012:role/{prefix}-ci"
    assert project["outputs"]["CiDevRoleArn"] == f"arn:aws:iam::123456789012:role/{prefix}-ci-dev"
    assert project["outputs"]["DevRepositoryUri"].endswith(f"/{prefix}-dev")
    assert "CiUserName" not in project["outputs"]
    iam = aws("iam")
    issuer = f"oidc.circleci.com/org/{circleci['org']}"

    def subjects(role: str) -> list[Any]:
        [trust] = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {
            "Federated": circleci["provider"]
        }  # the account's provider, not a new one
        assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert trust["Condition"]["StringEquals"] == {f"{issuer}:aud": circleci["org"]}
        return listed(trust["Condition"]["StringLike"][f"{issuer}:sub"])

    def sub(ref: str) -> str:
        return (
            f"org/{circleci['org']}/project/{circleci['project']}/user/{uuid.uuid4()}"
            f"/vcs-origin/github.com/example/ecs-pipeline/vcs-ref/{ref}"
        )

    # The mainline's jobs push deployable images; -dev branches' jobs push with a role of
    # their own. Feature branches, tags and the V1 token (no ref) push nowhere. Deploying is
    # each environment's own role (test_each_environment_has_its_own_deploy_role_for_its_refs_only).
    main, dev = subjects(f"{prefix}-ci"), subjects(f"{prefix}-ci-dev")
    for ref, pushes in (
        ("refs/heads/main", "main"),
        ("refs/heads/master", "main"),
        ("refs/heads/feature-dev", "dev"),
        ("refs/heads/main-dev", "dev"),
        ("refs/heads/feature", None),
        ("refs/tags/v1-prod", None),
        ("refs/tags/v1-dev", None),
    ):
        assert any(iam_string_like(p, sub(ref)) for p in main) == (pushes == "main"), ref
        assert any(iam_string_like(p, sub(ref)) for p in dev) == (pushes == "dev"), ref
    v1 = f"org/{circleci['org']}/project/{circleci['project']}/user/{uuid.uuid4()}"
    assert not any(iam_string_like(p, v1) for p in main + dev)
    # ECR's IAM has no condition on the tag: only separate repositories keep a -dev job
    # from writing a tag that the mainline's pipeline deploys.
    s = ctx.settings
    arn = "arn:aws:{}:us-east-1:123456789012:{}".format
    for role, repository in ((f"{prefix}-ci", s.repository), (f"{prefix}-ci-dev", f"{s.repository}-dev")):
        policy = iam.get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"]
        assert_scoped(policy, {arn("ecr", f"repository/{repository}")}, prefix)
    # The dev repository, as the aws CLI reads it: its tags are immutable too.
    [repo] = aws_cli("ecr", "describe-repositories", "--repository-names", f"{prefix}-dev")["repositories"]
    assert repo["imageTagMutability"] == "IMMUTABLE"


def assert_scoped(policy: dict[str, Any], expected: set[str], prefix: str) -> None:
    """Every statement allows, names only `expected` resources, and "*" only where AWS needs it."""
    arn = "arn:aws:{}:us-east-1:123456789012:{}".format
    named: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions, resources = listed(statement["Action"]), listed(statement["Resource"])
        if "*" in resources:
            assert resources == ["*"] and set(actions) <= NEED_STAR, statement
        else:
            named |= set(resources)
        if "ecs:ListTasks" in actions:
            assert statement["Condition"] == {
                "ArnEquals": {"ecs:cluster": arn("ecs", f"cluster/{prefix}-cluster")}
            }
        if "iam:PassRole" in actions:
            assert actions == ["iam:PassRole"]
            assert statement["Condition"] == {
                "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
            }
    assert named == expected
    assert all(prefix in resource for resource in named)


def iam_string_like(pattern: str, value: str) -> bool:
    """IAM's StringLike: * any run of characters (slashes too), ? exactly one."""
    import re

    return (
        re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), value)
        is not None
    )


def test_each_environment_has_its_own_deploy_role_for_its_refs_only(
    infra_ctx: MakeCtx, aws: Aws, prefix: str, circleci: dict[str, str]
) -> None:
    ctx = infra_ctx({"circleci_org_id": circleci["org"], "circleci_project_id": circleci["project"]})
    infra.setup(ctx)
    put_image_record(aws, prefix, "abc1234")
    outputs = infra.setup(ctx, "prod")["stacks"][1]["outputs"]
    role = f"{prefix}-deploy-prod"
    assert outputs["CiDeployRoleArn"] == f"arn:aws:iam::123456789012:role/{role}"
    printed = said(ctx)
    assert f"CircleCI: context aws-prod holds AWS_ROLE_ARN={outputs['CiDeployRoleArn']}" in printed
    assert (
        '(pipeline.git.branch == "main" or pipeline.git.branch == "master" or pipeline.git.tag ends-with "-prod") and not job.ssh.enabled'
        in printed
    )

    iam = aws("iam")
    [trust] = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]["Statement"]
    issuer = f"oidc.circleci.com/org/{circleci['org']}"
    assert trust["Principal"] == {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{issuer}"}
    assert set(trust["Condition"]) == {"StringEquals", "StringLike"}
    assert trust["Condition"]["StringEquals"] == {f"{issuer}:aud": circleci["org"]}
    subjects = listed(trust["Condition"]["StringLike"][f"{issuer}:sub"])

    def sub(
        ref: str, origin: str = "github.com/example/ecs-pipeline", project: str = circleci["project"]
    ) -> str:
        user = str(uuid.uuid4())
        return f"org/{circleci['org']}/project/{project}/user/{user}/vcs-origin/{origin}/vcs-ref/{ref}"

    def trusted(value: str) -> bool:
        return any(iam_string_like(p, value) for p in subjects)

    for ref in ("refs/heads/main", "refs/heads/master", "refs/tags/v1.2-prod"):
        assert trusted(sub(ref)), ref
    for ref in (
        "refs/heads/feature",
        "refs/heads/main-dev",
        "refs/tags/v1.2-staging",
        "refs/heads/x/vcs-ref/refs/heads/main",  # a crafted branch name ending like main
        "refs/heads/x/vcs-origin/github.com/example/ecs-pipeline/vcs-ref/refs/heads/main",
    ):
        assert not trusted(sub(ref)), ref
    assert not trusted(sub("refs/heads/main", origin="github.com/example/fork"))
    assert not trusted(sub("refs/heads/main", project=str(uuid.uuid4())))
    old_token = f"org/{circleci['org']}/project/{circleci['project']}/user/{uuid.uuid4()}"
    assert not trusted(old_token)  # the V1 token names no ref: never a deploy role

    e = ctx.settings.environment("prod")
    arn = "arn:aws:{}:us-east-1:123456789012:{}".format
    policy = iam.get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"]
    assert_scoped(
        policy,
        {
            arn("ecr", f"repository/{ctx.settings.repository}"),
            arn("ecs", f"service/{e.cluster}/{e.service}"),
            arn("ecs", f"task-definition/{e.family}:*"),
            arn("ecs", f"task/{e.cluster}/*"),
            arn("ssm", f"parameter/ecs-pipeline/deploy-lock/{e.cluster}/{e.service}"),
            f"arn:aws:iam::123456789012:role/{prefix}-prod-ecs-execution-role",
            f"arn:aws:iam::123456789012:role/{prefix}-prod-ecs-task-role",
            arn("logs", f"log-group:/ecs/{prefix}:*"),
            arn("logs", f"log-group:/ecs/{prefix}:log-stream:prod/*"),
        },
        prefix,
    )


# --- load balancing and DNS --------------------------------------------------------------------------


def test_a_domain_gets_https_and_an_alias_record(infra_ctx: MakeCtx, aws: Aws, prefix: str) -> None:
    zone = aws("route53").create_hosted_zone(Name=f"{prefix}.example.com", CallerReference=prefix)[
        "HostedZone"
    ]["Id"]
    domain = f"hello.{prefix}.example.com"
    certificate = aws("acm").request_certificate(DomainName=domain, ValidationMethod="DNS")["CertificateArn"]
    ctx = infra_ctx({"environments": {"prod": {"domain": domain, "certificate_arn": certificate}}})
    infra.setup(ctx)
    put_image_record(aws, prefix, "abc1234")

    outputs = infra.setup(ctx, "prod")["stacks"][1]["outputs"]
    assert outputs["Url"] == f"https://{domain}/hello/"
    records = aws("route53").list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    [alias] = [r for r in records if r["Name"].rstrip(".") == domain]
    assert (alias["Type"], alias["AliasTarget"]["DNSName"].rstrip(".")) == (
        "A",
        outputs["LoadBalancerDnsName"],
    )
    elb = aws("elbv2")
    [rule] = elb.describe_rules(RuleArns=[outputs["ListenerRuleArn"]])["Rules"]
    assert {c["Field"] for c in rule["Conditions"]} == {"path-pattern", "host-header"}
    [group] = elb.describe_target_groups(TargetGroupArns=[outputs["TargetGroupArn"]])["TargetGroups"]
    listeners = elb.describe_listeners(LoadBalancerArn=group["LoadBalancerArns"][0])["Listeners"]
    by_port = {listener["Port"]: listener for listener in listeners}
    assert set(by_port) == {80, 443}
    assert by_port[443]["Certificates"][0]["CertificateArn"] == certificate
    assert by_port[80]["DefaultActions"][0]["Type"] == "redirect"  # plain HTTP only sends people to HTTPS
    infra.teardown(ctx, "prod", delete_images=True, confirm=lambda _name: True)


@pytest.fixture
def shared_listener(aws: Aws, vpc: dict[str, Any]) -> dict[str, Any]:
    """A load balancer other projects already use: an HTTP listener with one rule at priority 1."""
    elb = aws("elbv2")
    balancer = elb.create_load_balancer(
        Name=f"shared-{uuid.uuid4().hex[:8]}", Subnets=vpc["subnets"], SecurityGroups=[vpc["security_group"]]
    )["LoadBalancers"][0]
    other = elb.create_target_group(
        Name=f"other-{uuid.uuid4().hex[:8]}", Protocol="HTTP", Port=80, VpcId=vpc["vpc_id"], TargetType="ip"
    )
    listener = elb.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
    )["Listeners"][0]
    forward = [{"Type": "forward", "TargetGroupArn": other["TargetGroups"][0]["TargetGroupArn"]}]
    elb.create_rule(
        ListenerArn=listener["ListenerArn"],
        Priority=1,
        Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/other/*"]}}],
        Actions=forward,
    )
    return {**vpc, "listener": listener["ListenerArn"], "dns": balancer["DNSName"], "forward": forward}


def test_a_shared_listener_gets_a_rule_at_a_free_priority(
    infra_ctx: MakeCtx, aws: Aws, prefix: str, shared_listener: dict[str, Any]
) -> None:
    table = {
        "vpc_id": shared_listener["vpc_id"],
        "subnets": shared_listener["subnets"],
        "environments": {"staging": {"listener_arn": shared_listener["listener"]}},
    }
    ctx = infra_ctx(table)
    infra.setup(ctx)
    put_image_record(aws, prefix, "abc1234")
    outputs = infra.setup(ctx, "staging")["stacks"][1]["outputs"]
    assert outputs["LoadBalancerDnsName"] == shared_listener["dns"]
    assert "LoadBalancer" not in infra.describe_stack(ctx.clients, f"{prefix}-staging").resources
    rules = aws("elbv2").describe_rules(ListenerArn=shared_listener["listener"])["Rules"]
    ours = [r for r in rules if r["RuleArn"] == outputs["ListenerRuleArn"]]
    assert [r["Priority"] for r in ours] == ["2"]

    taken = infra_ctx(
        {
            **table,
            "environments": {"staging": {"listener_arn": shared_listener["listener"], "rule_priority": 1}},
        }
    )
    with pytest.raises(ConfigError, match="rule_priority 1: another rule on the shared listener holds it"):
        infra.setup(taken, "staging")


def test_a_rule_that_already_routes_the_base_path_is_refused(
    infra_ctx: MakeCtx, aws: Aws, prefix: str, shared_listener: dict[str, Any]
) -> None:
    aws("elbv2").create_rule(
        ListenerArn=shared_listener["listener"],
        Priority=5,
        Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/hello/*"]}}],
        Actions=shared_listener["forward"],
    )
    ctx = infra_ctx({"subnets": shared_listener["subnets"], "listener_arn": shared_listener["listener"]})
    with pytest.raises(ConfigError, match="already routes /hello/\\*: this service would get no traffic"):
        infra.setup(ctx, "prod", dry_run=True)
    assert stack_status(aws, f"{prefix}-project") is None


# --- bad input: one line, non-zero, nothing made -------------------------------------------------------


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_unknown_environment(run_task: Callable[..., Any], aws: Aws, prefix: str) -> None:
    proc = run_task("setup", "--env", "qa")
    assert proc.returncode == 2
    assert "--env qa: unknown environment; choose one of: prod, staging" in one_error_line(proc)
    assert stack_status(aws, f"{prefix}-project") is None


def test_an_environment_without_an_image_says_what_to_push(
    run_task: Callable[..., Any], aws: Aws, prefix: str
) -> None:
    proc = run_task("setup", "--env", "staging")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert f"no image in ECR repository {prefix}" in line and "run `invoke setup` (no --env)" in line
    assert stack_status(aws, f"{prefix}-project") is None


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"vpc_id": "vpc-0123456789abcdef0"}, ["vpc_id: ", "vpc-0123456789abcdef0", "does not exist"]),
        (
            {"subnets": ["subnet-0123456789abcdef0"]},
            ["subnets: ", "subnet-0123456789abcdef0", "does not exist"],
        ),
        (
            {
                "listener_arn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/none/0123456789abcdef/0123456789abcdef"
            },
            ["listener_arn: no such listener"],
        ),
    ],
)
def test_things_that_do_not_exist_are_named_before_anything_changes(
    infra_ctx: MakeCtx, aws: Aws, prefix: str, table: dict[str, Any], expected: list[str]
) -> None:
    ctx = infra_ctx(table)
    with pytest.raises(ConfigError) as info:
        infra.setup(ctx, "prod")
    assert all(part in info.value.message for part in expected), info.value.message
    assert "\n" not in info.value.message
    assert stack_status(aws, f"{prefix}-project") is None


def test_a_domain_without_a_hosted_zone(infra_ctx: MakeCtx, aws: Aws, prefix: str) -> None:
    certificate = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
    ctx = infra_ctx(
        {"environments": {"prod": {"domain": f"{prefix}.nowhere.example", "certificate_arn": certificate}}}
    )
    with pytest.raises(ConfigError, match=f"domain: no Route53 hosted zone for {prefix}.nowhere.example"):
        infra.setup(ctx, "prod")
    assert stack_status(aws, f"{prefix}-project") is None


def test_teardown_of_a_stack_that_does_not_exist(run_task: Callable[..., Any], prefix: str) -> None:
    proc = run_task("teardown", "--env", "prod", "--yes")
    assert proc.returncode == 2
    assert f"stack {prefix}-prod does not exist: nothing to tear down for prod" in one_error_line(proc)


def test_teardown_without_stdin_or_yes_refuses(
    run_task: Callable[..., Any], infra_ctx: MakeCtx, aws: Aws, prefix: str
) -> None:
    infra.setup(infra_ctx())
    proc = run_task("teardown", stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert "pass --yes to tear down from a script" in proc.stderr.splitlines()[-1]
    assert stack_status(aws, f"{prefix}-project") == "CREATE_COMPLETE"
    wrong = run_task("teardown", input="yes\n")
    assert wrong.returncode == 1 and "teardown cancelled: nothing was deleted" in wrong.stderr
    typed = run_task("teardown", input=f"{prefix}-project\n")
    assert typed.returncode == 0, typed.stderr
    assert stack_status(aws, f"{prefix}-project") is None


# --- CloudFormation failing: a stand-in, as moto never fails or rolls back -------------------------------


class FailingCloudFormation:
    """STAND-IN for a CloudFormation update that fails and rolls back (moto's never do).

    Wraps the emulator's real client and passes every call through, except that
    ExecuteChangeSet does not run the change set: from then on DescribeStacks and
    DescribeStackEvents answer, one poll at a time, with the statuses and events real
    CloudFormation reports when a resource fails (shapes of the CloudFormation API reference).
    """

    def __init__(self, real: Any, polls: list[tuple[str, list[dict[str, Any]]]]) -> None:
        self.real, self.polls, self.executed = real, polls, False
        self.status = ""
        self.events: list[dict[str, Any]] = []  # newest first, as the API pages them
        self.exceptions = real.exceptions

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def execute_change_set(self, **kwargs: Any) -> dict[str, Any]:
        self.executed = True
        return {}

    def describe_stacks(self, **kwargs: Any) -> dict[str, Any]:
        found = self.real.describe_stacks(**kwargs)
        if self.executed:
            if self.polls:
                self.status, events = self.polls.pop(0)
                self.events = [*reversed(events), *self.events]
            found["Stacks"][0]["StackStatus"] = self.status
        return found

    def describe_stack_events(self, **kwargs: Any) -> dict[str, Any]:
        found = self.real.describe_stack_events(**kwargs)
        found["StackEvents"] = [*self.events, *found["StackEvents"]]
        return found

    def get_paginator(self, operation: str) -> Any:
        if operation != "describe_stack_events":
            return self.real.get_paginator(operation)
        standin = self

        class Pages:
            def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
                yield standin.describe_stack_events(**kwargs)

        return Pages()


def failing_event(stack: str, logical: str, kind: str, status: str, reason: str = "") -> dict[str, Any]:
    from datetime import UTC, datetime

    return {
        "StackId": stack,
        "EventId": str(uuid.uuid4()),
        "StackName": stack,
        "LogicalResourceId": logical,
        "ResourceType": kind,
        "Timestamp": datetime.now(UTC),
        "ResourceStatus": status,
        "ResourceStatusReason": reason,
    }


def test_a_failed_update_names_the_resource_and_says_it_rolled_back(
    infra_ctx: MakeCtx, aws: Aws, prefix: str
) -> None:
    infra.setup(infra_ctx())
    stack = f"{prefix}-project"
    reason = 'Resource handler returned message: "Role name already exists" (Service: Iam, Status Code: 409)'
    polls = [
        (
            "UPDATE_IN_PROGRESS",
            [
                failing_event(
                    stack, stack, "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS", "User Initiated"
                )
            ],
        ),
        ("UPDATE_IN_PROGRESS", [failing_event(stack, "TaskRole", "AWS::IAM::Role", "UPDATE_FAILED", reason)]),
        (
            "UPDATE_ROLLBACK_IN_PROGRESS",
            [
                failing_event(
                    stack,
                    stack,
                    "AWS::CloudFormation::Stack",
                    "UPDATE_ROLLBACK_IN_PROGRESS",
                    "The following resource(s) failed to update: [TaskRole].",
                )
            ],
        ),
        (
            "UPDATE_ROLLBACK_COMPLETE",
            [failing_event(stack, stack, "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_COMPLETE")],
        ),
    ]
    standins: list[FailingCloudFormation] = []

    def factory(service: str) -> Any:
        from pipeline.clients import boto3_client

        real = boto3_client(service, "us-east-1")
        if service != "cloudformation":
            return real
        standins.append(FailingCloudFormation(real, polls))
        return standins[-1]

    ctx = infra_ctx({"log_retention_days": 60}, aws_factory=factory)  # a real change, so a change set runs
    slept: list[float] = []
    with pytest.raises(StepFailed) as info:
        infra.setup(ctx, sleep=slept.append)
    assert info.value.message == (
        f"{stack}: TaskRole (AWS::IAM::Role) UPDATE_FAILED: {reason}; CloudFormation rolled the stack back to what it was before"
    )
    shown = said(ctx)
    assert (
        shown.index("UPDATE_IN_PROGRESS") < shown.index("TaskRole") < shown.index("UPDATE_ROLLBACK_COMPLETE")
    )
    assert len(slept) == 3  # waited between polls, not after the last


def test_no_image_to_start_with_is_only_a_note_in_a_dry_run(infra_ctx: MakeCtx, prefix: str) -> None:
    ctx = infra_ctx()
    result = infra.setup(ctx, "staging", dry_run=True)
    assert [s["action"] for s in result["stacks"]] == ["previewed", "previewed"]
    assert f"no image in ECR repository {prefix}" in said(ctx)
    with pytest.raises(NotFound):
        infra.setup(infra_ctx(), "staging")
