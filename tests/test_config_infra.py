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
