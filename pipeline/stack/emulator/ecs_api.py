"""STAND-IN for ECS's control plane around the scheduler: the API calls that change
services and tasks hand their work to the scheduler, with ECS's checks first.

CreateService keeps deploymentConfiguration, healthCheckGracePeriodSeconds and the
capacity provider strategy (moto drops them) and starts the first deployment;
UpdateService with another task definition (or forceNewDeployment) starts a new
PRIMARY deployment and stores the task definition's ARN as ECS does (each deployment
is also a service deployment; service_deployments.py runs BLUE_GREEN, LINEAR and
CANARY ones); DeleteService drains the service's tasks; RunTask and StopTask run and stop real containers;
ListTasks filters by service as ECS does.
"""

from __future__ import annotations

from typing import Any

from . import engine, refusals, scheduler, service_deployments

DEFAULT_DEPLOYMENT_CONFIGURATION = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}


def install() -> None:
    from moto.ecs.models import EC2ContainerServiceBackend as Backend
    from moto.moto_api import state_manager

    # moto advances a task one state per DescribeTasks; here the agent's progress sets it.
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})

    original_create = Backend.create_service
    original_update = Backend.update_service
    original_delete = Backend.delete_service
    original_list = Backend.list_tasks

    def create_service(
        self: Any,
        cluster_str: str,
        service_name: str,
        desired_count: int,
        task_definition_str: str | None = None,
        load_balancers: Any = None,
        *args: Any,
        deployment_configuration: dict[str, Any] | None = None,
        health_check_grace_period_seconds: int | None = None,
        capacity_provider_strategy: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Any:
        with engine.LOCK:
            network = refusals.default_security_group(
                self.account_id, self.region_name, kwargs.get("network_configuration")
            )
            if network is not None:
                kwargs["network_configuration"] = network
            if task_definition_str:
                definition = self.describe_task_definition(task_definition_str)
                refusals.check_service(self, definition, network, load_balancers)
            refusals.check_strategy(deployment_configuration, load_balancers)
            if capacity_provider_strategy and not kwargs.get("launch_type"):
                kwargs["launch_type"] = (
                    "FARGATE"
                    if any(
                        s.get("capacityProvider", "").startswith("FARGATE")
                        for s in capacity_provider_strategy
                    )
                    else "EC2"
                )
            service: Any = original_create(
                self,
                cluster_str,
                service_name,
                desired_count,
                task_definition_str,
                load_balancers,
                *args,
                **kwargs,
            )
            service.deployment_configuration = {
                **DEFAULT_DEPLOYMENT_CONFIGURATION,
                **(deployment_configuration or {}),
            }
            if health_check_grace_period_seconds is not None:
                service.health_check_grace_period_seconds = int(health_check_grace_period_seconds)
            if capacity_provider_strategy:
                service.capacity_provider_strategy = capacity_provider_strategy
                service.launch_type = None  # ECS reports one or the other
            service.running_count = service.pending_count = 0
            if service.task_definition:
                service.deployments = [scheduler.new_deployment(service, service.task_definition)]
                service_deployments.begin(service, service.deployments[0], None)
            return service

    def update_service(self: Any, service_properties: dict[str, Any]) -> Any:
        with engine.LOCK:
            props = dict(service_properties)
            service: Any = self._get_service(props.get("cluster", "default"), props["service"].split("/")[-1])
            definition_str = props.get("task_definition")
            definition = self.describe_task_definition(definition_str or service.task_definition)
            network = props.get("network_configuration") or service.network_configuration or None
            network = refusals.default_security_group(self.account_id, self.region_name, network)
            if props.get("network_configuration"):
                props["network_configuration"] = network
            lbs = props.get("load_balancers") or service.load_balancers
            refusals.check_service(self, definition, network, lbs)
            config = props.pop("deployment_configuration", None)
            refusals.check_strategy(
                {**getattr(service, "deployment_configuration", {}), **(config or {})}, lbs
            )
            grace = props.pop("health_check_grace_period_seconds", None)
            force = bool(props.get("force_new_deployment"))
            props.pop("force_new_deployment", None)
            primary = service.deployments[0]["taskDefinition"] if service.deployments else None
            service = original_update(self, props)  # moto's Service, with ECS's fields added
            if config:
                service.deployment_configuration = {
                    **getattr(service, "deployment_configuration", {}),
                    **config,
                }
            if grace is not None:
                service.health_check_grace_period_seconds = int(grace)
            service.task_definition = definition.arn  # ECS stores the ARN whatever form was passed
            if force or primary != definition.arn:
                # Blue: what serves now, the last completed deployment or else the one under way.
                blue = next(
                    (d for d in service.deployments if d.get("rolloutState") == "COMPLETED"),
                    service.deployments[0] if service.deployments else None,
                )
                deployment = scheduler.start_deployment(service, definition.arn)
                service_deployments.begin(service, deployment, blue)
                scheduler.event(service, f"(deployment {deployment['id']}) deployment started.")
            for deployment in service.deployments[:1]:
                deployment["desiredCount"] = service.desired_count
                if deployment.get("rolloutState") == "COMPLETED" and props.get("desired_count") is not None:
                    scheduler._state(service)["steady"] = False
            return service

    def delete_service(self: Any, cluster_name: str, service_name: str, force: bool) -> Any:
        with engine.LOCK:
            service = original_delete(self, cluster_name, service_name, force)
            service.status = "DRAINING"  # the scheduler drains its tasks, then it is INACTIVE
            service_deployments.service_deleted(service)
            service.desired_count = 0
            return service

    def list_tasks(
        self: Any,
        cluster_str: str | None = None,
        container_instance: str | None = None,
        family: str | None = None,
        started_by: str | None = None,
        service_name: str | None = None,
        desiredStatus: str | None = None,
    ) -> list[Any]:  # noqa: N803 (moto's name)
        tasks = original_list(self, cluster_str, container_instance, family, started_by, None, desiredStatus)
        if service_name:
            tasks = [t for t in tasks if t.group == f"service:{service_name.split('/')[-1]}"]
        return tasks

    def run_task(
        self: Any,
        cluster_str: str,
        task_definition_str: str,
        count: int,
        overrides: Any = None,
        started_by: str | None = None,
        tags: Any = None,
        launch_type: str | None = None,
        networking_configuration: dict[str, Any] | None = None,
        group: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> list[Any]:
        with engine.LOCK:
            cluster = self._get_cluster(cluster_str)
            definition = self.describe_task_definition(task_definition_str)
            network = refusals.default_security_group(
                self.account_id, self.region_name, networking_configuration
            )
            refusals.check_service(self, definition, network, [])
            tasks = []
            for _ in range(count or 1):
                task = scheduler.launch(
                    self,
                    cluster,
                    definition,
                    group or f"family:{definition.family}",
                    started_by or "",
                    launch_type or "FARGATE",
                    network,
                    overrides,
                )
                task.overrides = overrides or {}
                task.tags = tags or []
                tasks.append(task)
            return tasks

    def stop_task(self: Any, cluster_str: str, task_str: str, reason: str) -> Any:
        with engine.LOCK:
            cluster = self._get_cluster(cluster_str)
            for arn, task in self.tasks.get(cluster.name, {}).items():
                if arn.endswith(task_str.split("/")[-1]):
                    scheduler.stop_task(task, "UserInitiated", reason or "Task stopped by user")
                    return task
            from moto.ecs.exceptions import InvalidParameterException

            raise InvalidParameterException("The referenced task was not found.")

    Backend.create_service = create_service  # type: ignore[method-assign]
    Backend.update_service = update_service  # type: ignore[method-assign]
    Backend.delete_service = delete_service  # type: ignore[method-assign]
    Backend.list_tasks = list_tasks  # type: ignore[method-assign,assignment]
    Backend.run_task = run_task  # type: ignore[method-assign,assignment]
    Backend.stop_task = stop_task  # type: ignore[method-assign]
    _wire_responses()


def _wire_responses() -> None:
    """moto's CreateService handler drops these parameters; pass them on."""
    from moto.ecs.responses import ActionResult, EC2ContainerServiceResponse

    def create_service(self: Any) -> Any:
        service = self.ecs_backend.create_service(
            self._get_param("cluster", "default"),
            self._get_param("serviceName"),
            self._get_int_param("desiredCount"),
            self._get_param("taskDefinition"),
            self._get_param("loadBalancers"),
            self._get_param("schedulingStrategy"),
            self._get_param("tags"),
            self._get_param("deploymentController"),
            self._get_param("launchType"),
            network_configuration=self._get_param("networkConfiguration"),
            service_registries=self._get_param("serviceRegistries"),
            platform_version=self._get_param("platformVersion"),
            propagate_tags=self._get_param("propagateTags") or "NONE",
            role_arn=self._get_param("role"),
            deployment_configuration=self._get_param("deploymentConfiguration"),
            health_check_grace_period_seconds=self._get_param("healthCheckGracePeriodSeconds"),
            capacity_provider_strategy=self._get_param("capacityProviderStrategy"),
        )
        return ActionResult({"service": service})

    EC2ContainerServiceResponse.create_service = create_service  # type: ignore[method-assign]
