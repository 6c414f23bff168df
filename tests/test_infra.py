"""`invoke setup` / `invoke teardown`, the parts that need no AWS: the templates against
cfn-lint and AWS's resource specification, the [tool.pipeline.infra] settings, and the
pure functions that decide parameters, priorities and what a change set says.
The stacks themselves, on the emulator: tests/test_infra_stack.py."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline import config, infra
from pipeline.ecr import ImageRecord
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "pipeline" / "templates"
ACCOUNT = "123456789012"
BASE = {"AWS_RESOURCE_NAME_PREFIX": "shop", "AWS_DEFAULT_REGION": "eu-west-1"}
ORG = "0b6b3a9e-6a35-4b5c-9a4e-1f2e3d4c5b6a"
PROJECT = "7c9d2f10-3e4a-4b8c-8d1e-2a3b4c5d6e7f"
LISTENER = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/shared/0123456789abcdef/fedcba9876543210"
CERT = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"


def load(infra_table: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> config.Settings:
    project = {"infra": infra_table} if infra_table is not None else {}
    return config.load(environ or BASE, ROOT, project)


def problems(infra_table: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(infra_table)
    return info.value.problems


def facts(settings: config.Settings, **overrides: Any) -> infra.Facts:
    base = infra.Facts(
        account_id=ACCOUNT,
        partition="aws",
        registry=f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
        cluster="shop-cluster",
        project=infra.StackState("shop-project"),
        create_repository=True,
        oidc_provider_arn="",
        environment=infra.StackState("shop-prod"),
        network=infra.Network(
            "vpc-0a1b2c3d4e5f60718", ("subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"), (), True
        ),
        image=f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/shop:abc1234",
    )
    return infra.Facts(**{**base.__dict__, **overrides})


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
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True,
        "Rollback": True,
    }
    assert env["TargetGroup"]["Properties"]["TargetType"] == "ip"


# --- [tool.pipeline.infra] -------------------------------------------------------------------


def test_infra_defaults() -> None:
    s = load()
    assert s.infra.ci_identity == "user"
    assert (s.infra.log_retention_days, s.infra.keep_images, s.infra.immutable_tags) == (30, 100, True)
    prod = s.infra.environment("prod")
    assert (prod.vpc_id, prod.subnets, prod.listener_arn, prod.desired_count) == (None, (), None, 1)


def test_environment_tables_override_the_infra_defaults() -> None:
    s = load(
        {
            "subnets": ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"],
            "desired_count": 2,
            "circleci_org_id": ORG,
            "circleci_project_id": PROJECT,
            "environments": {"staging": {"desired_count": 1, "listener_arn": LISTENER, "rule_priority": 7}},
        }
    )
    assert s.infra.ci_identity == "oidc"  # implied by the organization id
    prod, staging = s.infra.environment("prod"), s.infra.environment("staging")
    assert (prod.desired_count, prod.listener_arn) == (2, None)
    assert (staging.desired_count, staging.listener_arn, staging.rule_priority) == (1, LISTENER, 7)
    assert staging.subnets == prod.subnets == ("subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb")


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"vpc": "vpc-1"}, "[tool.pipeline.infra] vpc: unknown setting"),
        ({"vpc_id": "vpc-nothex"}, "[tool.pipeline.infra] vpc_id: 'vpc-nothex' must be a VPC id"),
        (
            {"subnets": "subnet-0aaaaaaaaaaaaaaaa"},
            "subnets: 'subnet-0aaaaaaaaaaaaaaaa' must be a non-empty list",
        ),
        ({"log_retention_days": 10}, "log_retention_days: 10 must be one of CloudWatch's retention periods"),
        ({"rule_priority": 0}, "rule_priority: 0 must be a listener rule priority"),
        ({"ci_identity": "oidc"}, 'circleci_org_id: needed for ci_identity = "oidc"'),
        ({"circleci_org_id": "acme"}, "circleci_org_id: 'acme' must be CircleCI's organization id"),
        ({"environments": {"qa": {}}}, "[tool.pipeline.infra.environments.qa]: no such environment"),
        ({"environments": {"prod": {"keep_images": 3}}}, "keep_images: a project-wide setting"),
        ({"domain": "hello.example.com"}, "domain: hello.example.com would be served over plain HTTP"),
        ({"certificate_arn": CERT}, "certificate_arn: needs a domain"),
        ({"hosted_zone_id": "Z123"}, "hosted_zone_id: needs a domain"),
        ({"security_groups": ["sg-0aaaaaaaaaaaaaaaa"]}, "security_groups: give vpc_id or subnets too"),
        ({"immutable_tags": False, "mutable_tags": "latest"}, "mutable_tags: only means something"),
        ({"listener_arn": "arn:aws:elasticloadbalancing:eu-west-1:1:loadbalancer/app/x"}, "listener_arn"),
    ],
)
def test_bad_infra_settings_are_named(table: dict[str, Any], expected: str) -> None:
    found = problems(table)
    assert any(expected in p for p in found), found


def test_every_infra_problem_at_once() -> None:
    found = problems(
        {"vpc_id": "x", "desired_count": -1, "environments": {"prod": {"domain": "not a domain"}}}
    )
    assert len(found) == 3


def test_a_domain_on_a_shared_listener_may_use_the_listeners_certificate() -> None:
    s = load({"environments": {"prod": {"domain": "shop.example.com", "listener_arn": LISTENER}}})
    assert s.infra.environment("prod").certificate_arn is None


# --- names -----------------------------------------------------------------------------------


def test_stack_names() -> None:
    s = load(environ={**BASE, "AWS_RESOURCE_NAME_PREFIX": "my_shop"})
    assert infra.project_stack_name(s) == "my-shop-project"
    assert infra.environment_stack_name(s, "staging") == "my-shop-staging"
    assert infra.name_problems(s) == []


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("9shop", "makes the stack name '9shop-project', which CloudFormation refuses"),
        ("s" * 60, "longer than IAM's 64 characters"),
    ],
)
def test_names_aws_would_refuse(prefix: str, expected: str) -> None:
    found = infra.name_problems(load(environ={**BASE, "AWS_RESOURCE_NAME_PREFIX": prefix}))
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(
    ("base_path", "patterns"),
    [("/hello/", ["/hello", "/hello/*"]), ("/a/b/", ["/a/b", "/a/b/*"]), ("/", ["/*"])],
)
def test_path_patterns(base_path: str, patterns: list[str]) -> None:
    assert infra.path_patterns(base_path) == patterns


@pytest.mark.parametrize(
    ("region", "expected"), [("us-east-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")]
)
def test_partition(region: str, expected: str) -> None:
    assert infra.partition(region) == expected


# --- decisions ---------------------------------------------------------------------------------


def rule(
    arn: str, priority: int | None, paths: tuple[str, ...] = (), hosts: tuple[str, ...] = ()
) -> infra.ListenerRule:
    return infra.ListenerRule(arn, priority, paths, hosts)


RULES = [
    rule("default", None),
    rule("a", 1, ("/a/*",)),
    rule("b", 2, ("/b/*",)),
    rule("ours", 3, ("/hello/*",)),
]


@pytest.mark.parametrize(
    ("ours", "configured", "current", "expected"),
    [
        (None, None, None, 4),  # the lowest free one (3 is a rule of another stack here)
        ("ours", None, 3, 3),  # keeps its own
        ("ours", 10, 3, 10),  # a configured priority wins
        (None, None, 2, 4),  # the stack's old priority was taken meanwhile
        ("ours", 3, None, 3),  # our own rule does not block us
    ],
)
def test_choose_priority(
    ours: str | None, configured: int | None, current: int | None, expected: int
) -> None:
    assert infra.choose_priority(RULES, ours, configured, current) == expected


def test_a_configured_priority_another_rule_holds_is_refused() -> None:
    with pytest.raises(
        ConfigError,
        match="rule_priority 2: another rule on the shared listener holds it \\(b\\); choose a free one, e.g. 4",
    ):
        infra.choose_priority(RULES, None, 2, None)


@pytest.mark.parametrize(
    ("existing", "paths", "host", "clash"),
    [
        ([rule("x", 5, ("/hello/*",))], ["/hello", "/hello/*"], None, "x"),
        ([rule("x", 5, ("/hello/*",), ("a.example.com",))], ["/hello/*"], "b.example.com", None),
        ([rule("x", 5, ("/hello/*",), ("a.example.com",))], ["/hello/*"], "a.example.com", "x"),
        ([rule("x", 5, ("/hello/*",))], ["/hello/*"], "a.example.com", "x"),  # x takes every host
        ([rule("x", 5, ("/other/*",))], ["/hello/*"], None, None),
        ([rule("ours", 5, ("/hello/*",))], ["/hello/*"], None, None),
        ([rule("default", None, ())], ["/hello/*"], None, None),
    ],
)
def test_conflicting_rule(
    existing: list[infra.ListenerRule], paths: list[str], host: str | None, clash: str | None
) -> None:
    found = infra.conflicting_rule(existing, "ours", paths, host)
    assert (found.arn if found else None) == clash


@pytest.mark.parametrize(
    ("domain", "zones", "expected"),
    [
        ("shop.example.com", [("/hostedzone/Z1", "example.com.", False)], "Z1"),
        (
            "shop.example.com",
            [("/hostedzone/Z1", "example.com.", False), ("/hostedzone/Z2", "shop.example.com.", False)],
            "Z2",
        ),
        (
            "shop.example.com",
            [("/hostedzone/Z1", "example.com.", True), ("/hostedzone/Z2", "example.com.", False)],
            "Z2",
        ),
        ("shop.example.com", [("/hostedzone/Z1", "ample.com.", False)], None),
        ("shop.example.com", [("/hostedzone/Z1", "other.com.", False)], None),
        ("example.com", [("/hostedzone/Z1", "example.com.", False)], "Z1"),
    ],
)
def test_zone_for(domain: str, zones: list[tuple[str, str, bool]], expected: str | None) -> None:
    assert infra.zone_for(domain, zones) == expected


def image(tags: tuple[str, ...], day: int) -> ImageRecord:
    return ImageRecord(f"sha256:{day}", tags, datetime(2025, 1, day, tzinfo=UTC), 1)


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ([], None),
        ([image((), 3)], None),
        ([image(("old",), 1), image(("new",), 2), image((), 3)], "new"),
    ],
)
def test_newest_tag(images: list[ImageRecord], expected: str | None) -> None:
    assert infra.newest_tag(images) == expected


def test_project_cluster_is_shared_by_the_environments() -> None:
    s = load()
    project = infra.StackState("shop-project", "id", "CREATE_COMPLETE", {"ClusterName": "shop-cluster"})
    assert infra.project_cluster(s, "staging", project) == "shop-cluster"
    assert infra.project_cluster(s, None, infra.StackState("shop-project")) == "shop-cluster"
    other = infra.StackState("shop-project", "id", "CREATE_COMPLETE", {"ClusterName": "elsewhere"})
    with pytest.raises(
        ConfigError, match="environment staging uses cluster shop-cluster but the project stack"
    ):
        infra.project_cluster(s, "staging", other)


# --- parameters ----------------------------------------------------------------------------------


def test_project_parameters_follow_the_settings() -> None:
    s = load(
        {
            "ci_identity": "oidc",
            "circleci_org_id": ORG,
            "circleci_project_id": PROJECT,
            "mutable_tags": "latest",
        }
    )
    p = infra.project_parameters(s, facts(s, oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/x"))
    assert p["RepositoryName"] == s.repository == "shop"
    assert p["ClusterName"] == s.environment("prod").cluster
    assert p["LogGroupName"] == s.log_group
    assert (p["ExecutionRoleName"], p["ExistingExecutionRoleArn"]) == (s.execution_role, "")
    assert (p["ImageTagMutability"], p["MutableTagPattern"]) == ("IMMUTABLE_WITH_EXCLUSION", "latest")
    assert (p["CiIdentity"], p["CircleCiOrgId"], p["CircleCiProjectId"]) == ("oidc", ORG, PROJECT)
    assert p["OidcProviderArn"] == "arn:aws:iam::123456789012:oidc-provider/x"
    assert p["CiServiceArns"].split(",") == [
        "arn:aws:ecs:eu-west-1:123456789012:service/shop-cluster/shop-service",
        "arn:aws:ecs:eu-west-1:123456789012:service/shop-cluster/shop-staging-service",
    ]
    assert p["CiTaskDefinitionArns"].split(",") == [
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/shop-service:*",
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/shop-staging-service:*",
    ]


def test_an_execution_role_made_elsewhere_is_not_created() -> None:
    role = "arn:aws:iam::123456789012:role/team-exec"
    s = load(environ={**BASE, "EXECUTION_ROLE_ARN": role})
    p = infra.project_parameters(s, facts(s))
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
    assert p["ExecutionRoleArn"] == s.execution_role_arn(ACCOUNT)
    assert p["TaskRoleArn"] == "arn:aws:iam::123456789012:role/shop-ecs-task-role"
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


# --- what CloudFormation says ---------------------------------------------------------------------


def api_change(action: str, logical: str, kind: str, replacement: str | None = None) -> dict[str, Any]:
    change = {"Action": action, "LogicalResourceId": logical, "ResourceType": kind}
    if replacement:
        change["Replacement"] = replacement
    return {"Type": "Resource", "ResourceChange": change}


def test_change_set_summary() -> None:
    changes = infra.changes_from(
        [
            api_change("Add", "DnsRecord", "AWS::Route53::RecordSet"),
            api_change("Modify", "Service", "AWS::ECS::Service", "False"),
            api_change("Modify", "TargetGroup", "AWS::ElasticLoadBalancingV2::TargetGroup", "True"),
            api_change("Remove", "HttpsListener", "AWS::ElasticLoadBalancingV2::Listener"),
        ]
    )
    lines = infra.summary(changes)
    assert lines[0] == "1 to add, 2 to modify, 1 to remove; REPLACES TargetGroup"
    assert lines[1].split() == ["+", "Add", "DnsRecord", "AWS::Route53::RecordSet"]
    assert lines[2].endswith("AWS::ECS::Service  (replacement: False)")
    assert lines[3].startswith("~ Modify  TargetGroup") and lines[3].endswith("(replacement: True)")
    assert lines[4].startswith("- Remove  HttpsListener")
    assert infra.summary([]) == ["no resource changes (parameters or outputs only)"]


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (
            "FAILED",
            "The submitted information didn't contain changes. Submit different information to create a change set.",
            True,
        ),
        ("FAILED", "No updates are to be performed.", True),
        ("FAILED", "Template error: instance of Fn::GetAtt references undefined resource X", False),
        ("CREATE_COMPLETE", "", False),
    ],
)
def test_no_change_is_recognised(status: str, reason: str, expected: bool) -> None:
    assert infra.is_no_change(status, reason) is expected


def event(logical: str, status: str, reason: str = "", kind: str = "AWS::ECS::Service") -> dict[str, Any]:
    return {
        "LogicalResourceId": logical,
        "ResourceType": kind,
        "ResourceStatus": status,
        "ResourceStatusReason": reason,
    }


ROLLED_BACK = [
    event("shop-prod", "UPDATE_IN_PROGRESS", "User Initiated", "AWS::CloudFormation::Stack"),
    event(
        "TargetGroup",
        "UPDATE_FAILED",
        "Resource update cancelled",
        "AWS::ElasticLoadBalancingV2::TargetGroup",
    ),
    event(
        "Service",
        "UPDATE_FAILED",
        'Resource handler returned message: "Invalid request provided: subnet-0 not found"',
    ),
    event(
        "shop-prod",
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "The following resource(s) failed to update: [Service].",
        "AWS::CloudFormation::Stack",
    ),
    event("shop-prod", "UPDATE_ROLLBACK_COMPLETE", "", "AWS::CloudFormation::Stack"),
]


@pytest.mark.parametrize(
    ("status", "events", "expected"),
    [
        (
            "UPDATE_ROLLBACK_COMPLETE",
            ROLLED_BACK,
            'shop-prod: Service (AWS::ECS::Service) UPDATE_FAILED: Resource handler returned message: "Invalid request '
            'provided: subnet-0 not found"; CloudFormation rolled the stack back to what it was before',
        ),
        ("ROLLBACK_COMPLETE", [event("Service", "CREATE_FAILED", "boom")], "rolled the creation back"),
        (
            "UPDATE_ROLLBACK_FAILED",
            [event("Service", "UPDATE_FAILED", "boom")],
            "the rollback failed too (UPDATE_ROLLBACK_FAILED)",
        ),
        (
            "DELETE_FAILED",
            [event("Cluster", "DELETE_FAILED", "has services", "AWS::ECS::Cluster")],
            "Cluster (AWS::ECS::Cluster) DELETE_FAILED: has services",
        ),
        ("ROLLBACK_COMPLETE", [], "no resource reported a failure"),
    ],
)
def test_failure_message_names_the_failing_resource(
    status: str, events: list[dict[str, Any]], expected: str
) -> None:
    assert expected in infra.failure_message("shop-prod", status, events)


def test_event_line() -> None:
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    line = infra.event_line({**event("Service", "CREATE_FAILED", "boom"), "Timestamp": at})
    assert line.split() == ["03:04:05", "Service", "CREATE_FAILED", "boom"]


def test_teardown_plan_lines() -> None:
    env, project = infra.StackState("shop-prod", resources={"Service": "s"}), infra.StackState("shop-project")
    kept = infra.TeardownPlan((env, project), "shop", 4, False, ())
    assert kept.lines() == [
        "delete stack shop-prod (1 resources)",
        "delete stack shop-project (0 resources)",
        "keep ECR repository shop and its 4 images (--force deletes them)",
    ]
    forced = infra.TeardownPlan((env, project), "shop", 4, True, ())
    assert forced.lines()[-1] == "delete ECR repository shop and its 4 images (--force)"
    staying = infra.TeardownPlan((env,), "shop", 4, False, ("shop-staging",))
    assert staying.lines()[1:] == [
        "the project stack stays: environment stacks remain (shop-staging)",
        "ECR repository shop stays with the project stack",
    ]


@pytest.mark.parametrize(
    ("yes", "typed", "expected"),
    [(True, "", True), (False, "shop-prod\n", True), (False, "yes\n", False)],
)
def test_confirmation(yes: bool, typed: str, expected: bool) -> None:
    import io

    prompt = io.StringIO()
    assert infra.ask(yes, io.StringIO(typed), prompt)("shop-prod") is expected
    assert prompt.getvalue() == ("" if yes else "type shop-prod to delete it: ")


def test_no_stdin_and_no_yes_is_refused() -> None:
    import io

    with pytest.raises(ConfigError, match="teardown needs a confirmation and stdin has none; pass --yes"):
        infra.ask(False, io.StringIO(""), io.StringIO())("shop-prod")
