"""STAND-IN for ECS's awslogs log driver: a task's container output in CloudWatch Logs.

On ECS a container whose definition says `logDriver: awslogs` has its stdout and stderr
sent, line by line, to the log stream `<awslogs-stream-prefix>/<container>/<task-id>`
in `awslogs-group` (created first when `awslogs-create-group` is "true"; without it a
missing group stops the task from starting). Here the container runs on the local
Docker engine, so a thread follows its Docker log and copies each line, with Docker's
own time stamp, into moto's CloudWatch Logs backend in this process: GetLogEvents,
FilterLogEvents and `aws logs get-log-events` then answer what they would on AWS.

The scheduler's hook is three calls: `refusal(cdef, ...)` before a task starts (ECS's
ResourceInitializationError when the group is missing), `ship(container, cdef, ...)`
right after it starts a container, and `flush(container_id)` before it removes one,
so a container's last lines are in CloudWatch Logs before its Docker log is gone.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MISSING_GROUP = (
    "ResourceInitializationError: failed to validate logger args: create stream has been retried 1 times: "
    "failed to create Cloudwatch log stream: ResourceNotFoundException: The specified log group does not "
    "exist. : exit status 1"
)


@dataclass(frozen=True)
class Destination:
    """Where the driver writes one container of one task."""

    group: str
    stream: str
    region: str | None
    create_group: bool


def destination(cdef: dict[str, Any], task_arn: str) -> Destination | None:
    """The container's awslogs destination in this task; None for another driver. Pure.

    Without a stream prefix ECS names the stream after the Docker container id; this
    stand-in uses the task id instead (nothing reads such a stream by name).
    """
    config = cdef.get("logConfiguration") or {}
    options = config.get("options") or {}
    if config.get("logDriver") != "awslogs" or not options.get("awslogs-group"):
        return None
    task_id = task_arn.rsplit("/", 1)[-1]
    prefix = options.get("awslogs-stream-prefix")
    stream = f"{prefix}/{cdef['name']}/{task_id}" if prefix else task_id
    return Destination(
        options["awslogs-group"],
        stream,
        options.get("awslogs-region"),
        str(options.get("awslogs-create-group", "")).lower() == "true",
    )


def parse_line(raw: str) -> tuple[int, str]:
    """`<RFC 3339 nano time stamp> <message>` (Docker's log with timestamps) → (ms, message)."""
    stamp, _, message = raw.partition(" ")
    try:
        seconds, _, fraction = stamp.rstrip("Z").partition(".")
        at = datetime.strptime(seconds, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        millis = int(at.timestamp() * 1000) + int((fraction + "000")[:3])
    except ValueError:  # no time stamp: now
        return int(datetime.now(UTC).timestamp() * 1000), raw
    return millis, message


def _group(account: str, region: str, name: str, create: bool) -> Any:
    from moto.logs.models import logs_backends

    backend = logs_backends[account][region]
    if name not in backend.groups and create:
        backend.create_log_group(name, {})
    return backend.groups.get(name)


def refusal(cdef: dict[str, Any], task_arn: str, account: str, region: str) -> str | None:
    """ECS's stoppedReason when the container's log group is missing, else None."""
    where = destination(cdef, task_arn)
    if where is None or where.create_group:
        return None
    return None if _group(account, where.region or region, where.group, False) else MISSING_GROUP


class Shipper:
    """Follows one container's Docker log and appends each line to its log stream."""

    def __init__(self, container: Any, where: Destination, account: str, region: str) -> None:
        self.container, self.where = container, where
        self.account, self.region = account, where.region or region
        self.lines = 0
        self._thread = threading.Thread(target=self._run, name=f"awslogs {where.stream}", daemon=True)

    def start(self) -> Shipper:
        self._thread.start()
        return self

    def wait(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            group = _group(self.account, self.region, self.where.group, self.where.create_group)
            if group is None:
                print(
                    f"awslogs: log group {self.where.group} does not exist; {self.where.stream} dropped",
                    flush=True,
                )
                return
            if self.where.stream not in group.streams:
                group.create_log_stream(self.where.stream)
            stream = group.streams[self.where.stream]
            pending = b""
            # The Docker log from the start (stdout and stderr), ending when the container stops.
            for chunk in self.container.logs(
                stream=True, follow=True, timestamps=True, stdout=True, stderr=True
            ):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                self._put(stream, complete)
            if pending:
                self._put(stream, [pending])
        except Exception as exc:  # a log copy must never take a task down with it
            print(f"awslogs: {self.where.stream}: {type(exc).__name__}: {exc}", flush=True)

    def _put(self, stream: Any, raw_lines: list[bytes]) -> None:
        events = [parse_line(line.decode("utf-8", "replace")) for line in raw_lines if line]
        if events:
            stream.put_log_events([{"timestamp": at, "message": message} for at, message in events])
            self.lines += len(events)


_shippers: dict[str, Shipper] = {}
_lock = threading.Lock()


def ship(container: Any, cdef: dict[str, Any], task_arn: str, account: str, region: str) -> Shipper | None:
    """Start copying a just-started container's output; None when it logs elsewhere."""
    where = destination(cdef, task_arn)
    if where is None:
        return None
    shipper = Shipper(container, where, account, region).start()
    with _lock:
        _shippers[container.id] = shipper
    return shipper


def flush(container_id: str, timeout: float = 5.0) -> None:
    """Before a container is removed: wait until its last lines are copied."""
    with _lock:
        shipper = _shippers.pop(container_id, None)
    if shipper is not None:
        shipper.wait(timeout)
