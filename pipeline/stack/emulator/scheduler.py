"""STAND-IN for ECS's service scheduler: deployments roll on real containers.

UpdateService with a new task definition starts a PRIMARY deployment (IN_PROGRESS, the
old one ACTIVE). A thread reconciles every service as ECS does: it starts tasks of the
PRIMARY deployment within maximumPercent, counts a task once it is RUNNING and healthy
(container health check and, behind a load balancer, target health after the grace
period), drains old tasks through the target group's deregistration delay while
minimumHealthyPercent holds, and completes the deployment. Tasks that fail count
towards ECS's circuit breaker (0.5 x desired, at least 3, at most 200); a tripped
breaker marks the deployment FAILED and, with rollback, starts a deployment of the last
COMPLETED task definition. Responses keep ECS's shapes and wording. Services whose
strategy is BLUE_GREEN, LINEAR or CANARY are driven by service_deployments.py while one
of their service deployments is under way.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from . import agent, engine, loadbalancer

TICK = 0.2
SETTLE_SECONDS = 3.0


def _rolling_target_groups(service: Any) -> list[str]:
    return [lb["targetGroupArn"] for lb in service.load_balancers or [] if lb.get("targetGroupArn")]


# service_deployments.py builds on this module and plugs in here when installed: who
# drives a service deployment under way (True: not the rolling logic), and where a
# task of the serving revision registers.
HOOKS: dict[str, Callable[..., Any]] = {
    "drive": lambda backend, service: False,
    "target_groups": _rolling_target_groups,
}


def _now() -> Any:
    from moto.core.utils import utcnow

    return utcnow()


def event(service: Any, message: str) -> None:
    service.events.insert(
        0, {"id": str(uuid.uuid4()), "createdAt": _now(), "message": f"(service {service.name}) {message}"}
    )
    del service.events[100:]


def new_deployment(service: Any, task_definition: str) -> dict[str, Any]:
    now = _now()
    deployment_id = f"ecs-svc/{uuid.uuid4().int % 10**19:019d}"
    return {
        "id": deployment_id,
        "status": "PRIMARY",
        "taskDefinition": task_definition,
        "desiredCount": service.desired_count,
        "pendingCount": 0,
        "runningCount": 0,
        "failedTasks": 0,
        "createdAt": now,
        "updatedAt": now,
        "launchType": service.launch_type,
        "networkConfiguration": service.network_configuration or None,
        "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": "ECS deployment in progress.",
    }


def start_deployment(service: Any, task_definition: str) -> dict[str, Any]:
    for deployment in service.deployments:
        deployment["status"] = "ACTIVE"
        deployment["updatedAt"] = _now()
    deployment = new_deployment(service, task_definition)
    service.deployments.insert(0, deployment)
    return deployment


def _config(service: Any) -> dict[str, Any]:
    return getattr(service, "deployment_configuration", None) or {}


def _breaker(service: Any) -> dict[str, Any]:
    return _config(service).get("deploymentCircuitBreaker") or {}


# --- tasks ---------------------------------------------------------------------------


def launch(
    backend: Any,
    cluster: Any,
    definition: Any,
    group: str,
    started_by: str,
    launch_type: str,
    network: dict[str, Any] | None,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """A Task in moto's model plus its containers on the engine (with RunTask's overrides)."""
    from types import SimpleNamespace

    from moto.ecs.models import Container, Task

    # moto's Task builds an ENI for awsvpc tasks and fails on it; the local task has
    # loopback instead, recorded below in the attachment's shape.
    view: Any = SimpleNamespace(
        arn=definition.arn, network_mode=None, container_definitions=definition.container_definitions
    )
    task: Any = Task(
        cluster, view, None, None, backend, group, launch_type=launch_type or "", started_by=started_by
    )
    task.containers = []
    for cdef in definition.container_definitions:
        container = Container(view)  # type: ignore[abstract]
        container.name, container.image = cdef["name"], cdef.get("image")
        container.memory, container.cpu = cdef.get("memory"), cdef.get("cpu", 0)
        container.last_status, container.health_status = "PENDING", "UNKNOWN"
        container.task_arn = task.task_arn
        task.containers.append(container)
    task.last_status = "PROVISIONING"
    task.health_status = "UNKNOWN"
    task.created_at = _now()
    task.cpu, task.memory = definition.cpu, definition.memory
    if network and definition.network_mode == "awsvpc":
        task.attachments = [
            {
                "id": str(uuid.uuid4()),
                "type": "ElasticNetworkInterface",
                "status": "ATTACHED",
                "details": [
                    {
                        "name": "subnetId",
                        "value": (network.get("awsvpcConfiguration") or {}).get("subnets", [""])[0],
                    },
                    {"name": "privateIPv4Address", "value": "127.0.0.1"},
                ],
            }
        ]
    run = agent.TaskRun(
        task.task_arn, cluster.name, _describe(definition, overrides), backend.account_id, backend.region_name
    )
    task._run = run  # type: ignore[attr-defined]
    task._speed = run.speed = engine.cluster_speed(cluster)  # type: ignore[attr-defined]
    backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task
    run.start()
    return task


def _describe(definition: Any, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the agent runs: the definition's containers with RunTask's containerOverrides
    (command, environment) applied, as ECS applies them; the definition stays as it was."""
    by_name = {o.get("name"): o for o in (overrides or {}).get("containerOverrides", []) or []}
    containers = []
    for cdef in definition.container_definitions:
        override = by_name.get(cdef["name"])
        if override:
            cdef = dict(cdef)
            if override.get("command"):
                cdef["command"] = list(override["command"])
            if override.get("environment"):
                merged = {e["name"]: e["value"] for e in cdef.get("environment", []) or []}
                merged.update({e["name"]: e["value"] for e in override["environment"]})
                cdef["environment"] = [{"name": k, "value": v} for k, v in merged.items()]
        containers.append(cdef)
    return {"taskDefinitionArn": definition.arn, "containerDefinitions": containers}


def sync_task(task: Any) -> None:
    """Copy what the agent knows into moto's Task, in DescribeTasks' fields."""
    run = getattr(task, "_run", None)
    if run is None or getattr(task, "_final", False):
        return
    final = run.phase == "STOPPED"  # read first: what is copied below is then the last state
    for container in task.containers:
        state = run.containers.get(container.name)
        if state is None:
            continue
        container.last_status = state.status
        container.health_status = state.health if state.status == "RUNNING" else "UNKNOWN"
        # ECS gives no exitCode for a container that has not exited or never ran (moto
        # starts every container at 0); None leaves the field out of DescribeTasks.
        container.exitCode = state.exit_code
        if state.reason:
            container.reason = state.reason
        if run.port:
            container.network_bindings = [{"bindIP": "127.0.0.1", "hostPort": run.port, "protocol": "tcp"}]
    if run.phase == "STOPPED":
        if task.last_status != "STOPPED":
            task.last_status, task.desired_status = "STOPPED", "STOPPED"
            task.stop_code, task.stopped_reason = run.stop_code, run.stopped_reason
            task.stopped_at = task.execution_stopped_at = _now()
        task._final = final  # a stopped task never changes again: later ticks skip it
        return
    if run.phase == "RUNNING" and task.last_status in ("PROVISIONING", "PENDING"):
        task.started_at = task.pull_stopped_at = _now()
    if run.stopping:
        task.desired_status = "STOPPED"
        task.last_status = "DEACTIVATING" if run.phase == "RUNNING" else task.last_status
    elif task.last_status != "DEACTIVATING":
        task.last_status = run.phase
    task.health_status = "HEALTHY" if run.healthy else ("UNHEALTHY" if run.unhealthy else "UNKNOWN")


def stop_task(task: Any, stop_code: str, reason: str) -> None:
    run = getattr(task, "_run", None)
    task.desired_status = "STOPPED"
    if not task.stopped_reason:
        task.stop_code, task.stopped_reason = stop_code, reason
    if run is not None:
        run.stop(stop_code, reason)
    task.stopping_at = _now()


# --- services ----------------------------------------------------------------------------


def _service_tasks(backend: Any, service: Any) -> list[Any]:
    group = f"service:{service.name}"
    return [
        t
        for t in list(backend.tasks.get(service.cluster_name, {}).values())
        if t.group == group and getattr(t, "_run", None) is not None
    ]


def _alive(task: Any) -> bool:
    return task.last_status != "STOPPED"


def reconcile(backend: Any, service: Any) -> None:
    tasks = _service_tasks(backend, service)
    for task in tasks:
        sync_task(task)
    _deregister_stopped(service, tasks)
    if service.status != "ACTIVE":
        for task in tasks:
            if _alive(task) and task.desired_status != "STOPPED":
                _drain(backend, service, task, f"Service {service.name} was deleted")
        _finish_draining(backend, service, tasks)
        if service.status == "DRAINING" and not any(_alive(t) for t in tasks):
            service.status = "INACTIVE"  # as ECS: DRAINING until its tasks are gone
            service.deployments = []
        return
    if not service.deployments or not service.task_definition:
        return
    cluster = backend.clusters.get(service.cluster_name)
    if cluster is None:
        return
    speed = engine.cluster_speed(cluster)
    _judge_health(backend, service, tasks, speed)
    if HOOKS["drive"](backend, service):  # BLUE_GREEN, LINEAR, CANARY
        _finish_draining(backend, service, tasks)
        return
    primary = service.deployments[0]
    desired = service.desired_count
    _circuit_breaker(backend, service, primary, desired)
    primary = service.deployments[0]
    alive = [t for t in tasks if _alive(t) and t.desired_status == "RUNNING"]
    by_deployment = {d["id"]: [t for t in alive if t.started_by == d["id"]] for d in service.deployments}
    config = _config(service)
    maximum = math.floor(desired * config.get("maximumPercent", 200) / 100)
    minimum = math.ceil(desired * config.get("minimumHealthyPercent", 100) / 100)
    ours = by_deployment.get(primary["id"], [])
    healthy = [t for t in alive if _counts(t)]
    # Start tasks of the PRIMARY deployment within maximumPercent.
    blocked = primary.get("rolloutState") == "FAILED" and not _breaker(service).get("rollback")
    if not blocked and time.monotonic() >= _state(service)["retry_at"]:
        started = []
        for _ in range(max(0, min(desired - len(ours), max(maximum, 1) - len(alive)))):
            definition = backend.describe_task_definition(primary["taskDefinition"])
            task = launch(
                backend,
                cluster,
                definition,
                f"service:{service.name}",
                primary["id"],
                service.launch_type or "FARGATE",
                service.network_configuration,
            )
            task._lbs = list(service.load_balancers or [])
            started.append(task)
        if started:
            ids = ", ".join(f"(task {t.id})" for t in started)
            event(service, f"has started {len(started)} tasks: {ids}.")
            ours += started
            alive += started
    # Stop old tasks (and tasks beyond desired) while enough healthy tasks remain. An old
    # task still starting is left to settle first: a process sent SIGTERM before it set
    # its handler ignores it as PID 1 and is killed only after stopTimeout.
    old = [t for d in service.deployments[1:] for t in by_deployment.get(d["id"], [])]
    surplus = [t for t in old if _counts(t) or _settled(t)]
    surplus += sorted(ours, key=_counts)[: max(0, len(ours) - desired)]
    for task in surplus:
        if not _counts(task) or len(healthy) - 1 >= minimum:
            if _counts(task):
                healthy.remove(task)
            _drain(backend, service, task, f"Scaling activity initiated by (deployment {primary['id']})")
    _finish_draining(backend, service, tasks)
    _register_targets(backend, service, ours)
    _count(service, tasks)
    _complete(service, desired)


def _state(service: Any) -> dict[str, Any]:
    if not hasattr(service, "_scheduler"):
        service._scheduler = {"retry_at": 0.0, "failures": 0, "steady": False}
    return service._scheduler  # type: ignore[no-any-return]


def _counts(task: Any) -> bool:
    """RUNNING and healthy: container health and, behind a load balancer, target health."""
    run = task._run
    if not run.healthy or task.desired_status != "RUNNING":
        return False
    if getattr(task, "_lbs", None) and not hasattr(task, "_target_groups"):
        return False
    return all(
        loadbalancer.target_state(arn, "127.0.0.1", run.port) == "healthy"
        for arn in getattr(task, "_target_groups", [])
    )


def _settled(task: Any) -> bool:
    """Started long enough ago to have its signal handlers, or failing anyway."""
    run = task._run
    if run.phase != "RUNNING" or run.running_since is None:
        return False
    return run.unhealthy or time.monotonic() - run.running_since > SETTLE_SECONDS


def _judge_health(backend: Any, service: Any, tasks: list[Any], speed: float) -> None:
    grace = engine.scaled(getattr(service, "health_check_grace_period_seconds", 0) or 0, speed)
    for task in tasks:
        run = task._run
        if not _alive(task) or task.desired_status != "RUNNING":
            if run.phase == "STOPPED" and not getattr(task, "_counted", False):
                task._counted = True
                _failed(service, task)
            continue
        if run.unhealthy:
            event(service, f"(task {task.id}) failed container health checks.")
            stop_task(task, "ServiceSchedulerInitiated", "Task failed container health checks")
            continue
        if run.running_since is None or time.monotonic() - run.running_since < grace:
            continue
        for arn in getattr(task, "_target_groups", []):
            if loadbalancer.target_state(arn, "127.0.0.1", run.port) == "unhealthy":
                event(
                    service,
                    f"(port {run.port}) is unhealthy in (target-group {arn}) due to "
                    f"({loadbalancer.target_reason(arn, '127.0.0.1', run.port)}).",
                )
                _drain(
                    backend,
                    service,
                    task,
                    f"Task failed ELB health checks in (target-group {arn})",
                    code="ServiceSchedulerInitiated",
                )
                break


def _failed(service: Any, task: Any) -> None:
    """A task that stopped without being asked to: it counts against its deployment."""
    if task.stop_code not in ("TaskFailedToStart", "EssentialContainerExited", "ServiceSchedulerInitiated"):
        return
    if task.stop_code == "ServiceSchedulerInitiated" and not task.stopped_reason.startswith("Task failed"):
        return
    deployment = next((d for d in service.deployments if d["id"] == task.started_by), None)
    if deployment is not None:
        deployment["failedTasks"] = deployment.get("failedTasks", 0) + 1
    state = _state(service)
    state["failures"] += 1
    # ECS throttles a service whose tasks keep failing; here briefly, scaled by the speed.
    state["retry_at"] = time.monotonic() + min(2 ** (state["failures"] - 1), 30) * 0.1
    event(service, f"has stopped 1 running tasks: (task {task.id}).")


def _drain(
    backend: Any, service: Any, task: Any, reason: str, code: str = "ServiceSchedulerInitiated"
) -> None:
    task.desired_status = "STOPPED"
    task.stop_code, task.stopped_reason = code, reason
    delay = _leave_target_groups(service, task)
    if getattr(task, "_target_groups", []):
        event(service, "has begun draining connections on 1 tasks.")
    task._drain_until = time.monotonic() + delay  # type: ignore[attr-defined]


def _leave_target_groups(service: Any, task: Any) -> float:
    """Deregister the task from each of its target groups; the longest deregistration delay."""
    delay = 0.0
    for arn in getattr(task, "_target_groups", []):
        delay = max(delay, loadbalancer.deregister(arn, "127.0.0.1", task._run.port, task._speed))
        event(service, f"deregistered 1 targets in (target-group {arn})")
    return delay


def _deregister_stopped(service: Any, tasks: list[Any]) -> None:
    """A task that stopped by itself (its essential container exited, it was killed) leaves
    its target groups at once, as ECS deregisters every stopped task: left registered, it
    would take requests until the group's health checks marked it unhealthy. Tasks the
    scheduler stops were deregistered before being stopped (`_drain`)."""
    for task in tasks:
        if task._run.phase != "STOPPED" or getattr(task, "_drain_until", None) is not None:
            continue
        task._drain_until = time.monotonic()  # type: ignore[attr-defined]  # deregistered once
        _leave_target_groups(service, task)


def _finish_draining(backend: Any, service: Any, tasks: list[Any]) -> None:
    stopped = []
    for task in tasks:
        until = getattr(task, "_drain_until", None)
        if (
            until is not None
            and time.monotonic() >= until
            and not task._run.stopping
            and task._run.phase != "STOPPED"
        ):
            task._run.stop(task.stop_code, task.stopped_reason)
            stopped.append(task)
    if stopped:
        ids = ", ".join(f"(task {t.id})" for t in stopped)
        event(service, f"has stopped {len(stopped)} running tasks: {ids}.")


def _register_targets(backend: Any, service: Any, tasks: list[Any]) -> None:
    for task in tasks:
        if (
            task._run.phase != "RUNNING"
            or hasattr(task, "_target_groups")
            or task.desired_status != "RUNNING"
        ):
            continue
        task._target_groups = []
        groups = getattr(task, "_register_in", None) or HOOKS["target_groups"](service)
        for arn in groups:
            if loadbalancer.register(arn, "127.0.0.1", task._run.port, task._speed):
                task._target_groups.append(arn)
                event(service, f"registered 1 targets in (target-group {arn})")


def _count(service: Any, tasks: list[Any]) -> None:
    for deployment in service.deployments:
        mine = [
            t
            for t in tasks
            if t.started_by == deployment["id"] and _alive(t) and t.desired_status == "RUNNING"
        ]
        running = sum(1 for t in mine if t.last_status == "RUNNING")
        deployment.update(runningCount=running, pendingCount=len(mine) - running)
        if deployment["status"] != "PRIMARY":
            deployment["desiredCount"] = 0
        else:
            deployment["desiredCount"] = service.desired_count
    service.running_count = sum(d["runningCount"] for d in service.deployments)
    service.pending_count = sum(d["pendingCount"] for d in service.deployments)


def _complete(service: Any, desired: int) -> None:
    primary = service.deployments[0]
    tasks_left = {t.started_by for t in _service_tasks(service._backend, service) if _alive(t)}
    # Old deployments leave the list once their tasks are gone (INACTIVE in ECS).
    service.deployments[1:] = [d for d in service.deployments[1:] if d["id"] in tasks_left]
    healthy = [
        t
        for t in _service_tasks(service._backend, service)
        if t.started_by == primary["id"] and _alive(t) and _counts(t)
    ]
    state = _state(service)
    if (
        primary.get("rolloutState") == "IN_PROGRESS"
        and len(service.deployments) == 1
        and len(healthy) == desired
    ):
        primary.update(
            rolloutState="COMPLETED",
            rolloutStateReason=f"ECS deployment {primary['id']} completed.",
            updatedAt=_now(),
        )
        service._last_completed = primary["taskDefinition"]  # type: ignore[attr-defined]
        state["failures"] = 0
        event(service, f"(deployment {primary['id']}) deployment completed.")
        state["steady"] = False
    steady = primary.get("rolloutState") == "COMPLETED" and len(service.deployments) == 1
    if steady and not state["steady"] and len(healthy) == desired:
        state["steady"] = True
        event(service, "has reached a steady state.")


def _circuit_breaker(backend: Any, service: Any, primary: dict[str, Any], desired: int) -> None:
    breaker = _breaker(service)
    if not breaker.get("enable") or primary.get("rolloutState") != "IN_PROGRESS":
        return
    if primary.get("failedTasks", 0) < engine.circuit_breaker_threshold(desired):
        return
    primary.update(
        rolloutState="FAILED",
        rolloutStateReason="ECS deployment circuit breaker: tasks failed to start.",
        updatedAt=_now(),
    )
    event(service, f"(deployment {primary['id']}) deployment failed: tasks failed to start.")
    previous = getattr(service, "_last_completed", None)
    if breaker.get("rollback") and previous:
        rollback = start_deployment(service, previous)
        rollback["rolloutStateReason"] = "ECS deployment in progress."
        service.task_definition = previous
        _state(service).update(failures=0, retry_at=0.0)
        event(service, f"rolling back to deployment {rollback['id']}.")


# --- the loop --------------------------------------------------------------------------------


def tick() -> None:
    from moto.ecs.models import ecs_backends

    for account in list(ecs_backends.keys()):
        for region in list(ecs_backends[account].keys()):
            backend = ecs_backends[account][region]
            with engine.LOCK:
                for service in list(backend.services.values()):
                    if service.status == "INACTIVE":  # its tasks are gone: nothing left to do
                        continue
                    try:
                        reconcile(backend, service)
                    except Exception as exc:  # one broken service must not stop the others
                        print(f"scheduler: {service.name}: {type(exc).__name__}: {exc}", flush=True)
                _standalone(backend)


def _standalone(backend: Any) -> None:
    """RunTask's tasks: they run until their essential container exits or StopTask."""
    for tasks in list(backend.tasks.values()):
        for task in list(tasks.values()):
            if getattr(task, "_run", None) is not None and not task.group.startswith("service:"):
                sync_task(task)


def run_forever() -> None:
    def loop() -> None:
        while True:
            started = time.monotonic()
            try:
                tick()
            except Exception as exc:
                print(f"scheduler: {type(exc).__name__}: {exc}", flush=True)
            time.sleep(max(0.0, TICK - (time.monotonic() - started)))

    threading.Thread(target=loop, name="ecs-scheduler", daemon=True).start()
