"""Task logs in CloudWatch Logs, where ECS's awslogs driver puts them.

The driver writes each container of a task to the stream
`<awslogs-stream-prefix>/<container>/<task-id>` in `awslogs-group`; everything here
follows from that naming. Pure parts (where a container's lines are, parsing --since,
formatting a line) are apart from the few calls that read the API: a task's stream
from a token on (run-task), its last lines (failure reports), and a service's streams
(`invoke logs`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .clients import Clients, aws_errors
from .errors import ConfigError

MISSING = ("ResourceNotFoundException",)


@dataclass(frozen=True)
class LogPlace:
    """Where one container's awslogs driver writes: group, stream prefix, region."""

    group: str
    prefix: str
    container: str
    region: str | None = None

    def stream(self, task_id: str) -> str:
        return f"{self.prefix}/{self.container}/{task_id}"

    @property
    def streams_prefix(self) -> str:
        return f"{self.prefix}/{self.container}/"


def place(container: dict[str, Any]) -> LogPlace | None:
    """A container definition's awslogs destination; None for another driver or none.

    Without awslogs-stream-prefix ECS names the stream after the Docker container id,
    which no client can know in advance: treated as no destination.
    """
    config = container.get("logConfiguration") or {}
    options = config.get("options") or {}
    if config.get("logDriver") != "awslogs" or not options.get("awslogs-group"):
        return None
    if not options.get("awslogs-stream-prefix"):
        return None
    return LogPlace(
        options["awslogs-group"],
        options["awslogs-stream-prefix"],
        container["name"],
        options.get("awslogs-region"),
    )


def places(definition: dict[str, Any]) -> list[LogPlace]:
    return [p for c in definition.get("containerDefinitions", []) if (p := place(c)) is not None]


def task_id(task_arn: str) -> str:
    return task_arn.rsplit("/", 1)[-1]


def stream_task(stream: str) -> tuple[str, str]:
    """(task id, container) from a stream name `<prefix>/<container>/<task-id>`."""
    parts = stream.rsplit("/", 2)
    return (parts[-1], parts[-2]) if len(parts) == 3 else (stream, "?")


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> float:
    """`--since 10m` → seconds (s, m, h, d)."""
    match = _DURATION.match(text.strip())
    if not match or int(match[1]) == 0:
        raise ConfigError(f"--since {text!r}: give a duration such as 30s, 10m, 2h or 1d")
    return int(match[1]) * _UNIT[match[2]]


def format_line(event: dict[str, Any], stream: str | None = None) -> str:
    """One log event as `<time> <task-id> <container>  <message>`."""
    task, container = stream_task(stream or event.get("logStreamName", ""))
    at = datetime.fromtimestamp(event.get("timestamp", 0) / 1000, UTC).strftime("%H:%M:%S")
    return f"{at} {task} {container}  {event.get('message', '').rstrip()}"


def to_json(event: dict[str, Any], stream: str | None = None) -> dict[str, Any]:
    """One log event for scripts (`invoke logs --json`): time (ISO 8601, UTC), task, container, message."""
    task, container = stream_task(stream or event.get("logStreamName", ""))
    at = datetime.fromtimestamp(event.get("timestamp", 0) / 1000, UTC)
    message = str(event.get("message", "")).rstrip()
    return {
        "time": at.isoformat(timespec="milliseconds"),
        "task": task,
        "container": container,
        "message": message,
    }


def _client(clients: Clients) -> Any:
    return clients.aws("logs")


class StreamReader:
    """Reads one stream from the start, each call returning only the events since the last.

    A stream the driver has not created yet reads as empty (the task is still starting).
    """

    def __init__(self, clients: Clients, group: str, stream: str) -> None:
        self.clients, self.group, self.stream = clients, group, stream
        self.token: str | None = None

    def read(self) -> list[dict[str, Any]]:
        logs = _client(self.clients)
        events: list[dict[str, Any]] = []
        with aws_errors("logs:GetLogEvents", handled=MISSING):
            try:
                while True:
                    args: dict[str, Any] = {
                        "logGroupName": self.group,
                        "logStreamName": self.stream,
                        "startFromHead": True,
                    }
                    if self.token:
                        args["nextToken"] = self.token
                    page = logs.get_log_events(**args)
                    events.extend(page.get("events", []))
                    token = page.get("nextForwardToken")
                    # The API answers the same forward token when nothing more is there.
                    if not page.get("events") or token == self.token:
                        self.token = token or self.token
                        break
                    self.token = token
            except logs.exceptions.ResourceNotFoundException:
                return []
        return events


def last_lines(clients: Clients, group: str, stream: str, count: int = 20) -> list[str]:
    """The last `count` messages of a stream, oldest first; [] when there is no stream."""
    logs = _client(clients)
    with aws_errors("logs:GetLogEvents", handled=MISSING):
        try:
            page = logs.get_log_events(
                logGroupName=group, logStreamName=stream, startFromHead=False, limit=count
            )
        except logs.exceptions.ResourceNotFoundException:
            return []
    return [e.get("message", "").rstrip() for e in page.get("events", [])][-count:]


def events_since(
    clients: Clients, group: str, start_ms: int, prefix: str = "", stream: str = ""
) -> list[dict[str, Any]]:
    """Events from `start_ms` on of one stream, or of every stream under a prefix (a
    service's tasks, however many), in time order (FilterLogEvents)."""
    logs = _client(clients)
    args: dict[str, Any] = {"logGroupName": group, "startTime": start_ms}
    if stream:
        args["logStreamNames"] = [stream]
    else:
        args["logStreamNamePrefix"] = prefix
    found: list[dict[str, Any]] = []
    with aws_errors("logs:FilterLogEvents", handled=MISSING):
        try:
            for page in logs.get_paginator("filter_log_events").paginate(**args):
                found.extend(page.get("events", []))
        except logs.exceptions.ResourceNotFoundException:
            if stream:  # no such stream (yet): that task wrote nothing
                return []
            raise ConfigError(
                f"log group {group} does not exist; `invoke setup` creates it (the tasks write there)"
            ) from None
    # The name filter again here: an API that ignores the prefix must not mix in other streams.
    wanted = [e for e in found if e.get("logStreamName", "").startswith(stream or prefix)]
    return sorted(wanted, key=lambda e: (e.get("timestamp", 0), e.get("ingestionTime", 0)))


def _service_places(ctx: Any, env: str) -> tuple[Any, list[LogPlace]]:
    from . import ecs

    environment = ctx.settings.environment(env)
    service = ecs.describe_service(ctx.clients, environment.cluster, environment.service)
    definition = ecs.describe_revision(ctx.clients, str(service.get("taskDefinition", ""))).definition
    found = places(definition)
    if not found:
        raise ConfigError(
            f"{environment.service}'s task definition sends no container to CloudWatch Logs "
            "(logConfiguration: awslogs with awslogs-group and awslogs-stream-prefix)"
        )
    return environment, found


def show(
    ctx: Any,
    env: str,
    since: str = "10m",
    follow: bool = False,
    task: str | None = None,
    sleep: Any = None,
    now: Any = None,
    polls: int | None = None,
    as_json: bool = False,
) -> int:
    """`invoke logs`: a service's recent log lines across its tasks; the number printed.

    --follow polls every 2 s for new lines (and new tasks' streams) until Ctrl-C;
    `polls` bounds that for tests. `as_json`: one JSON object a line on stdout (`to_json`),
    notes on stderr, for scripts.
    """
    import json
    import sys
    import time

    sleep = sleep or time.sleep
    now = now or time.time
    seconds = parse_since(since)
    environment, found = _service_places(ctx, env)
    start_ms = int((now() - seconds) * 1000)
    seen: set[str] = set()
    printed = 0
    rounds = 0
    try:
        while True:
            batch: list[dict[str, Any]] = []
            for where in found:
                if task:
                    batch += events_since(
                        ctx.clients, where.group, start_ms, stream=where.stream(task_id(task))
                    )
                else:
                    batch += events_since(ctx.clients, where.group, start_ms, prefix=where.streams_prefix)
            batch.sort(key=lambda e: (e.get("timestamp", 0), e.get("ingestionTime", 0)))
            for event in batch:
                key = (
                    event.get("eventId")
                    or f"{event.get('logStreamName')}{event.get('timestamp')}{event.get('message')}"
                )
                if key in seen:
                    continue
                seen.add(key)
                if as_json:
                    print(json.dumps(to_json(event)), flush=True)
                else:
                    ctx.out.say(format_line(event))
                printed += 1
                # Overlap by the last millisecond: events written in the same one are kept.
                start_ms = max(start_ms, int(event.get("timestamp", 0)))
            if not printed and rounds == 0:
                which = f"task {task_id(task)}" if task else environment.service
                note = f"(no log lines from {which} in the last {since})"
                if as_json:
                    print(note, file=sys.stderr)
                else:
                    ctx.out.say(note)
            rounds += 1
            if not follow or (polls is not None and rounds >= polls):
                return printed
            sleep(2.0)
    except KeyboardInterrupt:
        return printed
