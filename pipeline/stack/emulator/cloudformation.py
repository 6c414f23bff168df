"""STAND-IN for CloudFormation's ECS resources and change-set execution.

moto keeps only a few properties of AWS::ECS::TaskDefinition (family, containers,
volumes, memory) and AWS::ECS::Service (cluster, task definition, desired count), so a
service made by `invoke setup` lost its load balancer (with the advanced configuration
of blue/green, linear and canary), network configuration, deployment configuration
(strategy, bake times, lifecycle hooks, circuit breaker) and grace period. Here both resources keep every property, passed to the same
API calls CloudFormation makes (RegisterTaskDefinition, CreateService, UpdateService).

moto also leaves a stack's outputs and parameters as they were before a change set
(a stack created from a change set has no outputs at all); real CloudFormation shows
the new template's, which `invoke setup` prints and compares.

moto diffs templates, not the resources their Conditions choose: a change of
parameters that turns a condition on (a strategy other than ROLLING) neither lists
nor creates the resources it adds, nor removes those it turns off. Here a change set
lists, and its execution makes, Add/Modify/Remove from each side's conditions as
CloudFormation does.

moto also ignores an ECR repository's EmptyOnDelete (the dev images' repository sets it).
"""

from __future__ import annotations

from typing import Any

INT_KEYS = {
    "containerPort",
    "hostPort",
    "memory",
    "memoryReservation",
    "cpu",
    "interval",
    "timeout",
    "retries",
    "startPeriod",
    "stopTimeout",
    "startTimeout",
    "maximumPercent",
    "minimumHealthyPercent",
    "sizeInGiB",
    "bakeTimeInMinutes",
    "stepBakeTimeInMinutes",
    "canaryBakeTimeInMinutes",
    "timeoutInMinutes",
}
FLOAT_KEYS = {"stepPercent", "canaryPercent"}
BOOL_KEYS = {"essential", "readonlyRootFilesystem", "enable", "rollback", "privileged", "initProcessEnabled"}


def api_shape(value: Any, key: str = "") -> Any:
    """CloudFormation's PascalCase properties (values as strings) -> the API's shape."""
    if isinstance(value, dict):
        if key == "options":  # logConfiguration options are the driver's own names
            return {k: str(v) for k, v in value.items()}
        return {k[:1].lower() + k[1:]: api_shape(v, k[:1].lower() + k[1:]) for k, v in value.items()}
    if isinstance(value, list):
        return [api_shape(v, key) for v in value]
    if key in INT_KEYS and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if key in FLOAT_KEYS and isinstance(value, (str, int)):
        return float(value)
    if key in BOOL_KEYS and isinstance(value, str):
        return value.lower() == "true"
    if key == "value" and not isinstance(value, str):
        return str(value)
    return value


def _name(value: Any, attribute: str) -> Any:
    return getattr(value, attribute) if hasattr(value, attribute) else value


def task_definition_kwargs(properties: dict[str, Any]) -> dict[str, Any]:
    shaped = api_shape({k: v for k, v in properties.items()})
    kwargs = {
        "family": shaped.get("family"),
        "container_definitions": shaped.get("containerDefinitions", []),
        "volumes": shaped.get("volumes"),
        "network_mode": shaped.get("networkMode"),
        "tags": shaped.get("tags"),
        "placement_constraints": shaped.get("placementConstraints"),
        "requires_compatibilities": shaped.get("requiresCompatibilities"),
        "cpu": str(shaped["cpu"]) if shaped.get("cpu") is not None else None,
        "memory": str(shaped["memory"]) if shaped.get("memory") is not None else None,
        "task_role_arn": shaped.get("taskRoleArn") or None,
        "execution_role_arn": shaped.get("executionRoleArn") or None,
        "runtime_platform": shaped.get("runtimePlatform"),
        "ephemeral_storage": shaped.get("ephemeralStorage"),
        "pid_mode": shaped.get("pidMode"),
        "ipc_mode": shaped.get("ipcMode"),
        "proxy_configuration": shaped.get("proxyConfiguration"),
    }
    return {k: v for k, v in kwargs.items() if v is not None}


def service_kwargs(properties: dict[str, Any]) -> dict[str, Any]:
    shaped = api_shape({k: v for k, v in properties.items() if k not in ("Cluster", "TaskDefinition")})
    kwargs = {
        "load_balancers": shaped.get("loadBalancers"),
        "network_configuration": shaped.get("networkConfiguration"),
        "deployment_configuration": shaped.get("deploymentConfiguration"),
        "health_check_grace_period_seconds": shaped.get("healthCheckGracePeriodSeconds"),
        "capacity_provider_strategy": shaped.get("capacityProviderStrategy"),
        "launch_type": shaped.get("launchType"),
        "platform_version": shaped.get("platformVersion"),
        "propagate_tags": shaped.get("propagateTags") or "NONE",
        "tags": shaped.get("tags"),
    }
    if kwargs["health_check_grace_period_seconds"] is not None:
        kwargs["health_check_grace_period_seconds"] = int(kwargs["health_check_grace_period_seconds"])
    return {k: v for k, v in kwargs.items() if v is not None}


def install() -> None:
    from moto.ecs.models import Service, TaskDefinition, ecs_backends

    def create_task_definition(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        backend = ecs_backends[account_id][region_name]
        return backend.register_task_definition(**task_definition_kwargs(cloudformation_json["Properties"]))

    def update_task_definition(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        wanted = task_definition_kwargs(cloudformation_json["Properties"])
        if original_resource.family == wanted.get(
            "family"
        ) and original_resource.container_definitions == wanted.get("container_definitions"):
            return original_resource
        backend = ecs_backends[account_id][region_name]
        backend.deregister_task_definition(original_resource.arn)
        return backend.register_task_definition(**wanted)

    def create_service(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        properties = cloudformation_json["Properties"]
        backend = ecs_backends[account_id][region_name]
        return backend.create_service(
            _name(properties["Cluster"], "name"),
            properties.get("ServiceName") or resource_name,
            int(properties.get("DesiredCount", 1)),
            task_definition_str=_name(properties["TaskDefinition"], "arn"),
            **service_kwargs(properties),
        )

    def update_service(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        properties = cloudformation_json["Properties"]
        backend = ecs_backends[account_id][region_name]
        extra = service_kwargs(properties)
        return backend.update_service(
            {
                "cluster": original_resource.cluster_name,
                "service": original_resource.name,
                "task_definition": _name(properties["TaskDefinition"], "arn"),
                "desired_count": int(properties.get("DesiredCount", original_resource.desired_count)),
                "deployment_configuration": extra.get("deployment_configuration"),
                "health_check_grace_period_seconds": extra.get("health_check_grace_period_seconds"),
                "network_configuration": extra.get("network_configuration"),
                # a change of strategy adds or drops the advanced configuration
                "load_balancers": extra.get("load_balancers"),
            }
        )

    def delete_service(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> None:
        # moto leaves the service ACTIVE when its stack goes; CloudFormation deletes it.
        backend = ecs_backends[account_id][region_name]
        for service in list(backend.services.values()):
            if service.status == "ACTIVE" and resource_name in (service.arn, service.name):
                backend.delete_service(service.cluster_name, service.name, force=True)

    TaskDefinition.create_from_cloudformation_json = classmethod(create_task_definition)  # type: ignore[assignment,method-assign]
    TaskDefinition.update_from_cloudformation_json = classmethod(update_task_definition)  # type: ignore[assignment,method-assign]
    Service.create_from_cloudformation_json = classmethod(create_service)  # type: ignore[assignment,method-assign]
    Service.update_from_cloudformation_json = classmethod(update_service)  # type: ignore[assignment,method-assign]
    Service.delete_from_cloudformation_json = classmethod(delete_service)  # type: ignore[assignment,method-assign]
    install_target_group_attributes()
    install_repository_empty_on_delete()
    install_role_policies()
    install_changeset_model()
    install_conditional_diff()


def _around_create(model: Any, finish: Any) -> None:
    """`model`'s creation from CloudFormation, then `finish(resource, properties)`; the
    properties are the resource's own dict, so `finish` may also fix what was stored."""
    original = model.create_from_cloudformation_json

    def create(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        resource = original(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        finish(resource, cloudformation_json["Properties"])
        return resource

    model.create_from_cloudformation_json = classmethod(create)


def install_target_group_attributes() -> None:
    """moto drops a target group's TargetGroupAttributes (the deregistration delay among
    them), which the load balancer stand-in honours."""
    from moto.elbv2.models import FakeTargetGroup

    def finish(group: Any, properties: dict[str, Any]) -> None:
        for attribute in properties.get("TargetGroupAttributes") or []:
            group.attributes[attribute["Key"]] = attribute["Value"]

    _around_create(FakeTargetGroup, finish)


def install_repository_empty_on_delete() -> None:
    """moto ignores an AWS::ECR::Repository's EmptyOnDelete and fails to delete a repository
    that holds images; CloudFormation deletes its images first when it is true."""
    from moto.ecr.models import Repository, ecr_backends

    def finish(repository: Any, properties: dict[str, Any]) -> None:
        repository.empty_on_delete = str(properties.get("EmptyOnDelete", "false")).lower() == "true"

    def delete(self: Any, account_id: str, region_name: str) -> None:
        backend = ecr_backends[account_id][region_name]
        backend.delete_repository(self.name, force=getattr(self, "empty_on_delete", False))

    _around_create(Repository, finish)
    Repository.delete = delete  # type: ignore[method-assign]


def install_role_policies() -> None:
    """moto keeps an AWS::IAM::Role's inline Policies as Python objects, and IAM then
    answers GetRolePolicy with their repr; CloudFormation stores them as the JSON they are."""
    import json

    from moto.iam.models import Role

    def finish(role: Any, properties: dict[str, Any]) -> None:
        for policy in properties.get("Policies") or []:
            document = policy["PolicyDocument"]
            role.put_policy(
                policy["PolicyName"], document if isinstance(document, str) else json.dumps(document)
            )

    _around_create(Role, finish)


def install_changeset_model() -> None:
    """An executed change set leaves the stack's outputs and parameters current."""
    from moto.cloudformation.models import CloudFormationBackend

    original_execute = CloudFormationBackend.execute_change_set

    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        original_execute(self, change_set_name, stack_name)
        change_set = self.describe_change_set(change_set_name)
        stack = self.stacks[change_set.stack_id]
        stack.parameters = change_set.parameters
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        stack.output_map = stack._create_output_map()

    CloudFormationBackend.execute_change_set = execute_change_set  # type: ignore[method-assign]


def _if_conditions(value: Any) -> set[str]:
    """The conditions a resource's properties choose between (Fn::If)."""
    if isinstance(value, dict):
        found = {value["Fn::If"][0]} if isinstance(value.get("Fn::If"), list) else set()
        return found.union(*(_if_conditions(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_if_conditions(v) for v in value))
    return set()


def conditional_diff(
    old: dict[str, Any],
    new: dict[str, Any],
    old_conditions: Any,
    new_conditions: Any,
    changed_parameters: set[str],
    references: Any,
) -> dict[str, list[str]]:
    """Add/Modify/Remove between two templates' resources as their conditions choose them."""

    def live(resources: dict[str, Any], conditions: Any) -> dict[str, Any]:
        return {n: r for n, r in resources.items() if "Condition" not in r or conditions[r["Condition"]]}

    before, after = live(old, old_conditions), live(new, new_conditions)
    flipped = {
        c for c in _if_conditions(new) if c in old_conditions and old_conditions[c] != new_conditions[c]
    }
    return {
        "Add": [n for n in after if n not in before],
        "Modify": [
            n
            for n in after
            if n in before
            and (
                after[n] != before[n]
                or changed_parameters & set(references(after[n]))
                or flipped & _if_conditions(after[n])
            )
        ],
        "Remove": [n for n in before if n not in after],
    }


def install_conditional_diff() -> None:
    from moto.cloudformation.models import Change, ChangeSet
    from moto.cloudformation.parsing import ResourceMap, get_references_from_template

    def build_resource_diff(
        self: Any, other_template: dict[str, Any], parameters: dict[str, Any] | None = None
    ) -> dict[str, list[str]]:
        parameters = parameters if parameters is not None else self.input_parameters
        preview = ResourceMap(
            self.stack_id,
            self["AWS::StackName"],
            parameters,
            self.tags,
            self._region_name,
            self._account_id,
            other_template,
            self.cross_stack_resources,
        )
        preview.load_mapping()
        preview.load_parameters()
        preview.load_conditions()
        return conditional_diff(
            self._resource_json_map,
            other_template.get("Resources") or {},
            getattr(self, "lazy_condition_map", {}),
            preview.lazy_condition_map,
            {p for p in parameters if self.input_parameters.get(p) != parameters[p]},
            get_references_from_template,
        )

    def diff(self: Any) -> list[Any]:
        actions = self.stack.resource_map.build_resource_diff(self.template_dict, self.parameters)
        old = self.stack.resource_map._resource_json_map
        new = self.template_dict.get("Resources") or {}
        return [
            Change(action, name, (new.get(name) or old[name])["Type"])
            for action, names in actions.items()
            for name in names
        ]

    original_delete = ResourceMap._delete_resource

    def delete_resource(self: Any, parsed_resource: Any, resource_json: dict[str, Any]) -> None:
        # An update that removes a resource keeps it under DeletionPolicy: Retain, as a
        # stack deletion does (moto's update deletes it): the bootstrap task definition.
        if resource_json.get("DeletionPolicy") != "Retain":
            original_delete(self, parsed_resource, resource_json)

    original_update = ResourceMap.update

    def update(self: Any, template: dict[str, Any], parameters: dict[str, Any] | None = None) -> None:
        removed = self.build_resource_diff(template, parameters)["Remove"]
        original_update(self, template, parameters)
        for name in removed:  # gone: a later stack deletion must not delete them again
            self._parsed_resources.pop(name, None)

    ResourceMap.build_resource_diff = build_resource_diff  # type: ignore[method-assign]
    ResourceMap._delete_resource = delete_resource  # type: ignore[method-assign]
    ResourceMap.update = update  # type: ignore[method-assign]
    ChangeSet.diff = diff  # type: ignore[method-assign]
