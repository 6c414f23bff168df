"""The local ECS's native deployment strategies on real containers behind the local ALB:
a BLUE_GREEN service deployment runs ECS's lifecycle stages, pauses at a PAUSE hook with
green on the test listener only, and ContinueServiceDeployment, StopServiceDeployment or
the hook's timeout promote green or send everything back to blue."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pipeline.stack.emulator.loadbalancer import ADDRESS_TAG
from tests.conftest import (
    default_network,
    hello_task_definition,
    push_image,
    remove_services,
    wait_for_rollout,
)
from tests.helpers import ROLLOUT_DEADLINE, http_get, wait_until

Aws = Callable[[str], Any]


def revision_of(url: str) -> str | None:
    """The X-Revision of a 200 answer; None for anything else."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.headers.get("X-Revision") if resp.status == 200 else None
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class BlueGreen:
    cluster: str
    service: str
    production_url: str
    test_url: str
    production_rule: str
    blue_group: str
    green_group: str
    green_definition: str
    blue_definition: str
    seen_in_production: set[str | None] = field(default_factory=set)

    def production(self) -> str | None:
        revision = revision_of(self.production_url)
        self.seen_in_production.add(revision)
        return revision


def _definition(aws: Aws, family: str, image: str, revision: str, **container: Any) -> str:
    definition = hello_task_definition(family, image)
    definition["containerDefinitions"][0]["environment"].append({"name": "REVISION", "value": revision})
    definition["containerDefinitions"][0].update(container)
    return str(aws("ecs").register_task_definition(**definition)["taskDefinition"]["taskDefinitionArn"])


def blue_green_service(
    aws: Aws,
    environ: dict[str, str],
    prefix: str,
    image: str,
    hooks: list[dict[str, Any]],
    green_container: dict[str, Any] | None = None,
    **config: Any,
) -> BlueGreen:
    """An ALB with a production listener and a test listener, two target groups, and a
    BLUE_GREEN service running `blue`; `green` registered, not yet deployed."""
    ec2, elbv2, ecs = aws("ec2"), aws("elbv2"), aws("ecs")
    subnets = [
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][:2]
    ]
    vpc = ec2.describe_subnets(SubnetIds=subnets[:1])["Subnets"][0]["VpcId"]
    balancer = elbv2.create_load_balancer(Name=f"{prefix}-alb", Subnets=subnets)["LoadBalancers"][0]
    groups = []
    for color in ("blue", "green"):
        group = elbv2.create_target_group(
            Name=f"{prefix}-{color}",
            Protocol="HTTP",
            Port=8080,
            VpcId=vpc,
            TargetType="ip",
            HealthCheckPath="/hello/health",
            HealthCheckIntervalSeconds=5,
            HealthyThresholdCount=2,
        )["TargetGroups"][0]["TargetGroupArn"]
        elbv2.modify_target_group_attributes(
            TargetGroupArn=group, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "10"}]
        )
        groups.append(group)
    blue_group, green_group = groups
    rules = []
    for port in (80, 9000):
        listener = elbv2.create_listener(
            LoadBalancerArn=balancer["LoadBalancerArn"],
            Protocol="HTTP",
            Port=port,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
        )["Listeners"][0]
        forward = {
            "Type": "forward",
            "ForwardConfig": {
                "TargetGroups": [
                    {"TargetGroupArn": blue_group, "Weight": 100},
                    {"TargetGroupArn": green_group, "Weight": 0},
                ]
            },
        }
        rules.append(
            elbv2.create_rule(
                ListenerArn=listener["ListenerArn"],
                Priority=10,
                Conditions=[{"Field": "path-pattern", "Values": ["/hello/*"]}],
                Actions=[forward],
            )["Rules"][0]["RuleArn"]
        )
        tags = elbv2.describe_tags(ResourceArns=[listener["ListenerArn"]])["TagDescriptions"][0]["Tags"]
        address = next(t["Value"] for t in tags if t["Key"] == ADDRESS_TAG)
        if port == 80:
            assert address == balancer["DNSName"]  # the production listener answers at the DNS name
            production_url = f"http://{address}/hello/"
        else:
            assert address != balancer["DNSName"]
            test_url = f"http://{address}/hello/"
    cluster, service = f"{prefix}-cluster", f"{prefix}-service"
    ecs.create_cluster(clusterName=cluster)
    blue = _definition(aws, service, image, "blue")
    green = _definition(aws, service, image, "green", **(green_container or {}))
    ecs.create_service(
        cluster=cluster,
        serviceName=service,
        taskDefinition=blue,
        desiredCount=1,
        launchType="FARGATE",
        networkConfiguration=default_network(aws),
        # As `setup` makes services (health_check_grace_seconds): a task whose app starts
        # slower than the target group's unhealthy window (2 checks 0.5 s apart here, at
        # the emulator's speed) on a loaded machine is not killed and replaced before it
        # listens, over and over, leaving production without a target.
        healthCheckGracePeriodSeconds=60,
        loadBalancers=[
            {
                "targetGroupArn": blue_group,
                "containerName": service,
                "containerPort": 8080,
                "advancedConfiguration": {
                    "alternateTargetGroupArn": green_group,
                    "productionListenerRule": rules[0],
                    "testListenerRule": rules[1],
                    "roleArn": "arn:aws:iam::123456789012:role/ecs-blue-green",
                },
            }
        ],
        deploymentConfiguration={
            "strategy": "BLUE_GREEN",
            "bakeTimeInMinutes": 0,
            "lifecycleHooks": hooks,
            **config,
        },
    )
    env = BlueGreen(
        cluster, service, production_url, test_url, rules[0], blue_group, green_group, green, blue
    )
    wait_for_rollout(aws, cluster, service)
    wait_until(lambda: env.production() == "blue", timeout=ROLLOUT_DEADLINE)
    env.seen_in_production.clear()  # from here on, production must answer
    return env


def cleanup(aws: Aws, environ: dict[str, str], prefix: str) -> None:
    remove_services(environ, prefix)
    elbv2 = aws("elbv2")
    for balancer in elbv2.describe_load_balancers()["LoadBalancers"]:
        if balancer["LoadBalancerName"] == f"{prefix}-alb":
            elbv2.delete_load_balancer(LoadBalancerArn=balancer["LoadBalancerArn"])


MakeBlueGreen = Callable[..., BlueGreen]


@pytest.fixture
def blue_green(
    aws: Aws, environ: dict[str, str], prefix: str, hello_image: str, repository: str
) -> Iterator[MakeBlueGreen]:
    """blue_green_service(hooks, green_container, **deploymentConfiguration) on hello_world's
    image pushed for this test; everything the test made goes at its end."""
    image = push_image(environ, hello_image, repository, "bg")

    def make(
        hooks: list[dict[str, Any]], green_container: dict[str, Any] | None = None, **config: Any
    ) -> BlueGreen:
        return blue_green_service(aws, environ, prefix, image, hooks, green_container, **config)

    yield make
    cleanup(aws, environ, prefix)


PAUSE_AT_TEST_SHIFT = {"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]}


def _update_to_green(aws: Aws, env: BlueGreen) -> str:
    """UpdateService to green; the service deployment it started."""
    aws("ecs").update_service(cluster=env.cluster, service=env.service, taskDefinition=env.green_definition)
    return str(_service(aws, env)["currentServiceDeployment"])


def _rule_weights(aws: Aws, env: BlueGreen) -> dict[str, int]:
    """The production listener rule's forward weights, as DescribeRules shows them."""
    (rule,) = aws("elbv2").describe_rules(RuleArns=[env.production_rule])["Rules"]
    return {g["TargetGroupArn"]: g["Weight"] for g in rule["Actions"][0]["ForwardConfig"]["TargetGroups"]}


def _deploy_green(aws: Aws, env: BlueGreen) -> str:
    """UpdateService to green; wait for the pause at POST_TEST_TRAFFIC_SHIFT; the ARN."""
    ecs = aws("ecs")
    arn = _update_to_green(aws, env)
    assert arn.startswith(
        f"arn:aws:ecs:us-east-1:123456789012:service-deployment/{env.cluster}/{env.service}/"
    )

    last: list[Any] = []

    def paused() -> dict[str, Any] | None:
        env.production()
        (found,) = ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"]
        last[:] = [found, ecs.describe_services(cluster=env.cluster, services=[env.service])["services"][0]]
        waiting = [h for h in found.get("lifecycleHookDetails", []) if h["status"] == "AWAITING_ACTION"]
        return found if waiting else None

    try:
        found = wait_until(paused, timeout=ROLLOUT_DEADLINE)
    except AssertionError:
        raise AssertionError(
            f"no pause: {last[0]}\n{last[1]['deployments']}\n{last[1]['events'][:8]}"
        ) from None
    assert found["status"] == "IN_PROGRESS"
    assert found["lifecycleStage"] == "POST_TEST_TRAFFIC_SHIFT"
    assert found["targetServiceRevision"]["requestedTestTrafficWeight"] == 100.0
    assert found["targetServiceRevision"]["requestedProductionTrafficWeight"] == 0.0
    assert found["sourceServiceRevisions"][0]["requestedProductionTrafficWeight"] == 100.0
    assert found["targetServiceRevision"]["runningTaskCount"] == 1
    return arn


def _hook(aws: Aws, arn: str) -> dict[str, Any]:
    (found,) = aws("ecs").describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"]
    return dict(next(h for h in found["lifecycleHookDetails"] if h["status"] == "AWAITING_ACTION"))


def _ends(aws: Aws, env: BlueGreen, arn: str, status: str) -> dict[str, Any]:
    last: list[Any] = [None]

    def ended() -> dict[str, Any] | None:
        env.production()
        (found,) = aws("ecs").describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"]
        last[0] = found
        return found if found["status"] == status else None

    try:
        return dict(wait_until(ended, timeout=ROLLOUT_DEADLINE))
    except AssertionError:
        service = _service(aws, env)
        raise AssertionError(
            f"not {status}: {last[0]}\n{service['deployments']}\n{service['events'][:12]}"
        ) from None


def _service(aws: Aws, env: BlueGreen) -> dict[str, Any]:
    return dict(aws("ecs").describe_services(cluster=env.cluster, services=[env.service])["services"][0])


def _revisions_running(aws: Aws, env: BlueGreen) -> set[str]:
    ecs = aws("ecs")
    arns = ecs.list_tasks(cluster=env.cluster, serviceName=env.service, desiredStatus="RUNNING")["taskArns"]
    if not arns:
        return set()
    tasks = ecs.describe_tasks(cluster=env.cluster, tasks=arns)["tasks"]
    return {t["taskDefinitionArn"] for t in tasks}


@pytest.mark.heavy
def test_blue_green_pauses_after_test_shift_with_green_on_the_test_listener_only_and_continue_promotes_green(
    aws: Aws,
    aws_cli: Callable[..., Any],
    blue_green: MakeBlueGreen,
) -> None:
    env = blue_green([PAUSE_AT_TEST_SHIFT])
    arn = _deploy_green(aws, env)
    hook = _hook(aws, arn)
    assert hook["targetType"] == "PAUSE" and hook["timeoutAction"] == "ROLLBACK" and hook["expiresAt"]
    # Paused: the test listener answers from green, production only from blue.
    assert {revision_of(env.test_url) for _ in range(10)} == {"green"}
    assert {env.production() for _ in range(10)} == {"blue"}
    service = _service(aws, env)
    assert [(d["status"], d["rolloutState"]) for d in service["deployments"]] == [
        ("PRIMARY", "IN_PROGRESS"),
        ("ACTIVE", "COMPLETED"),
    ]
    assert service["deployments"][0]["taskDefinition"] == env.green_definition
    assert service["deploymentConfiguration"]["strategy"] == "BLUE_GREEN"
    advanced = service["loadBalancers"][0]["advancedConfiguration"]
    assert advanced["alternateTargetGroupArn"] == env.green_group
    listed = aws("ecs").list_service_deployments(
        cluster=env.cluster, service=env.service, status=["IN_PROGRESS"]
    )
    assert [d["serviceDeploymentArn"] for d in listed["serviceDeployments"]] == [arn]

    aws("ecs").continue_service_deployment(serviceDeploymentArn=arn, hookId=hook["hookId"], action="CONTINUE")
    found = _ends(aws, env, arn, "SUCCESSFUL")
    assert env.seen_in_production <= {"blue", "green"}  # no failed answer through the switch
    assert found["lifecycleStage"] == "CLEAN_UP" and found["finishedAt"]
    assert found["targetServiceRevision"]["requestedProductionTrafficWeight"] == 100.0
    assert [h["status"] for h in found["lifecycleHookDetails"]] == ["SUCCEEDED"]
    assert {env.production() for _ in range(10)} == {"green"}
    # ECS rewrote the production rule's weights, as DescribeRules shows.
    assert _rule_weights(aws, env) == {env.blue_group: 0, env.green_group: 100}
    wait_until(lambda: _revisions_running(aws, env) == {env.green_definition}, timeout=ROLLOUT_DEADLINE)
    service = _service(aws, env)
    assert [(d["status"], d["rolloutState"]) for d in service["deployments"]] == [("PRIMARY", "COMPLETED")]
    assert service["currentServiceDeployment"] == arn
    # The first deployment is a service deployment too, listed after this one.
    listed = aws("ecs").list_service_deployments(cluster=env.cluster, service=env.service)
    assert [(d["serviceDeploymentArn"] == arn, d["status"]) for d in listed["serviceDeployments"]] == [
        (True, "SUCCESSFUL"),
        (False, "SUCCESSFUL"),
    ]
    # The aws CLI reads the same service deployment back.
    (read,) = aws_cli("ecs", "describe-service-deployments", "--service-deployment-arns", arn)[
        "serviceDeployments"
    ]
    assert (read["status"], read["deploymentConfiguration"]["strategy"]) == ("SUCCESSFUL", "BLUE_GREEN")


@pytest.mark.heavy
@pytest.mark.parametrize("how", ["continue-rollback", "stop-service-deployment"])
def test_a_blue_green_rollback_at_the_pause_keeps_production_on_blue_and_removes_green(
    how: str, aws: Aws, blue_green: MakeBlueGreen
) -> None:
    env = blue_green([PAUSE_AT_TEST_SHIFT])
    arn = _deploy_green(aws, env)
    if how == "continue-rollback":
        hook = _hook(aws, arn)
        aws("ecs").continue_service_deployment(
            serviceDeploymentArn=arn, hookId=hook["hookId"], action="ROLLBACK"
        )
    else:
        aws("ecs").stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    assert revision_of(env.test_url) == "blue"  # traffic is back at once
    found = _ends(aws, env, arn, "ROLLBACK_SUCCESSFUL")
    assert found["rollback"]["reason"] and found["rollback"]["startedAt"]
    assert found["rollback"]["serviceRevisionArn"] == found["sourceServiceRevisions"][0]["arn"]
    assert env.seen_in_production == {"blue"}  # production never left blue
    wait_until(lambda: _revisions_running(aws, env) == {_service(aws, env)["taskDefinition"]}, timeout=60)
    service = _service(aws, env)
    assert service["taskDefinition"] != env.green_definition
    assert [(d["status"], d["rolloutState"]) for d in service["deployments"]] == [("PRIMARY", "COMPLETED")]


@pytest.mark.heavy
def test_a_pause_hook_that_times_out_with_rollback_rolls_the_deployment_back(
    aws: Aws, blue_green: MakeBlueGreen
) -> None:
    hook = {**PAUSE_AT_TEST_SHIFT, "timeoutConfiguration": {"timeoutInMinutes": 1, "action": "ROLLBACK"}}
    env = blue_green([hook])
    arn = _deploy_green(aws, env)
    found = _ends(aws, env, arn, "ROLLBACK_SUCCESSFUL")
    assert [h["status"] for h in found["lifecycleHookDetails"]] == ["TIMED_OUT"]
    assert "timed out" in found["rollback"]["reason"]
    assert env.seen_in_production == {"blue"}


def _shifted_to(aws: Aws, env: BlueGreen, arn: str, weight: float) -> dict[str, Any]:
    def shifted() -> dict[str, Any] | None:
        (found,) = aws("ecs").describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"]
        return found if found["targetServiceRevision"]["requestedProductionTrafficWeight"] == weight else None

    return dict(wait_until(shifted, timeout=ROLLOUT_DEADLINE))


@pytest.mark.heavy
def test_a_canary_serves_both_revisions_during_its_bake_and_a_stop_sends_production_back_to_blue_at_once(
    aws: Aws, blue_green: MakeBlueGreen
) -> None:
    canary = {"canaryPercent": 50.0, "canaryBakeTimeInMinutes": 30}
    env = blue_green([], strategy="CANARY", canaryConfiguration=canary)
    arn = _update_to_green(aws, env)
    found = _shifted_to(aws, env, arn, 50.0)
    assert (found["status"], found["lifecycleStage"]) == ("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT")
    assert found["sourceServiceRevisions"][0]["requestedProductionTrafficWeight"] == 50.0
    assert _rule_weights(aws, env) == {env.blue_group: 50, env.green_group: 50}
    answers = [revision_of(env.production_url) for _ in range(40)]
    assert set(answers) == {"blue", "green"}, answers

    aws("ecs").stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    assert {revision_of(env.production_url) for _ in range(10)} == {"blue"}
    env.seen_in_production.clear()
    found = _ends(aws, env, arn, "ROLLBACK_SUCCESSFUL")
    assert found["targetServiceRevision"]["requestedProductionTrafficWeight"] == 0.0
    assert env.seen_in_production == {"blue"}


@pytest.mark.heavy
def test_a_linear_deployment_shifts_production_in_steps_then_completes_on_green(
    aws: Aws, blue_green: MakeBlueGreen
) -> None:
    linear = {"stepPercent": 34.0, "stepBakeTimeInMinutes": 1}
    env = blue_green([], strategy="LINEAR", linearConfiguration=linear)
    arn = _update_to_green(aws, env)
    _shifted_to(aws, env, arn, 34.0)
    _ends(aws, env, arn, "SUCCESSFUL")
    shifts = [
        e["message"].split(") ", 2)[-1]
        for e in _service(aws, env)["events"]
        if "production traffic" in e["message"]
    ]
    assert shifts[::-1] == [f"shifted {p}% of production traffic." for p in (34, 68, 100)]
    assert {env.production() for _ in range(10)} == {"green"}
    assert env.seen_in_production <= {"blue", "green"}  # no failed answer on the way


def test_ecs_refuses_native_strategies_without_advanced_configuration_or_out_of_range(
    aws: Aws, prefix: str, environ: dict[str, str]
) -> None:
    from botocore.exceptions import ClientError

    ecs = aws("ecs")
    ecs.create_cluster(clusterName=f"{prefix}-cluster")
    definition = hello_task_definition(f"{prefix}-service", "127.0.0.1:1/none:1")
    arn = ecs.register_task_definition(**definition)["taskDefinition"]["taskDefinitionArn"]
    group = f"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{prefix}/0123456789abcdef"
    lb = {"targetGroupArn": group, "containerName": f"{prefix}-service", "containerPort": 8080}
    advanced = {
        "alternateTargetGroupArn": group.replace(prefix, f"{prefix}-alt"),
        "productionListenerRule": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/a/b/c/d",
        "roleArn": "arn:aws:iam::123456789012:role/ecs-blue-green",
    }

    def refused(config: dict[str, Any], balancer: dict[str, Any]) -> tuple[str, str]:
        with pytest.raises(ClientError) as caught:
            ecs.create_service(
                cluster=f"{prefix}-cluster",
                serviceName=f"{prefix}-service",
                taskDefinition=arn,
                desiredCount=1,
                launchType="FARGATE",
                networkConfiguration=default_network(aws),
                loadBalancers=[balancer],
                deploymentConfiguration=config,
            )
        return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]

    assert refused({"strategy": "LINEAR"}, lb) == (
        "ClientException",
        "advancedConfiguration field is required for all loadBalancers when using the linear deployment strategy",
    )
    without_role = {k: v for k, v in advanced.items() if k != "roleArn"}
    assert "roleArn" in refused({"strategy": "BLUE_GREEN"}, {**lb, "advancedConfiguration": without_role})[1]
    full = {**lb, "advancedConfiguration": advanced}
    assert "bakeTimeInMinutes" in refused({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1441}, full)[1]
    step = {"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 2.9}}
    assert "stepPercent" in refused(step, full)[1]
    canary = {"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 0.05}}
    assert "canaryPercent" in refused(canary, full)[1]
    lambda_hook = {
        "targetType": "AWS_LAMBDA",
        "hookTargetArn": "arn:aws:lambda:us-east-1:123456789012:function:gate",
        "roleArn": advanced["roleArn"],
        "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
    }
    assert (
        refused({"strategy": "BLUE_GREEN", "lifecycleHooks": [lambda_hook]}, full)[0]
        == "InvalidParameterException"
    )
    long_pause = {**PAUSE_AT_TEST_SHIFT, "timeoutConfiguration": {"timeoutInMinutes": 20161}}
    assert "timeoutInMinutes" in refused({"strategy": "BLUE_GREEN", "lifecycleHooks": [long_pause]}, full)[1]
    assert not ecs.list_services(cluster=f"{prefix}-cluster")["serviceArns"]  # nothing half-made


@pytest.mark.heavy
def test_green_tasks_that_keep_failing_trip_the_circuit_breaker_and_the_deployment_rolls_back(
    aws: Aws, blue_green: MakeBlueGreen
) -> None:
    crash = {"command": ["python3", "-c", "raise SystemExit(3)"]}
    breaker = {"enable": True, "rollback": True}
    env = blue_green([PAUSE_AT_TEST_SHIFT], crash, deploymentCircuitBreaker=breaker)
    arn = _update_to_green(aws, env)
    found = _ends(aws, env, arn, "ROLLBACK_SUCCESSFUL")
    assert "circuit breaker" in found["rollback"]["reason"]
    assert found["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    assert found["deploymentCircuitBreaker"]["failureCount"] >= found["deploymentCircuitBreaker"]["threshold"]
    assert found["lifecycleHookDetails"] == []  # it never got past SCALE_UP
    assert env.seen_in_production == {"blue"}
    assert _rule_weights(aws, env) == {env.blue_group: 100, env.green_group: 0}


@pytest.mark.heavy
def test_deleting_a_service_paused_mid_deployment_stops_its_service_deployment(
    aws: Aws, blue_green: MakeBlueGreen
) -> None:
    env = blue_green([PAUSE_AT_TEST_SHIFT])
    arn = _deploy_green(aws, env)
    aws("ecs").delete_service(cluster=env.cluster, service=env.service, force=True)
    (found,) = aws("ecs").describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"]
    assert (found["status"], found["statusReason"]) == (
        "STOPPED",
        "Service deployment stopped: the service was deleted.",
    )
    assert found["stoppedAt"] == found["finishedAt"]


def test_the_lowest_port_listener_answers_at_the_dns_name_and_each_other_at_the_address_its_tag_names(
    aws: Aws, prefix: str
) -> None:
    ec2, elbv2 = aws("ec2"), aws("elbv2")
    subnets = [
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][:2]
    ]
    balancer = elbv2.create_load_balancer(Name=f"{prefix}-alb", Subnets=subnets)["LoadBalancers"][0]
    addresses = {}
    try:
        for port in (9000, 80, 8443):  # the test listener first, as a template may create it
            listener = elbv2.create_listener(
                LoadBalancerArn=balancer["LoadBalancerArn"],
                Protocol="HTTP",
                Port=port,
                DefaultActions=[
                    {
                        "Type": "fixed-response",
                        "FixedResponseConfig": {"StatusCode": "200", "MessageBody": str(port)},
                    }
                ],
            )["Listeners"][0]
            addresses[port] = listener["ListenerArn"]
        tags = elbv2.describe_tags(ResourceArns=list(addresses.values()))["TagDescriptions"]
        by_arn = {t["ResourceArn"]: {x["Key"]: x["Value"] for x in t["Tags"]}[ADDRESS_TAG] for t in tags}
        found = {port: by_arn[arn] for port, arn in addresses.items()}
        assert found[80] == balancer["DNSName"]
        assert len(set(found.values())) == 3
        for port, address in found.items():
            assert http_get(f"http://{address}/") == (200, str(port))
    finally:
        elbv2.delete_load_balancer(LoadBalancerArn=balancer["LoadBalancerArn"])
    assert all(http_get(f"http://{address}/")[0] == 0 for address in found.values())  # all closed


@pytest.mark.heavy
def test_a_service_moved_back_to_rolling_after_a_swap_deploys_into_the_group_production_sends_to(
    aws: Aws, blue_green: MakeBlueGreen
) -> None:
    env = blue_green([])
    _ends(aws, env, _update_to_green(aws, env), "SUCCESSFUL")  # production now on the alternate group
    aws("ecs").update_service(
        cluster=env.cluster,
        service=env.service,
        taskDefinition=env.blue_definition,
        deploymentConfiguration={"strategy": "ROLLING"},
    )
    wait_for_rollout(aws, env.cluster, env.service)
    wait_until(lambda: env.production() == "blue", timeout=ROLLOUT_DEADLINE)
    assert {env.production() for _ in range(10)} == {"blue"}
    assert env.seen_in_production <= {"blue", "green"}  # no failed answer on the way back
    assert _rule_weights(aws, env) == {env.blue_group: 0, env.green_group: 100}  # the rule stayed
