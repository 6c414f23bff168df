"""pipeline/infra/parameters.py and the templates: cfn-lint and AWS's resource specification
pass them, and each stack's parameters follow the settings and facts (no AWS needed).
The other infra parts: tests/test_infra_*.py; the stacks themselves, on the emulator:
tests/test_infra_stack.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import config, infra
from tests.helpers import ROOT
from tests.infra_fixtures import BASE, CERT, LISTENER, ORG, PROJECT, TEMPLATES, facts, load

# --- the templates ---------------------------------------------------------------------


def test_templates_pass_cfn_lint() -> None:
    """cfn-lint checks types, properties, conditions and references against AWS's specification."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *sorted(str(p) for p in TEMPLATES.glob("*.yaml"))],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def template(name: str) -> Any:
    from cfnlint.decode import decode_str

    parsed, errors = decode_str((TEMPLATES / name).read_text())
    assert not errors
    return parsed


@pytest.mark.parametrize(
    ("name", "build"),
    [
        (infra.PROJECT_TEMPLATE, lambda s: infra.project_parameters(s, facts(s))),
        (
            infra.ENVIRONMENT_TEMPLATE,
            lambda s: infra.environment_parameters(s, s.environment("prod"), facts(s)),
        ),
    ],
)
def test_setup_fills_exactly_the_templates_parameters(name: str, build: Any) -> None:
    declared = set(template(name)["Parameters"])
    assert set(build(load())) == declared


def test_what_a_teardown_keeps_and_what_a_setup_never_rolls_back() -> None:
    project = template(infra.PROJECT_TEMPLATE)["Resources"]
    assert project["Repository"]["DeletionPolicy"] == "Retain"  # images outlive the stack
    assert project["CircleCiOidcProvider"]["DeletionPolicy"] == "Retain"  # shared by the organization
    env = template(infra.ENVIRONMENT_TEMPLATE)["Resources"]
    assert env["BootstrapTaskDefinition"]["Condition"] == "Bootstrap"
    assert env["BootstrapTaskDefinition"]["DeletionPolicy"] == "Retain"
    service = env["Service"]["Properties"]
    assert service["TaskDefinition"] == {
        "Fn::If": ["Bootstrap", {"Ref": "BootstrapTaskDefinition"}, {"Ref": "LiveTaskDefinition"}]
    }
    # ECS's failure detection covers rolling and blue/green deployments only (LINEAR and CANARY: off).
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Fn::If": ["CircuitBreaker", {"Enable": True, "Rollback": True}, {"Enable": False, "Rollback": False}]
    }
    assert env["TargetGroup"]["Properties"]["TargetType"] == "ip"


# --- parameters ----------------------------------------------------------------------------------


def test_project_parameters_follow_the_settings() -> None:
    table = {
        "ci_identity": "oidc",
        "circleci_org_id": ORG,
        "circleci_project_id": PROJECT,
        "mutable_tags": "latest",
    }
    s = config.load(BASE, ROOT, {"infra": table, "source_url": "https://github.com/example/ecs-pipeline"})
    p = infra.project_parameters(s, facts(s, oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/x"))
    assert p["RepositoryName"] == s.repository == "shop"
    assert p["ClusterName"] == s.environment("prod").cluster
    assert p["LogGroupName"] == s.log_group
    assert (p["ImageTagMutability"], p["MutableTagPattern"]) == ("IMMUTABLE_WITH_EXCLUSION", "latest")
    assert (p["CiIdentity"], p["CircleCiOrgId"]) == ("oidc", ORG)
    # The push role: only the mainline's jobs. -dev branches push with a role of their own,
    # into a repository of their own: no tag they write is one main's pipeline deploys.
    head = f"org/{ORG}/project/{PROJECT}/user/{'?' * 36}/vcs-origin/github.com/example/ecs-pipeline/vcs-ref/"
    assert p["CiPushSubjects"].split(",") == [head + ref for ref in ("refs/heads/main", "refs/heads/master")]
    assert p["CiDevPushSubjects"].split(",") == [head + "refs/heads/*-dev"]
    assert (p["CiRoleName"], p["CiDevRoleName"]) == ("shop-ci", "shop-ci-dev")
    assert (p["DevRepositoryName"], p["DevImageDays"]) == ("shop-dev", "14")
    assert p["OidcProviderArn"] == "arn:aws:iam::123456789012:oidc-provider/x"
    assert p["CiServiceArns"].split(",") == [
        "arn:aws:ecs:eu-west-1:123456789012:service/shop-cluster/shop-service",
        "arn:aws:ecs:eu-west-1:123456789012:service/shop-cluster/shop-staging-service",
    ]
    assert p["CiTaskDefinitionArns"].split(",") == [
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/shop-service:*",
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/shop-staging-service:*",
    ]
    # The seed's IAM user deploys every environment: it may pass each one's own roles.
    assert p["CiPassRoleArns"].split(",") == [
        f"arn:aws:iam::123456789012:role/shop-{env}-ecs-{kind}-role"
        for env in ("prod", "staging")
        for kind in ("execution", "task")
    ]


def test_an_execution_role_made_elsewhere_is_not_created() -> None:
    role = "arn:aws:iam::123456789012:role/team-exec"
    s = load(environ={**BASE, "EXECUTION_ROLE_ARN": role})
    for env in ("prod", "staging"):
        p = infra.environment_parameters(s, s.environment(env), facts(s))
        assert (p["ExecutionRoleName"], p["ExistingExecutionRoleArn"]) == ("team-exec", role)


@pytest.mark.parametrize(
    ("immutable", "mutable", "expected"),
    [(True, None, "IMMUTABLE"), (True, "*-dirty", "IMMUTABLE_WITH_EXCLUSION"), (False, None, "MUTABLE")],
)
def test_tag_mutability(immutable: bool, mutable: str | None, expected: str) -> None:
    table: dict[str, Any] = {"immutable_tags": immutable, **({"mutable_tags": mutable} if mutable else {})}
    s = load(table)
    assert infra.project_parameters(s, facts(s))["ImageTagMutability"] == expected


def test_the_ci_identity_deploys_only_environments_in_the_projects_cluster() -> None:
    s = load(environ={**BASE}, infra_table={})
    s = config.load(BASE, ROOT, {"environments": {"qa": {"cluster": "qa-cluster"}}})
    arns = infra.project_parameters(s, facts(s))["CiServiceArns"].split(",")
    assert not any("qa" in arn for arn in arns) and len(arns) == 2


def test_environment_parameters_follow_the_settings() -> None:
    infra_table = {"environments": {"prod": {"desired_count": 3, "health_check_grace_seconds": 90}}}
    s = config.load(BASE, ROOT, {"base_path": "/hello/", "infra": infra_table})
    prod = s.environment("prod")
    p = infra.environment_parameters(s, prod, facts(s))
    assert (p["ClusterName"], p["ServiceName"], p["Family"], p["ContainerName"]) == (
        prod.cluster,
        prod.service,
        prod.family,
        prod.container,
    )
    assert (p["ContainerPort"], p["BasePath"], p["PathPatterns"], p["HealthCheckPath"]) == (
        "8080",
        "/hello/",
        "/hello,/hello/*",
        "/hello/health",
    )
    assert (p["DesiredCount"], p["HealthCheckGraceSeconds"]) == ("3", "90")
    assert (p["ExecutionRoleName"], p["ExistingExecutionRoleArn"]) == ("shop-prod-ecs-execution-role", "")
    assert (p["TaskRoleName"], p["SecretsPath"]) == ("shop-prod-ecs-task-role", "shop/prod")
    staging = infra.environment_parameters(s, s.environment("staging"), facts(s))
    assert (staging["ExecutionRoleName"], staging["TaskRoleName"], staging["SecretsPath"]) == (
        "shop-staging-ecs-execution-role",
        "shop-staging-ecs-task-role",
        "shop/staging",
    )
    assert p["LogGroupName"] == s.log_group
    assert (p["Subnets"], p["AssignPublicIp"], p["ListenerArn"], p["RulePriority"]) == (
        "subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb",
        "ENABLED",
        "",
        "1",
    )
    assert (p["LiveTaskDefinition"], p["DomainName"], p["CertificateArn"]) == ("", "", "")


def test_after_the_first_deploy_setup_passes_the_live_revision() -> None:
    s = load()
    live = "arn:aws:ecs:eu-west-1:123456789012:task-definition/shop-service:7"
    p = infra.environment_parameters(s, s.environment("prod"), facts(s, live_task_definition=live))
    assert p["LiveTaskDefinition"] == live


def test_a_shared_listener_and_a_domain() -> None:
    s = load(
        {
            "environments": {
                "prod": {"listener_arn": LISTENER, "domain": "shop.example.com", "certificate_arn": CERT}
            }
        }
    )
    shared = infra.SharedListener(
        LISTENER, "sg-0123456789abcdef0", "shared-1.eu-west-1.elb.amazonaws.com", "Z32O12XQLNTSW2", ()
    )
    p = infra.environment_parameters(
        s, s.environment("prod"), facts(s, listener=shared, rule_priority=12, hosted_zone_id="Z1")
    )
    assert (
        p["ListenerArn"],
        p["SharedAlbSecurityGroup"],
        p["SharedAlbDnsName"],
        p["SharedAlbHostedZoneId"],
    ) == (
        LISTENER,
        "sg-0123456789abcdef0",
        "shared-1.eu-west-1.elb.amazonaws.com",
        "Z32O12XQLNTSW2",
    )
    assert (p["RulePriority"], p["DomainName"], p["HostedZoneId"], p["CertificateArn"]) == (
        "12",
        "shop.example.com",
        "Z1",
        CERT,
    )


def test_stack_requests_are_tagged_with_their_owner() -> None:
    s = load()
    project, env = infra.stack_requests(s, "prod", facts(s))
    assert (project.name, project.template, project.tags) == (
        "shop-project",
        "project.yaml",
        {infra.TAG_PREFIX: "shop", infra.TAG_STACK: "project"},
    )
    assert (env.name, env.template, env.tags[infra.TAG_STACK]) == ("shop-prod", "environment.yaml", "prod")
    assert [r.name for r in infra.stack_requests(s, None, facts(s))] == ["shop-project"]


# --- the deployment strategy (issue 23) ---------------------------------------------------------

SHIFT_RESOURCES = {
    "AlternateTargetGroup",
    "TestListener",
    "TestListenerRule",
    "TestListenerIngress",
    "InfrastructureRole",
}
STRATEGY_PARAMETERS = {
    "Strategy",
    "BakeTimeMinutes",
    "StepPercent",
    "StepBakeTimeMinutes",
    "CanaryPercent",
    "CanaryBakeTimeMinutes",
    "TestPort",
    "GateTimeoutMinutes",
}


def _refs(value: Any) -> set[str]:
    """Every Ref, condition and Fn::If a template fragment names."""
    if isinstance(value, dict):
        found = {str(value["Ref"])} if "Ref" in value else set()
        if isinstance(value.get("Fn::If"), list):
            found.add(value["Fn::If"][0])
        if "Condition" in value and isinstance(value["Condition"], str):
            found.add(value["Condition"])
        return found.union(*(_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value))
    return set()


def test_the_strategy_settings_reach_the_template_as_parameters() -> None:
    s = load({"environments": {"prod": {"strategy": "CANARY", "canary_percent": 12.5, "test_port": 9100}}})
    p = infra.environment_parameters(s, s.environment("prod"), facts(s))
    assert {k: p[k] for k in STRATEGY_PARAMETERS} == {
        "Strategy": "CANARY",
        "BakeTimeMinutes": "5",
        "StepPercent": "10",
        "StepBakeTimeMinutes": "6",
        "CanaryPercent": "12.5",
        "CanaryBakeTimeMinutes": "10",
        "TestPort": "9100",
        "GateTimeoutMinutes": "30",
    }
    assert p["InfrastructureRoleName"] == "shop-prod-ecs-infrastructure-role"
    staging = infra.environment_parameters(s, s.environment("staging"), facts(s))
    assert (staging["Strategy"], staging["InfrastructureRoleName"]) == (
        "ROLLING",
        "shop-staging-ecs-infrastructure-role",
    )


def test_only_a_strategy_that_shifts_traffic_makes_the_test_listener_and_its_peers() -> None:
    env = template(infra.ENVIRONMENT_TEMPLATE)
    resources = env["Resources"]
    assert {n for n, r in resources.items() if r.get("Condition") == "TrafficShift"} == SHIFT_RESOURCES
    assert {n for n, o in env["Outputs"].items() if o.get("Condition") == "TrafficShift"} == {
        "TestUrl",
        "TestListenerArn",
        "TestListenerRuleArn",
        "AlternateTargetGroupArn",
        "InfrastructureRoleArn",
    }
    # The alternate group checks health exactly as the primary does (tags and all).
    assert resources["AlternateTargetGroup"]["Properties"] == resources["TargetGroup"]["Properties"]


def test_the_production_rule_and_target_group_never_change_with_the_strategy() -> None:
    """ECS rewrites the production rule's weights during a deployment; were the template's
    rule to depend on the strategy, a setup would reset them under a live deployment."""
    env = template(infra.ENVIRONMENT_TEMPLATE)
    strategy_bound = (
        STRATEGY_PARAMETERS | {"TrafficShift", "Linear", "Canary", "CircuitBreaker"} | SHIFT_RESOURCES
    )
    for name in (
        "ListenerRule",
        "TargetGroup",
        "HttpListener",
        "HttpsListener",
        "LoadBalancer",
        "AlbSecurityGroup",
    ):
        assert not _refs(env["Resources"][name]) & strategy_bound, name


def test_the_smoke_gate_pauses_after_test_traffic_and_rolls_back_on_timeout() -> None:
    service = template(infra.ENVIRONMENT_TEMPLATE)["Resources"]["Service"]["Properties"]
    config = service["DeploymentConfiguration"]
    condition, [hook], none = config["LifecycleHooks"]["Fn::If"]
    assert (condition, none) == ("TrafficShift", [])  # ROLLING clears any hook left from before
    assert hook == {
        "TargetType": "PAUSE",
        "LifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
        "TimeoutConfiguration": {"TimeoutInMinutes": {"Ref": "GateTimeoutMinutes"}, "Action": "ROLLBACK"},
    }
    assert config["Strategy"] == {"Fn::If": ["TrafficShift", {"Ref": "Strategy"}, "ROLLING"]}
    [balancer] = service["LoadBalancers"]
    condition, advanced, _ = balancer["AdvancedConfiguration"]["Fn::If"]
    assert condition == "TrafficShift"
    assert advanced == {
        "AlternateTargetGroupArn": {"Ref": "AlternateTargetGroup"},
        "ProductionListenerRule": {"Ref": "ListenerRule"},
        "TestListenerRule": {"Ref": "TestListenerRule"},
        "RoleArn": {"Fn::GetAtt": ["InfrastructureRole", "Arn"]},
    }


def test_the_infrastructure_role_trusts_ecs_only_and_names_only_this_environments_resources() -> None:
    role = template(infra.ENVIRONMENT_TEMPLATE)["Resources"]["InfrastructureRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert (trust["Principal"], trust["Action"], trust["Effect"]) == (
        {"Service": "ecs.amazonaws.com"},
        "sts:AssumeRole",
        "Allow",
    )
    assert "ManagedPolicyArns" not in role  # not AWS's policy for every load balancer in the account
    [policy] = role["Policies"]
    for statement in policy["PolicyDocument"]["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if statement["Resource"] == "*":  # only what IAM offers no resource-level permission for
            assert all(a.startswith("elasticloadbalancing:Describe") for a in actions), statement
        else:
            assert _refs(statement["Resource"]) <= {
                "TargetGroup",
                "AlternateTargetGroup",
                "ListenerRule",
                "TestListenerRule",
                "Https",
                "HttpsListener",
                "HttpListener",
                "TestListener",
            }, statement
