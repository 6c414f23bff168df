"""One-off tasks: `invoke run-task` and the deploy's migration step.

A one-off task runs an environment's task definition once, in the service's cluster
with the service's own network configuration, its essential container's command
replaced. The request and the reading of a stopped task are pure (`run_request`,
`task_state`); `start` and `follow` are the thin layer that calls ECS and streams the
task's awslogs stream from CloudWatch Logs until the task stops.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import ci_identity, ecs, logs, migrate, prepare
from .arns import short
from .clients import aws_errors
from .config import Environment
from .context import Context
from .errors import ConfigError, MigrationFailed, PipelineError, StepFailed

STARTED_BY = "ecs-pipeline/run-task"
# Seconds to keep reading a stopped task's stream: the log driver ships a container's
# last lines shortly after it exits, not before.
LOG_SETTLE_SECONDS = 5.0


class Interrupted(PipelineError):
    """Ctrl-C (or SIGTERM, CI's cancel) while waiting on a one-off task; the message says
    what became of the task. Exit 130, or 128 + the signal."""

    exit_code = 130

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def command_words(argv: Sequence[str]) -> tuple[str, ...]:
    """The words after the first `--`, exactly as the shell passed them.

    Invoke joins its remainder into one string, which loses the quoting of
    `-- sh -c 'echo X; exit 7'`; the raw argv keeps the three words.
    """
    argv = list(argv)
    return tuple(argv[argv.index("--") + 1 :]) if "--" in argv else ()


def essential_container(definition: dict[str, Any], preferred: str) -> str:
    """The container whose command a one-off task replaces: the service's container
    when it is essential, else the first essential one."""
    containers = definition.get("containerDefinitions", [])
    essential = [c["name"] for c in containers if c.get("essential", True)]
    if preferred in essential:
        return preferred
    if not essential:
        raise ConfigError(f"{short(definition.get('taskDefinitionArn', '?'))} has no essential container")
    return str(essential[0])


def run_request(
    service: dict[str, Any],
    task_definition: str,
    container: str,
    command: Sequence[str],
    started_by: str = STARTED_BY,
) -> dict[str, Any]:
    """The RunTask request for a one-off task next to `service`. Pure."""
    request: dict[str, Any] = {
        "cluster": service["clusterArn"],
        "taskDefinition": task_definition,
        "count": 1,
        "startedBy": started_by,
        "overrides": {"containerOverrides": [{"name": container, "command": list(command)}]},
    }
    if service.get("capacityProviderStrategy"):
        request["capacityProviderStrategy"] = service["capacityProviderStrategy"]
    elif service.get("launchType"):
        request["launchType"] = service["launchType"]
    if service.get("platformVersion") and service.get("platformVersion") != "LATEST":
        request["platformVersion"] = service["platformVersion"]
    if service.get("networkConfiguration"):
        request["networkConfiguration"] = service["networkConfiguration"]
    return request


@dataclass(frozen=True)
class TaskState:
    """What one DescribeTasks answer says about a one-off task and its essential container."""

    status: str
    exit_code: int | None
    stopped_reason: str
    stop_code: str
    container_reason: str

    @property
    def stopped(self) -> bool:
        return self.status == "STOPPED"

    @property
    def never_started(self) -> bool:
        return self.stopped and (self.stop_code == "TaskFailedToStart" or self.exit_code is None)

    def summary(self, task_arn: str) -> str:
        why = self.stopped_reason or "stopped"
        container = f"; {self.container_reason}" if self.container_reason else ""
        if self.never_started:
            return f"task {logs.task_id(task_arn)} never started: {why}{container}"
        return f"task {logs.task_id(task_arn)} stopped ({why}{container}); exit code {self.exit_code}"


def task_state(task: dict[str, Any], container: str) -> TaskState:
    """Pure."""
    found: dict[str, Any] = next((c for c in task.get("containers", []) if c.get("name") == container), {})
    exit_code = found.get("exitCode")
    return TaskState(
        status=str(task.get("lastStatus", "PROVISIONING")),
        exit_code=int(exit_code) if exit_code is not None else None,
        stopped_reason=str(task.get("stoppedReason", "")),
        stop_code=str(task.get("stopCode", "")),
        container_reason=str(found.get("reason", "")),
    )


@dataclass(frozen=True)
class Started:
    """A one-off task that RunTask accepted."""

    task_arn: str
    cluster: str
    container: str
    log_place: logs.LogPlace | None

    @property
    def id(self) -> str:
        return logs.task_id(self.task_arn)


def start(
    ctx: Context,
    environment: Environment,
    service: dict[str, Any],
    task_definition: str,
    command: Sequence[str],
    started_by: str = STARTED_BY,
) -> Started:
    definition = ecs.describe_revision(ctx.clients, task_definition).definition
    container = essential_container(definition, environment.container)
    place = next((p for p in logs.places(definition) if p.container == container), None)
    request = run_request(service, task_definition, container, command, started_by)
    with aws_errors("ecs:RunTask"):
        answer = ctx.clients.aws("ecs").run_task(**request)
    tasks = answer.get("tasks", [])
    if not tasks:
        failures = "; ".join(
            f"{f.get('arn', '')} {f.get('reason', '')}".strip() for f in answer.get("failures", [])
        )
        raise StepFailed(f"RunTask started no task in {environment.cluster}: {failures or 'no reason given'}")
    return Started(tasks[0]["taskArn"], environment.cluster, container, place)


def describe_task(ctx: Context, cluster: str, task_arn: str) -> dict[str, Any]:
    with aws_errors("ecs:DescribeTasks"):
        found = ctx.clients.aws("ecs").describe_tasks(cluster=cluster, tasks=[task_arn]).get("tasks", [])
    if not found:
        raise StepFailed(f"task {logs.task_id(task_arn)} is gone from {cluster}")
    return dict(found[0])


def follow(
    ctx: Context,
    started: Started,
    timeout: float,
    emit: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> TaskState:
    """Wait until the task stops, emitting its essential container's log lines as they arrive."""
    reader = (
        logs.StreamReader(ctx.clients, started.log_place.group, started.log_place.stream(started.id))
        if started.log_place
        else None
    )

    def drain() -> int:
        if reader is None:
            return 0
        events = reader.read()
        for event in events:
            emit(event.get("message", "").rstrip("\n"))
        return len(events)

    deadline = clock() + timeout
    interval = 0.25
    while True:
        state = task_state(describe_task(ctx, started.cluster, started.task_arn), started.container)
        drain()
        if state.stopped:
            break
        if clock() >= deadline:
            raise StepFailed(
                f"task {started.id} still {state.status} after {timeout:g}s; it keeps running "
                f"(stop it: aws ecs stop-task --cluster {started.cluster} --task {started.id})"
            )
        sleep(interval)
        interval = min(interval * 2, 2.0)
    if reader is not None and not state.never_started:
        settle_until = clock() + LOG_SETTLE_SECONDS
        quiet = 0
        while quiet < 2 and clock() < settle_until:
            sleep(0.5)
            quiet = 0 if drain() else quiet + 1
    return state


def stop(ctx: Context, started: Started, reason: str) -> None:
    with aws_errors("ecs:StopTask"):
        ctx.clients.aws("ecs").stop_task(cluster=started.cluster, task=started.task_arn, reason=reason)


def ask_tty(question: str) -> bool:
    """y/N on the terminal; no terminal (CI) means no."""
    if not sys.stdin.isatty():
        return False
    try:
        return input(question).strip().lower() in ("y", "yes")
    except (EOFError, KeyboardInterrupt):
        return False


def on_interrupt(ctx: Context, started: Started, stop_it: bool, signum: int = 2) -> Interrupted:
    """After Ctrl-C (or SIGTERM: `signum`): stop the task or leave it, and say which."""
    import signal

    how = "interrupted" if signum == signal.SIGINT else f"interrupted by {signal.Signals(signum).name}"
    if stop_it:
        stop(ctx, started, "Stopped by invoke run-task (interrupted)")
        return Interrupted(f"{how}: asked ECS to stop task {started.id}", signum)
    return Interrupted(
        f"{how}: task {started.id} keeps running "
        f"(stop it: aws ecs stop-task --cluster {started.cluster} --task {started.id})",
        signum,
    )


def describe_command(command: Sequence[str]) -> str:
    return shlex.join(command)


@dataclass(frozen=True)
class RunOptions:
    """`invoke run-task`'s flags."""

    env: str
    command: tuple[str, ...]
    sha: str | None = None  # None: the revision the service runs now
    timeout: float = 600.0
    wait: bool = True
    stop_on_interrupt: bool = False


@dataclass(frozen=True)
class Finished:
    """A one-off task's end: the process exit code that `invoke run-task` passes on."""

    state: TaskState
    task_arn: str

    @property
    def exit_code(self) -> int:
        if self.state.never_started or self.state.exit_code is None:
            return 1
        return self.state.exit_code


def _revision(ctx: Context, options: RunOptions) -> tuple[Environment, dict[str, Any], str]:
    """Every check first, then (with --sha) the one change: a registered revision."""
    if not options.command:
        raise ConfigError("run-task: no command; give one after --, e.g. invoke run-task --env prod -- ls /")
    environment = ctx.settings.environment(options.env)
    if options.sha is None:
        service = ecs.describe_service(ctx.clients, environment.cluster, environment.service)
        return environment, service, str(service["taskDefinition"])
    # A revision of the CI policy's environment only, as a deploy: it runs with that
    # environment's secrets and role.
    ci_identity.require_ci_ref(ctx.settings.ci, ctx.environ, options.env)
    new = prepare.new_revision(ctx, environment, ctx.revision(options.sha))
    # A one-off task leaves the service alone: a rollout in progress is no obstacle.
    service = ecs.describe_service(ctx.clients, environment.cluster, environment.service)
    with ctx.out.step(f"register task definition {environment.family}"):
        arn = prepare.register(ctx, new.request)
        ctx.out.detail(f"registered {short(arn)}")
    return environment, service, arn


def run(
    ctx: Context,
    options: RunOptions,
    ask: Callable[[str], bool] = ask_tty,
    sleep: Callable[[float], None] = time.sleep,
) -> Finished | Started:
    """Run the command once; Started with --no-wait, else Finished when the task stopped."""
    out = ctx.out
    environment, service, arn = _revision(ctx, options)
    started = start(ctx, environment, service, arn, options.command)
    if not options.wait:
        out.say(started.task_arn)  # alone on its line, for scripts
        return started
    out.say(f"task {started.task_arn}")
    out.say(
        f"  {short(arn)} in {environment.cluster}, {started.container}: {describe_command(options.command)}"
    )
    if started.log_place is None:
        out.say(f"  ({started.container} has no awslogs log configuration: no log lines to show)")
    try:
        state = follow(ctx, started, options.timeout, out.say, sleep)
    except KeyboardInterrupt as interrupt:
        import signal

        from .interrupts import signum_of

        signum = signum_of(interrupt)
        # CI's cancel (SIGTERM) has nobody to ask: --stop-on-interrupt decides alone.
        stop_it = options.stop_on_interrupt or (
            signum == signal.SIGINT and ask(f"stop task {started.id}? [y/N] ")
        )
        raise on_interrupt(ctx, started, stop_it, signum) from None
    out.say(state.summary(started.task_arn))
    return Finished(state, started.task_arn)


def migrate_with(
    ctx: Context,
    environment: Environment,
    service: dict[str, Any],
    current: str | None,
    arn: str,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """The migration step: `environment`'s migrate_command as a one-off task of revision `arn`,
    next to `service` (its cluster and network configuration), which still runs `current`;
    MigrationFailed unless it exits 0."""
    command = migrate.words(environment.migrate_command)
    out = ctx.out
    with out.step(f"migrate with {short(arn)}"):
        started = start(ctx, environment, service, arn, command, migrate.STARTED_BY)
        out.detail(f"task {started.task_arn}: {shlex.join(command)}")
        try:
            state = follow(ctx, started, timeout, lambda line: out.detail(f"| {line}"), sleep)
        except KeyboardInterrupt as interrupt:
            from .interrupts import signum_of

            raise on_interrupt(ctx, started, False, signum_of(interrupt)) from None
        out.detail(state.summary(started.task_arn))
        if state.never_started or state.exit_code != 0:
            raise MigrationFailed(
                f"migration failed: {state.summary(started.task_arn)}; nothing was changed: "
                f"{environment.service} still runs {short(current or '?')}"
            )
