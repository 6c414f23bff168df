"""pipeline/arns.py: the partition of a region, the short name of an ARN."""

from __future__ import annotations

import pytest

from pipeline import arns


@pytest.mark.parametrize(
    ("region", "expected"), [("us-east-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")]
)
def test_partition(region: str, expected: str) -> None:
    assert arns.partition(region) == expected


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        ("arn:aws:ecs:us-east-1:123456789012:task-definition/shop-service:7", "shop-service:7"),
        ("arn:aws:ecs:us-east-1:123456789012:task/shop-cluster/0f1e2d3c", "0f1e2d3c"),
        ("shop-service:7", "shop-service:7"),
    ],
)
def test_short(arn: str, expected: str) -> None:
    assert arns.short(arn) == expected
