"""pipeline/infra/changesets.py: what a change set and the stack events say, as a person reads it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline import infra


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
