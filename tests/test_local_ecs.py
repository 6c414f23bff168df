"""The local ECS and load balancer stand-ins on their own: tasks are labelled containers
with ECS's states and stop fields, desired count and deletion leave no container,
ECS's refusals keep ECS's messages, and the load balancer routes and checks health."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import docker
import pytest

from pipeline import ecs as pipeline_ecs
from pipeline.stack.emulator.engine import (
    CLUSTER_LABEL,
    CONTAINER_LABEL,
    FAMILY_LABEL,
    OWNER_LABEL,
    TASK_LABEL,
    circuit_breaker_threshold,
)
from tests.conftest import DeployTarget, default_network, hello_task_definition, push_image, remove_services
from tests.helpers import ROOT, http_get, wait_until

Aws = Callable[[str], Any]


def containers(environ: dict[str, str], cluster: str) -> list[dict[str, Any]]:
    """This stack's task containers of a cluster. The engine's own list (no inspect of
    each, which races with the local ECS removing stopped tasks)."""
    owner = f"{OWNER_LABEL}={environ['AWS_ENDPOINT_URL']}"
    return list(
        docker.from_env().api.containers(all=True, filters={"label": [owner, f"{CLUSTER_LABEL}={cluster}"]})
    )


def env_of(container: dict[str, Any]) -> dict[str, str]:
    try:
        config = docker.from_env().api.inspect_container(container["Id"])["Config"]
    except docker.errors.NotFound:  # stopped and removed meanwhile
        return {}
    return dict(e.split("=", 1) for e in config["Env"])


def aws_fails(environ: dict[str, str], *args: str) -> str:
    """The one-line error the real aws CLI prints for a refused call."""
    proc = subprocess.run(["aws", *args], env=environ, capture_output=True, text=True)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr.strip()


def test_service_tasks_are_labelled_containers_and_desired_zero_or_delete_leaves_none(
    deploy_target: DeployTarget, aws: Aws, environ: dict[str, str]
) -> None:
    ecs = aws("ecs")
    (arn,) = ecs.list_tasks(cluster=deploy_target.cluster, serviceName=deploy_target.service)["taskArns"]
    (task,) = ecs.describe_tasks(cluster=deploy_target.cluster, tasks=[arn])["tasks"]
    assert (task["lastStatus"], task["desiredStatus"]) == ("RUNNING", "RUNNING")
    (container,) = containers(environ, deploy_target.cluster)
    assert container["Labels"][TASK_LABEL] == arn
    assert container["Labels"][CONTAINER_LABEL] == deploy_target.service
    assert container["Labels"][FAMILY_LABEL] == deploy_target.family

    ecs.update_service(cluster=deploy_target.cluster, service=deploy_target.service, desiredCount=0)
    wait_until(lambda: not containers(environ, deploy_target.cluster), timeout=60)

    def stopped() -> dict[str, Any] | None:
        (now,) = ecs.describe_tasks(cluster=deploy_target.cluster, tasks=[arn])["tasks"]
        return now if now["lastStatus"] == "STOPPED" else None

    assert wait_until(stopped, timeout=60)["stopCode"] == "ServiceSchedulerInitiated"
    stopped_task = stopped()
    assert stopped_task
    assert stopped_task["stoppedReason"].startswith("Scaling activity initiated by (deployment ecs-svc/")

    ecs.update_service(cluster=deploy_target.cluster, service=deploy_target.service, desiredCount=2)
    wait_until(lambda: len(containers(environ, deploy_target.cluster)) == 2, timeout=60)
    ports = {env_of(c).get("PORT") for c in containers(environ, deploy_target.cluster)}
    assert len(ports) == 2  # one port per task: the two run side by side
    ecs.delete_service(cluster=deploy_target.cluster, service=deploy_target.service, force=True)
    wait_until(lambda: not containers(environ, deploy_target.cluster), timeout=60)


def run_one_task(
    aws: Aws,
    cluster: str,
    definition: dict[str, Any],
    watch: Callable[[dict[str, Any]], None] = lambda _t: None,
) -> dict[str, Any]:
    """Register the definition, RunTask it on Fargate, and wait until it STOPPED, handing
    each DescribeTasks answer to `watch` on the way; the last answer."""
    ecs = aws("ecs")
    arn = ecs.register_task_definition(**definition)["taskDefinition"]["taskDefinitionArn"]
    (task,) = ecs.run_task(
        cluster=cluster, taskDefinition=arn, launchType="FARGATE", networkConfiguration=default_network(aws)
    )["tasks"]

    def stopped() -> dict[str, Any] | None:
        (now,) = ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"]
        watch(now)
        return now if now["lastStatus"] == "STOPPED" else None

    return dict(wait_until(stopped, timeout=30))


def test_a_standalone_task_goes_through_ecs_states_and_reports_its_exit(
    aws: Aws, prefix: str, repository: str, environ: dict[str, str], hello_image: str
) -> None:
    image = push_image(environ, hello_image, repository, "1" * 40)
    ecs = aws("ecs")
    ecs.create_cluster(clusterName=f"{prefix}-cluster")
    aws("ssm").put_parameter(Name=f"/{prefix}/token", Value="from-ssm", Type="SecureString")
    secret = aws("secretsmanager").create_secret(
        Name=f"{prefix}/db", SecretString=json.dumps({"pw": "from-asm"})
    )
    definition = hello_task_definition(f"{prefix}-job", image)
    definition["containerDefinitions"][0].update(
        command=["python3", "-c", "import os, sys, time; time.sleep(1); sys.exit(3)"],
        secrets=[
            {"name": "TOKEN", "valueFrom": f"/{prefix}/token"},
            {"name": "DB_PASSWORD", "valueFrom": f"{secret['ARN']}:pw::"},
        ],
    )
    seen: set[Any] = set()

    def watch(now: dict[str, Any]) -> None:
        seen.add(now["lastStatus"])
        for container in containers(environ, f"{prefix}-cluster") if now["lastStatus"] == "RUNNING" else []:
            env = env_of(container)
            if env:
                seen.add((env["TOKEN"], env["DB_PASSWORD"]))

    final = run_one_task(aws, f"{prefix}-cluster", definition, watch)
    assert "RUNNING" in seen, (final["stoppedReason"], final["containers"])
    assert ("from-ssm", "from-asm") in seen  # the secrets, resolved when the task started
    assert seen - {("from-ssm", "from-asm")} <= {
        "PROVISIONING",
        "PENDING",
        "RUNNING",
        "DEACTIVATING",
        "STOPPED",
    }
    assert (final["stopCode"], final["stoppedReason"]) == (
        "EssentialContainerExited",
        "Essential container in task exited",
    )
    assert final["containers"][0]["exitCode"] == 3
    wait_until(lambda: not containers(environ, f"{prefix}-cluster"), timeout=60)


def test_a_health_check_runs_its_command_in_the_container_healthy_on_first_success_unhealthy_after_retries(
    aws: Aws, prefix: str, repository: str, environ: dict[str, str], hello_image: str
) -> None:
    image = push_image(environ, hello_image, repository, "3" * 40)
    ecs = aws("ecs")
    cluster = f"{prefix}-cluster"
    ecs.create_cluster(clusterName=cluster)
    definition = hello_task_definition(f"{prefix}-checked", image)
    # Healthy while /tmp/sick is absent: the command really runs inside the task's container.
    definition["containerDefinitions"][0]["healthCheck"] = {
        "command": ["CMD-SHELL", "test ! -e /tmp/sick"],
        "interval": 5,
        "timeout": 2,
        "retries": 2,
        "startPeriod": 0,
    }
    arn = ecs.register_task_definition(**definition)["taskDefinition"]["taskDefinitionArn"]
    (task,) = ecs.run_task(
        cluster=cluster, taskDefinition=arn, launchType="FARGATE", networkConfiguration=default_network(aws)
    )["tasks"]

    def health() -> str:
        (now,) = ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"]
        return str(now.get("healthStatus"))

    wait_until(lambda: health() == "HEALTHY", timeout=60)
    (container,) = containers(environ, cluster)
    docker.from_env().containers.get(container["Id"]).exec_run(["touch", "/tmp/sick"])
    wait_until(lambda: health() == "UNHEALTHY", timeout=60)
    ecs.stop_task(cluster=cluster, task=task["taskArn"])


def test_a_task_whose_secret_is_missing_never_starts_and_has_no_exit_code(
    aws: Aws, prefix: str, repository: str, environ: dict[str, str], hello_image: str
) -> None:
    image = push_image(environ, hello_image, repository, "2" * 40)
    ecs = aws("ecs")
    ecs.create_cluster(clusterName=f"{prefix}-cluster")
    definition = hello_task_definition(f"{prefix}-job", image)
    definition["containerDefinitions"][0]["secrets"] = [{"name": "TOKEN", "valueFrom": f"/{prefix}/absent"}]
    final = run_one_task(aws, f"{prefix}-cluster", definition)
    assert final["stopCode"] == "TaskFailedToStart", final["stoppedReason"]
    assert "exitCode" not in final["containers"][0]  # as ECS: it never ran, so it has none
    reason = pipeline_ecs.task_reason(final)
    assert (
        reason.endswith(f"{definition['containerDefinitions'][0]['name']}: never ran")
        and "exit 0" not in reason
    )


def test_ecs_refusals_keep_ecs_messages(aws: Aws, prefix: str, environ: dict[str, str]) -> None:
    ecs = aws("ecs")
    cluster = f"{prefix}-cluster"
    ecs.create_cluster(clusterName=cluster)
    plain = ecs.register_task_definition(
        family=f"{prefix}-plain", containerDefinitions=[{"name": "web", "image": "x", "memory": 128}]
    )["taskDefinition"]["taskDefinitionArn"]
    vpc = ecs.register_task_definition(**hello_task_definition(f"{prefix}-vpc", "x"))["taskDefinition"][
        "taskDefinitionArn"
    ]
    ecs.create_service(cluster=cluster, serviceName="plain", taskDefinition=plain, desiredCount=0)
    assert aws_fails(
        environ, "ecs", "update-service", "--cluster", cluster, "--service", "plain", "--task-definition", vpc
    ).endswith("Network Configuration must be provided when networkMode 'awsvpc' is specified.")
    fargate = [
        "ecs",
        "register-task-definition",
        "--family",
        f"{prefix}-f",
        "--requires-compatibilities",
        "FARGATE",
        "--container-definitions",
        '[{"name": "web", "image": "x"}]',
    ]
    assert aws_fails(
        environ, *fargate, "--network-mode", "bridge", "--cpu", "256", "--memory", "512"
    ).endswith("Fargate only supports network mode \u2018awsvpc\u2019.")
    assert aws_fails(
        environ, *fargate, "--network-mode", "awsvpc", "--cpu", "256", "--memory", "4096"
    ).endswith(
        "No Fargate configuration exists for given values: 256 CPU, 4096 memory. "
        "See the Amazon ECS documentation for the valid values."
    )
    network = json.dumps(default_network(aws))
    for container, port, message in (
        ("nope", 8080, "The container nope does not exist in the task definition."),
        (f"{prefix}-vpc", 9999, f"The container {prefix}-vpc did not have a container port 9999 defined."),
    ):
        balancers = json.dumps(
            [
                {
                    "targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x/1",
                    "containerName": container,
                    "containerPort": port,
                }
            ]
        )
        assert aws_fails(
            environ,
            "ecs",
            "create-service",
            "--cluster",
            cluster,
            "--service-name",
            f"lb-{port}",
            "--task-definition",
            vpc,
            "--desired-count",
            "0",
            "--network-configuration",
            network,
            "--load-balancers",
            balancers,
        ).endswith(message)
    # ECS takes the VPC's default security group when none is named (moto answered HTTP 500).
    created = ecs.create_service(
        cluster=cluster,
        serviceName="vpc",
        taskDefinition=vpc,
        desiredCount=0,
        networkConfiguration=default_network(aws),
    )["service"]
    (group,) = created["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"]
    described = aws("ec2").describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
    assert described["GroupName"] == "default"


def test_the_circuit_breaker_threshold_is_ecs_s() -> None:
    assert [circuit_breaker_threshold(n) for n in (0, 1, 6, 7, 10, 400, 1000)] == [3, 3, 3, 4, 5, 200, 200]


def test_the_load_balancer_routes_by_rule_and_checks_target_health(
    aws: Aws, prefix: str, hello_url: str
) -> None:
    ec2, elbv2 = aws("ec2"), aws("elbv2")
    subnets = [
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][:2]
    ]
    vpc = ec2.describe_subnets(SubnetIds=subnets[:1])["Subnets"][0]["VpcId"]
    balancer = elbv2.create_load_balancer(Name=f"{prefix}-alb", Subnets=subnets)["LoadBalancers"][0]
    group = elbv2.create_target_group(
        Name=f"{prefix}-tg",
        Protocol="HTTP",
        Port=80,
        VpcId=vpc,
        TargetType="ip",
        HealthCheckPath="/hello/health",
        HealthCheckIntervalSeconds=5,
        HealthyThresholdCount=2,
        Matcher={"HttpCode": "200-299"},
    )["TargetGroups"][0]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=group["TargetGroupArn"],
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "10"}],
    )
    listener = elbv2.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {"StatusCode": "404", "MessageBody": "no route"},
            }
        ],
    )["Listeners"][0]
    elbv2.create_rule(
        ListenerArn=listener["ListenerArn"],
        Priority=10,
        Conditions=[{"Field": "path-pattern", "Values": ["/hello/*"]}],
        Actions=[{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}],
    )
    base = f"http://{balancer['DNSName']}"
    assert balancer["DNSName"].startswith("127.0.0.1:")
    assert http_get(f"{base}/elsewhere") == (404, "")  # the default action
    assert http_get(f"{base}/hello/")[0] == 503  # no target yet
    port = int(hello_url.split(":")[2].split("/")[0])
    target = {"Id": "127.0.0.1", "Port": port}
    elbv2.register_targets(TargetGroupArn=group["TargetGroupArn"], Targets=[target])

    def state() -> str:
        (health,) = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])[
            "TargetHealthDescriptions"
        ]
        return str(health["TargetHealth"]["State"])

    assert state() in ("initial", "healthy")
    wait_until(lambda: state() == "healthy", timeout=60)
    assert http_get(f"{base}/hello/") == (200, "Hello World!\n")
    elbv2.deregister_targets(TargetGroupArn=group["TargetGroupArn"], Targets=[target])
    assert state() == "draining"
    wait_until(
        lambda: (
            not elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])[
                "TargetHealthDescriptions"
            ]
        ),
        timeout=15,
    )
    elbv2.delete_load_balancer(LoadBalancerArn=balancer["LoadBalancerArn"])
    assert http_get(f"{base}/hello/")[0] == 0  # its data plane is gone too


@pytest.mark.parametrize(
    ("stop", "left"), [(signal.SIGKILL, 2), (signal.SIGTERM, 0)], ids=["kill-9", "sigterm"]
)
def test_stack_down_removes_the_task_containers_a_killed_emulator_left(
    tmp_path: Any,
    prefix: str,
    repository: str,
    environ: dict[str, str],
    hello_image: str,
    stop: signal.Signals,
    left: int,
) -> None:
    """A second emulator of its own (its own ports and directory): stopped (as `down`
    does) it removes its tasks' containers itself; killed, it leaves them and `stack.down`
    removes exactly those."""
    import os
    import sys

    import boto3

    from pipeline import stack
    from tests.helpers import free_port

    image = push_image(environ, hello_image, repository, "2" * 40)
    port = free_port()
    cfg = stack.StackConfig(
        directory=tmp_path,
        emulator_port=port,
        bridge_port=free_port(),
        registry_port=int(environ["ECR_ENDPOINT"].rsplit(":", 1)[1]),
    )
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.stack.emulator",
            "--port",
            str(port),
            "--bridge-port",
            str(cfg.bridge_port),
            "--registry",
            f"http://{environ['ECR_ENDPOINT']}",
        ],
        env={**environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ecs = boto3.client("ecs", endpoint_url=cfg.endpoint, region_name="us-east-1")
        wait_until(lambda: _answers(ecs), timeout=30)
        ecs.create_cluster(clusterName=f"{prefix}-other")
        definition = ecs.register_task_definition(
            family=f"{prefix}-other", containerDefinitions=[{"name": "web", "image": image, "memory": 128}]
        )["taskDefinition"]["taskDefinitionArn"]
        ecs.create_service(
            cluster=f"{prefix}-other", serviceName="web", taskDefinition=definition, desiredCount=2
        )
        other = {**environ, "AWS_ENDPOINT_URL": cfg.endpoint}
        wait_until(lambda: len(containers(other, f"{prefix}-other")) == 2, timeout=30)
    finally:
        os.killpg(emulator.pid, stop)
        emulator.wait(timeout=30)
    assert len(containers(other, f"{prefix}-other")) == left
    said: list[str] = []
    stack.down(cfg, say=said.append)
    assert said == ([f"task containers: removed {left}"] if left else [])
    assert not containers(other, f"{prefix}-other")


def _answers(ecs: Any) -> bool:
    try:
        ecs.list_clusters()
        return True
    except Exception:
        return False


def test_a_deploy_ecs_refuses_is_reported_in_one_line_and_changes_no_service(
    run_task: Callable[..., Any],
    aws: Aws,
    prefix: str,
    repository: str,
    environ: dict[str, str],
    hello_image: str,
) -> None:
    sha = "3" * 40
    image = push_image(environ, hello_image, repository, sha)
    ecs = aws("ecs")
    cluster, service = f"{prefix}-cluster", f"{prefix}-service"
    ecs.create_cluster(clusterName=cluster)
    plain = ecs.register_task_definition(
        family=service, containerDefinitions=[{"name": service, "image": image, "memory": 128}]
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=plain, desiredCount=0)
    # hello_world's template is awsvpc; this service was made without network configuration.
    proc = run_task("deploy", "--env", "prod", "--sha", sha, "--no-smoke")
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert line.endswith("Network Configuration must be provided when networkMode 'awsvpc' is specified.")
    found = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
    assert found["taskDefinition"] == plain and len(found["deployments"]) == 1


@pytest.mark.heavy
def test_setup_push_and_deploy_smoke_test_through_the_local_load_balancer(
    run_task: Callable[..., Any], environ: dict[str, str], prefix: str, aws_cli: Callable[..., Any]
) -> None:
    """As a new user runs it: no --smoke-url, the ALB's DNS name answers."""
    try:
        for step in (
            ("setup",),
            ("dockerize",),
            ("push",),
            ("setup", "--env", "prod"),
            ("deploy", "--env", "prod"),
        ):
            proc = run_task(*step)
            assert proc.returncode == 0, (step, proc.stdout[-2000:], proc.stderr)
        assert "<== smoke test: ok" in proc.stdout
        (url,) = {
            w for w in proc.stdout.split() if w.startswith("http://127.0.0.1:") and w.endswith("/hello/")
        }
        assert http_get(url) == (200, "Hello World!\n")
        service = aws_cli(
            "ecs", "describe-services", "--cluster", f"{prefix}-cluster", "--services", f"{prefix}-service"
        )
        assert service["services"][0]["taskDefinition"].endswith(f"{prefix}-service:2")
        (container,) = containers(environ, f"{prefix}-cluster")
        assert container["Labels"][FAMILY_LABEL] == f"{prefix}-service"
    finally:
        remove_services(environ, prefix)  # its containers hold the images
        for image in docker.from_env().images.list(name=prefix):
            docker.from_env().images.remove(image.id, force=True, noprune=True)
