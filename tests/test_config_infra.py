"""pipeline/config/infra.py: the [tool.pipeline.infra] settings, their defaults and every problem named."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra_fixtures import CERT, LISTENER, ORG, PROJECT, load, problems


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


# --- the deployment strategy (issue 23) ---------------------------------------------------------


def test_strategy_defaults_and_a_project_default_overridden_per_environment() -> None:
    prod = load().infra.environment("prod")
    assert (prod.strategy, prod.bake_time_minutes, prod.test_port, prod.gate_timeout_minutes) == (
        "ROLLING",
        5,
        9000,
        30,
    )
    assert (prod.step_percent, prod.step_bake_time_minutes) == (10.0, 6)  # ECS's own defaults
    assert (prod.canary_percent, prod.canary_bake_time_minutes) == (5.0, 10)
    s = load(
        {
            "strategy": "CANARY",
            "canary_percent": 12.5,
            "environments": {"staging": {"strategy": "ROLLING"}, "prod": {"canary_bake_time_minutes": 30}},
        }
    )
    prod, staging = s.infra.environment("prod"), s.infra.environment("staging")
    assert (prod.strategy, prod.canary_percent, prod.canary_bake_time_minutes) == ("CANARY", 12.5, 30)
    assert staging.strategy == "ROLLING"  # the project's canary settings are prod's, not a mistake here
    # A project-wide step for the one LINEAR environment is a default, not a mistake.
    s = load({"step_percent": 20, "environments": {"prod": {"strategy": "LINEAR"}}})
    assert (s.infra.environment("prod").step_percent, s.infra.environment("staging").strategy) == (
        20,
        "ROLLING",
    )


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            {"strategy": "blue_green"},
            "strategy: 'blue_green' must be one of ECS's deployment strategies: ROLLING",
        ),
        ({"strategy": "CODE_DEPLOY"}, "strategy: 'CODE_DEPLOY' must be one of"),
        (
            {"strategy": "BLUE_GREEN", "bake_time_minutes": 1441},
            "bake_time_minutes: 1441 must be a number of minutes, 0-1440",
        ),
        ({"strategy": "BLUE_GREEN", "bake_time_minutes": -1}, "bake_time_minutes: -1 must be"),
        (
            {"strategy": "LINEAR", "step_percent": 2.9},
            "step_percent: 2.9 must be a percentage from 3.0 to 100.0",
        ),
        ({"strategy": "LINEAR", "step_percent": 10.05}, "step_percent: 10.05 must be a percentage"),
        ({"strategy": "LINEAR", "step_percent": 101}, "step_percent: 101 must be"),
        ({"strategy": "LINEAR", "step_percent": "10"}, "step_percent: '10' must be"),
        ({"strategy": "LINEAR", "step_bake_time_minutes": 1500}, "step_bake_time_minutes: 1500 must be"),
        (
            {"strategy": "CANARY", "canary_percent": 0},
            "canary_percent: 0 must be a percentage from 0.1 to 100.0",
        ),
        ({"strategy": "CANARY", "canary_percent": True}, "canary_percent: True must be"),
        ({"strategy": "CANARY", "canary_bake_time_minutes": 2000}, "canary_bake_time_minutes: 2000 must be"),
        ({"strategy": "BLUE_GREEN", "test_port": 80}, "test_port: 80 must be a port, 1-65535, other than"),
        ({"strategy": "BLUE_GREEN", "test_port": 443}, "test_port: 443 must be"),
        ({"strategy": "BLUE_GREEN", "test_port": 70000}, "test_port: 70000 must be"),
        (
            {"strategy": "BLUE_GREEN", "gate_timeout_minutes": 0},
            "gate_timeout_minutes: 0 must be a number of minutes, 1-20160",
        ),
        # A setting the table's strategy never uses is a mistake, named with the fix.
        (
            {"strategy": "CANARY", "step_percent": 10},
            "[tool.pipeline.infra] step_percent: only means something with strategy = 'LINEAR', which no "
            "environment uses; drop it or set strategy",
        ),
        (
            {"strategy": "LINEAR", "canary_percent": 10},
            "canary_percent: only means something with strategy = 'CANARY'",
        ),
        ({"bake_time_minutes": 3}, "bake_time_minutes: only means something with strategy = 'BLUE_GREEN' or"),
        ({"test_port": 9100}, "test_port: only means something with strategy"),
        (
            {"environments": {"prod": {"strategy": "BLUE_GREEN", "step_bake_time_minutes": 1}}},
            "[tool.pipeline.infra.environments.prod] step_bake_time_minutes: only means something with strategy = 'LINEAR' "
            "(here 'BLUE_GREEN')",
        ),
        (
            {"strategy": "CANARY", "bake_time_minutes": 1000, "canary_bake_time_minutes": 1000},
            "canary_bake_time_minutes: with bake_time_minutes the canary takes over 33 hours",
        ),
        (
            {"environments": {"prod": {"strategy": "BLUE_GREEN", "listener_arn": LISTENER}}},
            "[tool.pipeline.infra.environments.prod] strategy: BLUE_GREEN needs a test listener",
        ),
    ],
)
def test_bad_strategy_settings_are_named(table: dict[str, Any], expected: str) -> None:
    found = problems(table)
    assert any(expected in p for p in found), found


def test_every_strategy_problem_at_once() -> None:
    found = problems(
        {
            "strategy": "LINEAR",
            "step_percent": 1,
            "canary_percent": 5,  # prod's default: prod is CANARY
            "environments": {
                "prod": {
                    "strategy": "CANARY",
                    "canary_percent": 200,
                    "test_port": 443,
                    "step_bake_time_minutes": 3,
                }
            },
        }
    )
    assert len(found) == 4, found  # one line each: two ranges, the port, a linear step on a canary
