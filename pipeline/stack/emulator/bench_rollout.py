"""STAND-IN for ECS's scheduler without containers, for bench/ only: every deployment
COMPLETES after a set delay, whatever the image does, so peer tools can be timed
against a rollout of known length. The local stack uses scheduler.py instead.
"""

from __future__ import annotations

import time
import uuid
from typing import Any


def install_rollout_model(rollout_seconds: float) -> None:
    """Patch moto's ECS backend so deployments roll like ECS's scheduler rolls them."""
    from moto.core.utils import utcnow
    from moto.ecs.models import EC2ContainerServiceBackend

    original_create = EC2ContainerServiceBackend.create_service
    original_update = EC2ContainerServiceBackend.update_service
    original_describe = EC2ContainerServiceBackend.describe_services

    def event(service: Any, message: str) -> None:
        service.events.insert(
            0,
            {
                "id": str(uuid.uuid4()),
                "createdAt": utcnow(),
                "message": f"(service {service.name}) {message}",
            },
        )

    def create_service(self: Any, *args: Any, **kwargs: Any) -> Any:
        service = original_create(self, *args, **kwargs)
        if service.deployments and service.task_definition:
            # The first deployment rolls out too, then COMPLETED, as on ECS.
            service.deployments[0].update(
                runningCount=0, pendingCount=service.desired_count, rolloutState="IN_PROGRESS"
            )
            service._standin_rollout_done_at = time.monotonic() + rollout_seconds  # type: ignore[attr-defined]
        return service

    def update_service(self: Any, service_properties: dict[str, Any]) -> Any:
        changes_revision = bool(service_properties.get("task_definition")) or bool(
            service_properties.get("force_new_deployment")
        )
        service = original_update(self, service_properties)
        if not changes_revision:
            return service
        # Real ECS stores the full ARN whatever form the caller passed.
        service.task_definition = self.describe_task_definition(service.task_definition).arn
        now = utcnow()
        for deployment in service.deployments:
            deployment["status"] = "ACTIVE"
            deployment["updatedAt"] = now
        deployment_id = f"ecs-svc/{uuid.uuid4().int % 10**19:019d}"
        service.deployments.insert(
            0,
            {
                "id": deployment_id,
                "status": "PRIMARY",
                "taskDefinition": service.task_definition,
                "desiredCount": service.desired_count,
                "pendingCount": service.desired_count,
                "runningCount": 0,
                "failedTasks": 0,
                "createdAt": now,
                "updatedAt": now,
                "launchType": service.launch_type,
                "rolloutState": "IN_PROGRESS",
                "rolloutStateReason": "ECS deployment in progress.",
            },
        )
        service.pending_count = service.desired_count
        service._standin_rollout_done_at = time.monotonic() + rollout_seconds  # type: ignore[attr-defined]
        event(service, f"has started {service.desired_count} tasks: (deployment {deployment_id}).")
        return service

    def advance(service: Any) -> None:
        done_at = getattr(service, "_standin_rollout_done_at", None)
        if done_at is None or time.monotonic() < done_at:
            return
        service._standin_rollout_done_at = None
        primary = service.deployments[0]
        stale = service.deployments[1:]
        primary.update(
            runningCount=primary["desiredCount"],
            pendingCount=0,
            rolloutState="COMPLETED",
            rolloutStateReason=f"ECS deployment {primary['id']} completed.",
            updatedAt=utcnow(),
        )
        del service.deployments[1:]
        service.running_count, service.pending_count = primary["desiredCount"], 0
        if stale:
            event(service, f"has stopped {sum(d.get('runningCount', 0) for d in stale)} running tasks.")
        event(service, f"deployment {primary['id']} deployment completed.")
        event(service, "has reached a steady state.")

    def describe_services(self: Any, cluster_str: str, names: list[str]) -> Any:
        services, failures = original_describe(self, cluster_str, names)
        for service in services:
            advance(service)
        return services, failures

    EC2ContainerServiceBackend.create_service = create_service  # type: ignore[method-assign]
    EC2ContainerServiceBackend.update_service = update_service  # type: ignore[method-assign]
    EC2ContainerServiceBackend.describe_services = describe_services  # type: ignore[method-assign,assignment]


def install_task_model() -> None:
    """The tasks ECS's scheduler starts and stops during a rollout.

    Keeps, per deployment, `runningCount` RUNNING tasks of its task definition
    (startedBy = the deployment id, group = service:NAME, as ECS sets them) and stops the
    tasks of deployments that are gone, with ECS's stoppedReason. Without it a tool that
    counts the new revision's RUNNING tasks (fabfuel's `ecs deploy`) never finishes, and
    ListTasks/DescribeTasks show nothing of a rollout.
    """
    from types import SimpleNamespace

    from moto.ecs.models import EC2ContainerServiceBackend, Task
    from moto.moto_api import state_manager

    # moto advances a task one state per DescribeTasks; the scheduler stand-in sets it instead.
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    rolled_describe = EC2ContainerServiceBackend.describe_services

    def stop(task: Any, reason: str) -> None:
        task.desired_status = task.last_status = "STOPPED"
        task.stopped_reason = reason
        for container in task.containers:
            container.last_status = "STOPPED"

    def sync(backend: Any, service: Any) -> None:
        cluster = backend.clusters[service.cluster_name]
        tasks = backend.tasks.setdefault(cluster.name, {})
        group = f"service:{service.name}"
        running = [t for t in tasks.values() if t.group == group and t.desired_status == "RUNNING"]
        live = {d["id"] for d in service.deployments}
        for task in running:
            if task.started_by not in live:
                stop(task, f"Scaling activity initiated by (deployment {task.started_by})")
        for deployment in service.deployments:
            have = [t for t in running if t.started_by == deployment["id"]]
            want = deployment.get("runningCount", 0)
            for task in have[want:]:
                stop(task, f"Scaling activity initiated by (deployment {deployment['id']})")
            if len(have) >= want:
                continue
            definition = backend.describe_task_definition(deployment["taskDefinition"])
            # No ENI for awsvpc tasks: nothing here reads a task's network attachments.
            view = SimpleNamespace(
                arn=definition.arn, network_mode=None, container_definitions=definition.container_definitions
            )
            for _ in range(want - len(have)):
                task = Task(
                    cluster,
                    view,  # type: ignore[arg-type]
                    None,
                    None,
                    backend,
                    group,
                    launch_type=service.launch_type or "",
                    started_by=deployment["id"],
                )
                task.last_status = "RUNNING"
                for container in task.containers:
                    container.last_status = "RUNNING"
                tasks[task.task_arn] = task

    def describe_services(self: Any, cluster_str: str, names: list[str]) -> Any:
        services, failures = rolled_describe(self, cluster_str, names)
        for service in services:
            sync(self, service)
        return services, failures

    EC2ContainerServiceBackend.describe_services = describe_services  # type: ignore[method-assign,assignment]
