"""`invoke setup` of BLUE_GREEN, LINEAR and CANARY environments on the emulator: the
change set each strategy renders, the alternate target group, the test listener and its
rule, the infrastructure role ECS moves traffic with (read back with the aws CLI), the
service's deployment configuration with the smoke gate, and a live environment moved from
ROLLING to BLUE_GREEN and back.

The service's fields are read back from the emulator's ECS (describe-services), which keeps
what the CloudFormation stand-in passed to CreateService/UpdateService
(pipeline/stack/emulator/cloudformation.py). Traffic shifting itself belongs to the
emulator's ECS scheduler and the deploy, not to setup.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from pipeline import infra
from pipeline.context import Context
from pipeline.ecs import in_progress as ecs_in_progress
from tests.conftest import hello_task_definition, push_image
from tests.helpers import ROLLOUT_DEADLINE, put_image_record, said, wait_until

Aws = Callable[[str], Any]
Cli = Callable[..., Any]
MakeCtx = Callable[..., Context]

# What every strategy but ROLLING adds to an environment stack.
SHIFT_RESOURCES = {
    "AlternateTargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
    "TestListener": "AWS::ElasticLoadBalancingV2::Listener",
    "TestListenerRule": "AWS::ElasticLoadBalancingV2::ListenerRule",
    "TestListenerIngress": "AWS::EC2::SecurityGroupIngress",
    "InfrastructureRole": "AWS::IAM::Role",
}
GATE = {
    "targetType": "PAUSE",
    "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
    "timeoutConfiguration": {"timeoutInMinutes": 30, "action": "ROLLBACK"},
}


def service_of(aws_cli: Cli, ctx: Context, env: str) -> dict[str, Any]:
    e = ctx.settings.environment(env)
    [service] = aws_cli("ecs", "describe-services", "--cluster", e.cluster, "--services", e.service)[
        "services"
    ]
    return dict(service)


def change_rows(text: str) -> dict[str, str]:
    """`+ Add  TestListener  AWS::...` lines of a printed change set: logical id -> action."""
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] in "+~-" and parts[1] in ("Add", "Modify", "Remove"):
            rows[parts[2]] = parts[1]
    return rows


def stack_resources(aws_cli: Cli, stack: str) -> dict[str, str]:
    listed = aws_cli("cloudformation", "list-stack-resources", "--stack-name", stack)[
        "StackResourceSummaries"
    ]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in listed}


@pytest.mark.parametrize("strategy", ["ROLLING", "BLUE_GREEN", "LINEAR", "CANARY"])
def test_the_dry_run_change_set_of_each_strategy_lists_what_it_creates(
    infra_ctx: MakeCtx, aws: Aws, prefix: str, strategy: str
) -> None:
    infra.setup(infra_ctx())
    put_image_record(aws, prefix, "abc1234")
    ctx = infra_ctx({"environments": {"prod": {"strategy": strategy}}})
    infra.setup(ctx, "prod", dry_run=True)
    rows = change_rows(said(ctx))
    assert {"LoadBalancer", "TargetGroup", "ListenerRule", "Service"} <= set(rows)
    added = {name for name in SHIFT_RESOURCES if rows.get(name) == "Add"}
    assert added == (set() if strategy == "ROLLING" else set(SHIFT_RESOURCES))
    assert f"Strategy = {strategy}" in said(ctx)  # the parameters are shown too
    assert infra.describe_stack(ctx.clients, f"{prefix}-prod").status is None  # nothing made


def test_blue_green_setup_makes_the_test_listener_the_alternate_group_and_a_role_scoped_to_them(
    infra_ctx: MakeCtx, aws: Aws, aws_cli: Cli, prefix: str
) -> None:
    ctx = infra_ctx({"environments": {"staging": {"strategy": "BLUE_GREEN", "test_port": 9100}}})
    infra.setup(ctx)
    put_image_record(aws, prefix, "abc1234")
    result = infra.setup(ctx, "staging")
    [_, staging] = result["stacks"]
    out = staging["outputs"]
    shown = said(ctx)
    for name in ("TestUrl", "TestListenerArn", "AlternateTargetGroupArn", "InfrastructureRoleArn"):
        assert f"  {name} = {out[name]}" in shown  # setup prints them
    assert out["TestUrl"].startswith("http://") and out["TestUrl"].endswith(":9100/hello/")

    # The alternate target group checks health exactly as the primary does.
    groups = aws_cli(
        "elbv2",
        "describe-target-groups",
        "--target-group-arns",
        out["TargetGroupArn"],
        out["AlternateTargetGroupArn"],
    )["TargetGroups"]
    keys = ("Protocol", "Port", "TargetType", "VpcId", "HealthCheckPath", "HealthCheckIntervalSeconds")
    primary, alternate = sorted(groups, key=lambda g: g["TargetGroupArn"] != out["TargetGroupArn"])
    assert {k: alternate[k] for k in keys} == {k: primary[k] for k in keys}
    assert alternate["HealthCheckPath"] == "/hello/health"

    # The service: ECS's strategy, the advanced configuration naming these resources, the gate.
    service = service_of(aws_cli, ctx, "staging")
    config = service["deploymentConfiguration"]
    assert (config["strategy"], config["bakeTimeInMinutes"]) == ("BLUE_GREEN", 5)
    assert config["lifecycleHooks"] == [GATE]
    assert config["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert "linearConfiguration" not in config and "canaryConfiguration" not in config
    [balancer] = service["loadBalancers"]
    assert balancer["targetGroupArn"] == out["TargetGroupArn"]
    assert balancer["advancedConfiguration"] == {
        "alternateTargetGroupArn": out["AlternateTargetGroupArn"],
        "productionListenerRule": out["ListenerRuleArn"],
        "testListenerRule": out["TestListenerRuleArn"],
        "roleArn": out["InfrastructureRoleArn"],
    }

    # The deploy's way to the test listener: the service's test rule -> its listener -> the port.
    [test_rule] = aws_cli(
        "elbv2", "describe-rules", "--rule-arns", balancer["advancedConfiguration"]["testListenerRule"]
    )["Rules"]
    [production_rule] = aws_cli("elbv2", "describe-rules", "--rule-arns", out["ListenerRuleArn"])["Rules"]
    assert test_rule["Conditions"] == production_rule["Conditions"]  # the same paths as production
    [forward] = test_rule["Actions"]
    weights = {g["TargetGroupArn"]: g["Weight"] for g in forward["ForwardConfig"]["TargetGroups"]}
    assert weights == {
        out["TargetGroupArn"]: 100,
        out["AlternateTargetGroupArn"]: 0,
    }  # production's until a deploy
    listeners = aws_cli("elbv2", "describe-listeners", "--load-balancer-arn", primary["LoadBalancerArns"][0])[
        "Listeners"
    ]
    by_arn = {listener["ListenerArn"]: listener for listener in listeners}
    assert (by_arn[out["TestListenerArn"]]["Port"], by_arn[out["TestListenerArn"]]["Protocol"]) == (
        9100,
        "HTTP",
    )
    # DescribeRules names no listener; a rule's ARN extends its listener's.
    listener_of_rule = test_rule["RuleArn"].replace(":listener-rule/", ":listener/").rsplit("/", 1)[0]
    assert listener_of_rule == out["TestListenerArn"]
    on_test_listener = aws_cli("elbv2", "describe-rules", "--listener-arn", out["TestListenerArn"])["Rules"]
    assert test_rule["RuleArn"] in {r["RuleArn"] for r in on_test_listener}
    assert sorted(listener["Port"] for listener in listeners) == [80, 9100]

    # The role: only ECS may assume it, and it moves only this environment's traffic.
    role_name = out["InfrastructureRoleArn"].rsplit("/", 1)[1]
    [trust] = aws_cli("iam", "get-role", "--role-name", role_name)["Role"]["AssumeRolePolicyDocument"][
        "Statement"
    ]
    assert (trust["Effect"], trust["Principal"], trust["Action"]) == (
        "Allow",
        {"Service": "ecs.amazonaws.com"},
        "sts:AssumeRole",
    )
    assert aws_cli("iam", "list-attached-role-policies", "--role-name", role_name)["AttachedPolicies"] == []
    [policy_name] = aws_cli("iam", "list-role-policies", "--role-name", role_name)["PolicyNames"]
    document = aws_cli("iam", "get-role-policy", "--role-name", role_name, "--policy-name", policy_name)[
        "PolicyDocument"
    ]
    granted: dict[str, set[str]] = {}
    for statement in document["Statement"]:
        assert (
            statement["Effect"] == "Allow" and "NotResource" not in statement and "NotAction" not in statement
        )
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for action in actions:
            granted.setdefault(action, set()).update(resources)
    resources = stack_resources(aws_cli, f"{prefix}-staging")
    production_listener = resources["HttpListener"]
    assert granted == {
        # Describe* have no resource-level permissions in IAM: "*" is the only form AWS accepts.
        "elasticloadbalancing:DescribeListeners": {"*"},
        "elasticloadbalancing:DescribeRules": {"*"},
        "elasticloadbalancing:DescribeTargetGroups": {"*"},
        "elasticloadbalancing:DescribeTargetHealth": {"*"},
        "elasticloadbalancing:RegisterTargets": {out["TargetGroupArn"], out["AlternateTargetGroupArn"]},
        "elasticloadbalancing:DeregisterTargets": {out["TargetGroupArn"], out["AlternateTargetGroupArn"]},
        "elasticloadbalancing:ModifyRule": {out["ListenerRuleArn"], out["TestListenerRuleArn"]},
        "elasticloadbalancing:ModifyListener": {production_listener, out["TestListenerArn"]},
    }

    # What setup printed and returned is the role as IAM holds it.
    held = {"trust": aws_cli("iam", "get-role", "--role-name", role_name)["Role"]["AssumeRolePolicyDocument"]}
    held["permissions"] = {policy_name: document}
    assert result["infrastructureRole"] == {"roleName": role_name, **held}
    assert f"  trust policy of {role_name}: {json.dumps(held['trust'], sort_keys=True)}" in said(ctx)
    assert f"  permissions of {role_name}: {json.dumps(held['permissions'], sort_keys=True)}" in said(ctx)

    # The load balancer's security group lets the smoke gate reach the test port.
    [group] = aws_cli("ec2", "describe-security-groups", "--group-ids", resources["AlbSecurityGroup"])[
        "SecurityGroups"
    ]
    assert 9100 in {p.get("FromPort") for p in group["IpPermissions"]}


@pytest.mark.parametrize(
    ("strategy", "settings", "expected"),
    [
        (
            "LINEAR",
            {"step_percent": 20, "step_bake_time_minutes": 2},
            {"linearConfiguration": {"stepPercent": 20.0, "stepBakeTimeInMinutes": 2}},
        ),
        (
            "CANARY",
            {"canary_percent": 12.5, "canary_bake_time_minutes": 3},
            {"canaryConfiguration": {"canaryPercent": 12.5, "canaryBakeTimeInMinutes": 3}},
        ),
    ],
)
def test_linear_and_canary_services_carry_their_steps_the_gate_and_no_circuit_breaker(
    infra_ctx: MakeCtx,
    aws: Aws,
    aws_cli: Cli,
    prefix: str,
    strategy: str,
    settings: dict[str, Any],
    expected: Any,
) -> None:
    # No tasks: the image is only an ECR record, and without a circuit breaker a service whose
    # tasks cannot start never settles; the configuration is what is under test here.
    table = {"strategy": strategy, "bake_time_minutes": 1, "desired_count": 0, **settings}
    ctx = infra_ctx({"environments": {"prod": table}})
    infra.setup(ctx)
    put_image_record(aws, prefix, "abc1234")
    infra.setup(ctx, "prod")
    config = service_of(aws_cli, ctx, "prod")["deploymentConfiguration"]
    assert (config["strategy"], config["bakeTimeInMinutes"], config["lifecycleHooks"]) == (
        strategy,
        1,
        [GATE],
    )
    [(key, value)] = expected.items()
    assert config[key] == value
    other = {"linearConfiguration", "canaryConfiguration"} - {key}
    assert not other & set(config)
    # ECS's failure detection covers rolling and blue/green deployments only.
    assert config["deploymentCircuitBreaker"] == {"enable": False, "rollback": False}


@pytest.mark.heavy
def test_a_live_environment_moves_from_rolling_to_blue_green_and_back_and_keeps_its_revision(
    infra_ctx: MakeCtx, aws: Aws, aws_cli: Cli, prefix: str, environ: dict[str, str], hello_image: str
) -> None:
    rolling = infra_ctx()
    env = rolling.settings.environment("prod")
    infra.setup(rolling)
    push_image(environ, hello_image, prefix, "abc1234")
    [_, created] = infra.setup(rolling, "prod", timeout=ROLLOUT_DEADLINE)["stacks"]
    production_rule = created["outputs"]["ListenerRuleArn"]
    [rule_before] = aws_cli("elbv2", "describe-rules", "--rule-arns", production_rule)["Rules"]

    # A deploy, as pipeline/deploy.py makes one: the service runs a revision the stack never made.
    image = push_image(environ, hello_image, prefix, "def5678")
    definition = hello_task_definition(env.family, image)
    definition["containerDefinitions"][0]["name"] = env.container
    ecs = aws("ecs")
    deployed = ecs.register_task_definition(**definition)["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster=env.cluster, service=env.service, taskDefinition=deployed)
    wait_until(lambda: not ecs_in_progress(service_of(aws_cli, rolling, "prod")), timeout=ROLLOUT_DEADLINE)

    blue_green = infra_ctx({"environments": {"prod": {"strategy": "BLUE_GREEN"}}})
    infra.setup(blue_green, "prod", dry_run=True)
    rows = change_rows(said(blue_green))
    assert {n: a for n, a in rows.items() if a != "Remove"} == {
        **dict.fromkeys(SHIFT_RESOURCES, "Add"),
        "Service": "Modify",
    }  # the production rule, listener and target group are left alone
    assert "Strategy = BLUE_GREEN" in said(blue_green)
    assert "TestListener" not in stack_resources(aws_cli, f"{prefix}-prod")  # a dry run changes nothing

    [_, moved] = infra.setup(blue_green, "prod", timeout=ROLLOUT_DEADLINE)["stacks"]
    assert moved["action"] == "updated"
    assert set(SHIFT_RESOURCES) <= set(stack_resources(aws_cli, f"{prefix}-prod"))
    service = service_of(aws_cli, blue_green, "prod")
    assert service["deploymentConfiguration"]["strategy"] == "BLUE_GREEN"
    assert service["deploymentConfiguration"]["lifecycleHooks"] == [GATE]
    assert service["loadBalancers"][0]["advancedConfiguration"]["productionListenerRule"] == production_rule
    assert service["taskDefinition"] == deployed  # a setup never undoes a deploy
    assert moved["outputs"]["ListenerRuleArn"] == production_rule
    [rule_after] = aws_cli("elbv2", "describe-rules", "--rule-arns", production_rule)["Rules"]
    assert (
        rule_after["Actions"] == rule_before["Actions"]
    )  # ECS's to rewrite from now on, not CloudFormation's
    role = moved["outputs"]["InfrastructureRoleArn"].rsplit("/", 1)[1]

    back = infra_ctx()
    infra.setup(back, "prod", dry_run=True)
    rows = change_rows(said(back))
    assert {n for n, a in rows.items() if a == "Remove"} == set(SHIFT_RESOURCES)
    assert rows["Service"] == "Modify"
    [_, undone] = infra.setup(back, "prod", timeout=ROLLOUT_DEADLINE)["stacks"]
    assert not {"TestUrl", "AlternateTargetGroupArn", "InfrastructureRoleArn"} & set(undone["outputs"])
    service = service_of(aws_cli, back, "prod")
    config = service["deploymentConfiguration"]
    assert (config["strategy"], config["lifecycleHooks"]) == ("ROLLING", [])
    assert config["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert "advancedConfiguration" not in service["loadBalancers"][0]
    assert service["taskDefinition"] == deployed
    assert not set(SHIFT_RESOURCES) & set(stack_resources(aws_cli, f"{prefix}-prod"))
    roles = {r["RoleName"] for r in aws_cli("iam", "list-roles")["Roles"]}
    assert role not in roles
    balancer = aws_cli("elbv2", "describe-rules", "--rule-arns", production_rule)["Rules"][0]
    assert balancer["Actions"] == rule_before["Actions"]

    # The stack still deletes cleanly after the round trip.
    infra.teardown(back, "prod", delete_images=False, confirm=lambda _name: True)
    assert infra.describe_stack(back.clients, f"{prefix}-prod").status is None


def test_with_a_domain_the_test_listener_serves_https_with_the_certificate(
    infra_ctx: MakeCtx, aws: Aws, aws_cli: Cli, prefix: str
) -> None:
    aws("route53").create_hosted_zone(Name=f"{prefix}.example.com", CallerReference=prefix)
    domain = f"hello.{prefix}.example.com"
    certificate = aws("acm").request_certificate(DomainName=domain, ValidationMethod="DNS")["CertificateArn"]
    table = {"strategy": "BLUE_GREEN", "domain": domain, "certificate_arn": certificate, "desired_count": 0}
    ctx = infra_ctx({"environments": {"prod": table}})
    infra.setup(ctx)
    put_image_record(aws, prefix, "abc1234")
    result = infra.setup(ctx, "prod")
    out = result["stacks"][1]["outputs"]
    assert out["TestUrl"] == f"https://{domain}:9000/hello/"
    [test_listener] = aws_cli("elbv2", "describe-listeners", "--listener-arns", out["TestListenerArn"])[
        "Listeners"
    ]
    assert (test_listener["Port"], test_listener["Protocol"]) == (9000, "HTTPS")
    assert test_listener["Certificates"][0]["CertificateArn"] == certificate
    [test_rule] = aws_cli("elbv2", "describe-rules", "--rule-arns", out["TestListenerRuleArn"])["Rules"]
    hosts = [c["HostHeaderConfig"]["Values"] for c in test_rule["Conditions"] if c["Field"] == "host-header"]
    assert hosts == [[domain]]
    # The production listener ECS may modify is the HTTPS one the rule is on, not the redirect.
    https_listener = stack_resources(aws_cli, f"{prefix}-prod")["HttpsListener"]
    [permissions] = result["infrastructureRole"]["permissions"].values()
    [modify] = [s for s in permissions["Statement"] if s["Action"] == "elasticloadbalancing:ModifyListener"]
    assert sorted(modify["Resource"]) == sorted([https_listener, out["TestListenerArn"]])


@pytest.mark.parametrize("strategy", ["ROLLING", "BLUE_GREEN"])
def test_the_ci_deploy_role_may_steer_this_services_deployments_only_where_the_gate_needs_it(
    infra_ctx: MakeCtx, aws: Aws, prefix: str, strategy: str
) -> None:
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    iam = aws("iam")
    provider = iam.create_open_id_connect_provider(
        Url=f"https://oidc.circleci.com/org/{org}", ClientIDList=[org], ThumbprintList=["9" * 40]
    )["OpenIDConnectProviderArn"]
    try:
        table = {
            "circleci_org_id": org,
            "circleci_project_id": project,
            "environments": {"prod": {"strategy": strategy}},
        }
        table["environments"]["prod"]["desired_count"] = 0
        ctx = infra_ctx(table)
        infra.setup(ctx)
        put_image_record(aws, prefix, "abc1234")
        infra.setup(ctx, "prod")
        role = f"{prefix}-deploy-prod"
        names = iam.list_role_policies(RoleName=role)["PolicyNames"]
        if strategy == "ROLLING":
            assert names == [role]  # the deploy policy alone
            return
        assert sorted(names) == [role, f"{role}-gate"]
        [statement] = iam.get_role_policy(RoleName=role, PolicyName=f"{role}-gate")["PolicyDocument"][
            "Statement"
        ]
        assert statement["Effect"] == "Allow"
        e = ctx.settings.environment("prod")
        base = "arn:aws:ecs:us-east-1:123456789012"
        assert set(statement["Action"]) == {
            "ecs:ListServiceDeployments",
            "ecs:DescribeServiceDeployments",
            "ecs:DescribeServiceRevisions",
            "ecs:ContinueServiceDeployment",
            "ecs:StopServiceDeployment",
        }
        assert statement["Resource"] == [
            f"{base}:service/{e.cluster}/{e.service}",
            f"{base}:service-deployment/{e.cluster}/{e.service}/*",
            f"{base}:service-revision/{e.cluster}/{e.service}/*",
        ]
    finally:
        iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=provider)
