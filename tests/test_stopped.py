"""A failed deploy shows each stopped task's reason, exit code and the last 20 lines of
its essential container's log; a logs error never hides the failure. ECS's rollout
and stopped tasks come from the stand-in (tests/ecs_standin.py); the task definition,
ECR and CloudWatch Logs are the emulator's own."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline import deploy
from pipeline.errors import DeployFailed
from tests import ecs_standin as standin
from tests.conftest import DeployTarget

TASK_ID = "0f1e2d3c4b5a"


def stopped_task(target: DeployTarget) -> dict[str, Any]:
    return {
        "taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/{target.cluster}/{TASK_ID}",
        "taskDefinitionArn": f"arn:aws:ecs:us-east-1:123456789012:task-definition/{target.family}:2",
        "lastStatus": "STOPPED",
        "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited",
        "containers": [{"name": target.service, "exitCode": 3}],
    }


class BrokenLogs:
    """A CloudWatch Logs client that refuses every call, as one without permission does."""

    class exceptions:  # noqa: N801 (boto3's shape)
        ResourceNotFoundException = type("ResourceNotFoundException", (ClientError,), {})

    def __getattr__(self, name: str) -> Any:
        def refuse(**_kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, name)

        return refuse


def deploy_failing(
    aws: Callable[[str], Any], make_context: Callable[..., Any], target: DeployTarget, logs_client: Any = None
) -> tuple[str, str]:
    fake = standin.ScriptedECS(
        aws("ecs"), [[standin.failed, standin.rolled_back]], stopped_tasks=[stopped_task(target)]
    )

    def factory(name: str) -> Any:
        if name == "ecs":
            return fake
        return logs_client if name == "logs" and logs_client is not None else aws(name)

    ctx = make_context(aws_factory=factory)
    options = deploy.DeployOptions("prod", target.sha, timeout=5.0, smoke=False, sleep=lambda _s: None)
    with pytest.raises(DeployFailed) as caught:
        deploy.deploy(ctx, options)
    return ctx.out.stream.getvalue(), caught.value.message


def test_a_failed_deploy_shows_the_crashed_containers_last_20_lines(
    aws: Callable[[str], Any], make_context: Callable[..., Any], deploy_target: DeployTarget, prefix: str
) -> None:
    cw = aws("logs")
    group, stream = f"/ecs/{prefix}", f"prod/{deploy_target.service}/{TASK_ID}"
    cw.create_log_group(logGroupName=group)
    cw.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    cw.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": now + i, "message": f"line {i}"} for i in range(1, 26)],
    )
    output, failure = deploy_failing(aws, make_context, deploy_target)
    assert (
        f"stopped: task {TASK_ID}: Essential container in task exited; {deploy_target.service}: exit 3"
        in output
    )
    assert f"last 20 lines of {deploy_target.service} ({group} {stream}):" in output
    shown = [line.strip() for line in output.splitlines() if line.strip().startswith("| line")]
    assert shown == [f"| line {i}" for i in range(6, 26)]
    assert "circuit breaker" in failure


def test_no_stream_says_so(
    aws: Callable[[str], Any], make_context: Callable[..., Any], deploy_target: DeployTarget
) -> None:
    output, _failure = deploy_failing(aws, make_context, deploy_target)
    assert f"stopped: task {TASK_ID}" in output
    assert "(no log lines in /ecs/" in output


def test_a_logs_error_is_one_note_and_the_failure_stays(
    aws: Callable[[str], Any], make_context: Callable[..., Any], deploy_target: DeployTarget
) -> None:
    output, failure = deploy_failing(aws, make_context, deploy_target, logs_client=BrokenLogs())
    assert f"stopped: task {TASK_ID}: Essential container in task exited" in output
    assert "(its log could not be read: AccessDenied" in output
    # The failure itself, whole: the circuit breaker's verdict and ECS's rollback.
    assert failure == (
        f"deploy of {deploy_target.family}:2 to prod failed: ECS deployment circuit breaker: tasks failed "
        f"to start; ECS rolled back to {deploy_target.family}:1, which runs now"
    )
