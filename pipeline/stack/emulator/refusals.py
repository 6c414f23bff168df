"""STAND-IN for ECS's request validation: what ECS refuses, refused with ECS's words.

moto accepts requests ECS refuses (an awsvpc task definition on a service without
network configuration, Fargate without awsvpc, cpu/memory pairs Fargate does not
offer, a load balancer naming a container or port the task definition lacks) and fails
one ECS accepts (awsvpcConfiguration without securityGroups: ECS takes the VPC's
default group; moto answered HTTP 500). It refuses the deployment configurations ECS
refuses for the BLUE_GREEN, LINEAR and CANARY strategies: a load balancer without
advancedConfiguration, values outside the API reference's ranges, AWS_LAMBDA hooks (no
Lambda runs here). The messages are ECS's own where ECS's wording is known (quoted from
an ECS answer); the others name the field and the API reference's range.
"""

from __future__ import annotations

from typing import Any

# Fargate's task sizes: cpu units -> the memory (MiB) it may have.
FARGATE_SIZES: dict[int, set[int]] = {
    256: {512, 1024, 2048},
    512: set(range(1024, 4096 + 1, 1024)),
    1024: set(range(2048, 8192 + 1, 1024)),
    2048: set(range(4096, 16384 + 1, 1024)),
    4096: set(range(8192, 30720 + 1, 1024)),
    8192: set(range(16384, 61440 + 1, 4096)),
    16384: set(range(32768, 122880 + 1, 8192)),
}

NETWORK_REQUIRED = "Network Configuration must be provided when networkMode 'awsvpc' is specified."
NETWORK_NOT_VALID = "Network Configuration is not valid for the given networkMode of this task definition."
FARGATE_AWSVPC = "Fargate only supports network mode \u2018awsvpc\u2019."
FARGATE_SIZE = "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Amazon ECS documentation for the valid values."
NO_CONTAINER = "The container {name} does not exist in the task definition."
NO_PORT = "The container {name} did not have a container port {port} defined."
# ECS's answer for LINEAR (seen in the wild); the same words name the other strategies.
ADVANCED_REQUIRED = (
    "advancedConfiguration field is required for all loadBalancers when using the {name} deployment strategy"
)
STRATEGY_NAMES = {"BLUE_GREEN": "blue/green", "LINEAR": "linear", "CANARY": "canary"}
ADVANCED_FIELD = "advancedConfiguration.{field} is required when using the {name} deployment strategy."
OUT_OF_RANGE = "{field} must be {range}."
NO_LAMBDA = (
    "The lifecycle hook target {arn} cannot be invoked: the local ECS stand-in runs no Lambda function "
    "(use a PAUSE hook and ContinueServiceDeployment)."
)
HOOK_STAGES = {
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRE_PRODUCTION_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
}


def _units(value: Any, per_unit: int) -> int | None:
    """'256', 256, '0.25 vCPU', '1 GB' -> cpu units or MiB."""
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    for suffix in ("vcpu", "gb"):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)].strip()) * per_unit)
    return int(float(text))


def check_task_definition(kwargs: dict[str, Any]) -> None:
    from moto.ecs.exceptions import EcsClientException

    if "FARGATE" not in (kwargs.get("requires_compatibilities") or []):
        return
    if kwargs.get("network_mode") != "awsvpc":
        raise EcsClientException(FARGATE_AWSVPC)
    cpu, memory = _units(kwargs.get("cpu"), 1024), _units(kwargs.get("memory"), 1024)
    if cpu is None or memory is None or memory not in FARGATE_SIZES.get(cpu, set()):
        raise EcsClientException(FARGATE_SIZE.format(cpu=kwargs.get("cpu"), memory=kwargs.get("memory")))


def check_service(
    backend: Any, definition: Any, network: dict[str, Any] | None, load_balancers: list[dict[str, Any]] | None
) -> None:
    from moto.ecs.exceptions import InvalidParameterException

    awsvpc = definition.network_mode == "awsvpc"
    if awsvpc and not (network or {}).get("awsvpcConfiguration"):
        raise InvalidParameterException(NETWORK_REQUIRED)
    if not awsvpc and (network or {}).get("awsvpcConfiguration"):
        raise InvalidParameterException(NETWORK_NOT_VALID)
    containers = {c["name"]: c for c in definition.container_definitions}
    for lb in load_balancers or []:
        name = lb.get("containerName")
        if name not in containers:
            raise InvalidParameterException(NO_CONTAINER.format(name=name))
        ports = {int(m.get("containerPort", 0)) for m in containers[name].get("portMappings") or []}
        if lb.get("containerPort") is not None and int(lb["containerPort"]) not in ports:
            raise InvalidParameterException(NO_PORT.format(name=name, port=lb["containerPort"]))


def _tenths(value: Any, low: float, high: float) -> bool:
    number = float(value)
    return low <= number <= high and abs(number * 10 - round(number * 10)) < 1e-6


def _whole(value: Any, low: int, high: int) -> bool:
    return float(value) == int(float(value)) and low <= int(float(value)) <= high


def check_strategy(config: dict[str, Any] | None, load_balancers: list[dict[str, Any]] | None) -> None:
    """deploymentConfiguration of BLUE_GREEN, LINEAR and CANARY, as ECS checks it."""
    from moto.ecs.exceptions import EcsClientException, InvalidParameterException

    config = config or {}
    strategy = config.get("strategy") or "ROLLING"
    if strategy not in STRATEGY_NAMES:
        return
    name = STRATEGY_NAMES[strategy]
    for lb in load_balancers or []:
        advanced = lb.get("advancedConfiguration")
        if not advanced:
            raise EcsClientException(ADVANCED_REQUIRED.format(name=name))
        for field in ("alternateTargetGroupArn", "productionListenerRule", "roleArn"):
            if not advanced.get(field):
                raise InvalidParameterException(ADVANCED_FIELD.format(field=field, name=name))
    minutes = "an integer from 0 to 1440"
    checks = [
        ("bakeTimeInMinutes", config.get("bakeTimeInMinutes"), lambda v: _whole(v, 0, 1440), minutes),
    ]
    linear, canary = config.get("linearConfiguration") or {}, config.get("canaryConfiguration") or {}
    checks += [
        (
            "linearConfiguration.stepPercent",
            linear.get("stepPercent"),
            lambda v: _tenths(v, 3.0, 100.0),
            "a multiple of 0.1 from 3.0 to 100.0",
        ),
        (
            "linearConfiguration.stepBakeTimeInMinutes",
            linear.get("stepBakeTimeInMinutes"),
            lambda v: _whole(v, 0, 1440),
            minutes,
        ),
        (
            "canaryConfiguration.canaryPercent",
            canary.get("canaryPercent"),
            lambda v: _tenths(v, 0.1, 100.0),
            "a multiple of 0.1 from 0.1 to 100.0",
        ),
        (
            "canaryConfiguration.canaryBakeTimeInMinutes",
            canary.get("canaryBakeTimeInMinutes"),
            lambda v: _whole(v, 0, 1440),
            minutes,
        ),
    ]
    for hook in config.get("lifecycleHooks") or []:
        timeout = (hook.get("timeoutConfiguration") or {}).get("timeoutInMinutes")
        checks.append(
            (
                "timeoutConfiguration.timeoutInMinutes",
                timeout,
                lambda v: _whole(v, 1, 20160),
                "an integer from 1 to 20160",
            )
        )
        if hook.get("targetType") == "AWS_LAMBDA":
            raise InvalidParameterException(NO_LAMBDA.format(arn=hook.get("hookTargetArn")))
        unknown = [s for s in hook.get("lifecycleStages") or [] if s not in HOOK_STAGES]
        if unknown or not hook.get("lifecycleStages"):
            raise InvalidParameterException(
                OUT_OF_RANGE.format(
                    field="lifecycleStages", range=f"one or more of {', '.join(sorted(HOOK_STAGES))}"
                )
            )
    for field, value, valid, text in checks:
        try:
            ok = value is None or valid(value)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InvalidParameterException(OUT_OF_RANGE.format(field=field, range=text))


def default_security_group(
    account: str, region: str, network: dict[str, Any] | None
) -> dict[str, Any] | None:
    """ECS uses the VPC's default security group when awsvpcConfiguration names none."""
    config = (network or {}).get("awsvpcConfiguration")
    if not config or config.get("securityGroups") or not config.get("subnets"):
        return network
    from moto.ec2.models import ec2_backends

    ec2 = ec2_backends[account][region]
    try:
        vpc_id = ec2.get_subnet(config["subnets"][0]).vpc_id
    except Exception:
        return network  # moto names the unknown subnet itself
    group = ec2.get_default_security_group(vpc_id)
    return {**network, "awsvpcConfiguration": {**config, "securityGroups": [group.id] if group else []}}  # type: ignore[dict-item]


def install() -> None:
    from moto.ecs.models import EC2ContainerServiceBackend

    original = EC2ContainerServiceBackend.register_task_definition

    def register_task_definition(
        self: Any, family: str, container_definitions: list[dict[str, Any]], **kwargs: Any
    ) -> Any:
        check_task_definition(kwargs)
        return original(self, family, container_definitions, **kwargs)

    EC2ContainerServiceBackend.register_task_definition = register_task_definition  # type: ignore[method-assign,assignment]
