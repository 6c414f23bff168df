"""STAND-IN for a one-off task's life on ECS, where the emulator cannot show it on demand.

`ScriptedTasks` wraps a real boto3 ECS client on the emulator and passes every call
through except RunTask, DescribeTasks and StopTask: RunTask is recorded and answers one
task; each DescribeTasks answers the next scripted state of it (in the real API's
shapes) and may first write log lines into the emulator's CloudWatch Logs, as the
awslogs driver would while the container runs; StopTask is recorded. Handed to the
verbs at the one seam, `Clients(aws_factory=...)`. CloudWatch Logs stays the
emulator's own.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def task(
    status: str,
    container: str,
    exit_code: int | None = None,
    stop_code: str = "",
    reason: str = "",
    container_reason: str = "",
) -> dict[str, Any]:
    """A DescribeTasks task in the real API's shape (the ARN is filled in by the stand-in)."""
    c: dict[str, Any] = {"name": container, "lastStatus": status}
    if exit_code is not None:
        c["exitCode"] = exit_code
    if container_reason:
        c["reason"] = container_reason
    t: dict[str, Any] = {
        "lastStatus": status,
        "desiredStatus": "STOPPED" if status == "STOPPED" else "RUNNING",
    }
    t["containers"] = [c]
    if stop_code:
        t["stopCode"] = stop_code
    if reason:
        t["stoppedReason"] = reason
    return t


@dataclass
class Step:
    """One DescribeTasks answer, and the log lines written just before it."""

    task: dict[str, Any] | BaseException
    lines: tuple[str, ...] = ()


@dataclass
class ScriptedTasks:
    real: Any
    logs: Any  # a boto3 CloudWatch Logs client on the emulator
    steps: list[Step]
    log_group: str = ""
    stream_prefix: str = ""
    run_requests: list[dict[str, Any]] = field(default_factory=list)
    stopped: list[dict[str, Any]] = field(default_factory=list)
    task_arn: str = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def run_task(self, **request: Any) -> dict[str, Any]:
        self.run_requests.append(request)
        cluster = request["cluster"].rsplit("/", 1)[-1]
        self.task_arn = f"arn:aws:ecs:us-east-1:123456789012:task/{cluster}/{uuid.uuid4().hex}"
        return {"tasks": [{"taskArn": self.task_arn, "lastStatus": "PROVISIONING"}], "failures": []}

    def describe_tasks(self, cluster: str, tasks: list[str]) -> dict[str, Any]:
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step.task, BaseException):
            raise step.task
        if step.lines:
            self.write(step.lines)
        return {"tasks": [{**step.task, "taskArn": self.task_arn}], "failures": []}

    def write(self, lines: tuple[str, ...]) -> None:
        """What the awslogs driver does with a container's output."""
        container = self.run_requests[-1]["overrides"]["containerOverrides"][0]["name"]
        stream = f"{self.stream_prefix}/{container}/{self.task_arn.rsplit('/', 1)[-1]}"
        with contextlib.suppress(self.logs.exceptions.ResourceAlreadyExistsException):
            self.logs.create_log_stream(logGroupName=self.log_group, logStreamName=stream)
        now = int(time.time() * 1000)
        self.logs.put_log_events(
            logGroupName=self.log_group,
            logStreamName=stream,
            logEvents=[{"timestamp": now, "message": line} for line in lines],
        )

    def stop_task(self, **request: Any) -> dict[str, Any]:
        self.stopped.append(request)
        return {"task": {"taskArn": request["task"]}}


def factory(aws: Callable[[str], Any], scripted: ScriptedTasks) -> Callable[[str], Any]:
    return lambda service: scripted if service == "ecs" else aws(service)
