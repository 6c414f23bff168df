"""Arranging a service whose task definition logs to CloudWatch Logs, for the run-task,
logs and migration tests: its current definition again, plus an awslogs configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

READ_ONLY = {
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
}


def log_to_cloudwatch(
    aws: Callable[[str], Any], cluster: str, service: str, group: str, stream_prefix: str = "prod"
) -> str:
    """Re-register the service's definition with awslogs options and put it in the
    service at desired count 0 (no task of its own writes to the group); its ARN."""
    ecs = aws("ecs")
    current = ecs.describe_services(cluster=cluster, services=[service])["services"][0]["taskDefinition"]
    definition = ecs.describe_task_definition(taskDefinition=current)["taskDefinition"]
    request = {k: v for k, v in definition.items() if k not in READ_ONLY}
    options = {"awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": stream_prefix}
    for container in request["containerDefinitions"]:
        container["logConfiguration"] = {"logDriver": "awslogs", "options": options}
    arn = str(ecs.register_task_definition(**request)["taskDefinition"]["taskDefinitionArn"])
    ecs.update_service(cluster=cluster, service=service, taskDefinition=arn, desiredCount=0)
    return arn
