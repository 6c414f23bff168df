"""ARNs: the partition a region belongs to, and the short names people read."""

from __future__ import annotations


def partition(region: str) -> str:
    """aws, aws-cn or aws-us-gov: ARNs in China and GovCloud name their own partition."""
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def short(arn: str) -> str:
    """The part after the last '/' (family:revision of a task definition ARN, a task id...)."""
    return arn.rsplit("/", 1)[-1]
