"""Cross-checks before the first change: container_port against the template's port
mappings and the image's EXPOSE, problems named against the file they are in, and the
task role as a placeholder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import pytest

from pipeline import config, deploy, image, stack, taskdef, verbs
from pipeline.errors import ConfigError
from pipeline.git import Revision
from tests.conftest import DeployTarget

ROOT = Path(__file__).resolve().parent.parent
INPUTS = taskdef.RenderInputs(
    family="greeter-service",
    container="greeter-service",
    image="123456789012.dkr.ecr.us-east-1.amazonaws.com/greeter:abc1234",
    sha="abc1234",
    environment="prod",
    region="us-east-1",
    account_id="123456789012",
    prefix="greeter",
    cluster="greeter-cluster",
    service="greeter-service",
    execution_role_arn="arn:aws:iam::123456789012:role/greeter-prod-ecs-execution-role",
    log_group="/ecs/greeter",
    port=9000,
    base_path="/greet/",
    created_at=datetime(2026, 5, 6, tzinfo=UTC),
    task_role_arn="arn:aws:iam::123456789012:role/greeter-prod-ecs-task-role",
)


def template(port: Any = "${port}", **extra: Any) -> dict[str, Any]:
    container = {"name": "${container}", "image": "${image}", "portMappings": [{"containerPort": port}]}
    return {"containerDefinitions": [container], **extra}


def render(tpl: dict[str, Any], values: taskdef.EnvironmentValues | None = None, **inputs: Any) -> Any:
    return taskdef.render(
        tpl,
        values or taskdef.EnvironmentValues(),
        replace(INPUTS, **inputs),
        "app/deploy/taskdef.json",
        "app/deploy/prod.json",
    )


def test_the_template_must_map_container_port() -> None:
    assert render(template())["containerDefinitions"][0]["portMappings"] == [{"containerPort": 9000}]
    with pytest.raises(ConfigError) as info:
        render(template(8080))
    assert info.value.problems == [
        "app/deploy/taskdef.json: container greeter-service maps port 8080, but container_port in "
        '[tool.pipeline] is 9000; write "containerPort": "${port}" or fix container_port'
    ]
    # No port mappings (a worker without a load balancer) is not a mismatch.
    render({"containerDefinitions": [{"name": "${container}", "image": "${image}"}]})
    # A sidecar's ports are its own.
    sidecar = template()
    sidecar["containerDefinitions"].append(
        {"name": "proxy", "image": "envoy", "portMappings": [{"containerPort": 15000}]}
    )
    render(sidecar)


def test_problems_in_the_values_file_name_that_file() -> None:
    values = taskdef.EnvironmentValues(
        environment={"API_TOKEN": "plain", "bad-name": "x", "REGION": "${nope}"},
        secrets={"DB": "not an arn"},
    )
    with pytest.raises(ConfigError) as info:
        render(template(extra="${missing}"), values)
    problems = info.value.problems
    in_values = [p for p in problems if p.startswith("app/deploy/prod.json: ")]
    in_template = [p for p in problems if p.startswith("app/deploy/taskdef.json: ")]
    assert len(in_values) == 4 and len(in_template) == 1 and len(problems) == 5
    assert "unknown placeholder ${nope}" in " ".join(in_values)
    assert "API_TOKEN looks like a secret" in " ".join(in_values)
    assert in_template[0].startswith("app/deploy/taskdef.json: unknown placeholder ${missing}")


def test_task_role_arn_is_a_placeholder() -> None:
    request = render(template(taskRoleArn="${task_role_arn}"))
    assert request["taskRoleArn"] == INPUTS.task_role_arn
    with pytest.raises(ConfigError, match=r"unknown placeholder \$\{task_role_arn\}"):
        render(template(taskRoleArn="${task_role_arn}"), task_role_arn="")
    settings = config.load({"AWS_RESOURCE_NAME_PREFIX": "greeter"}, ROOT)
    assert settings.task_role_name("prod") == "greeter-prod-ecs-task-role"  # what `invoke setup` creates
    assert settings.task_role_arn("123456789012", "prod") == INPUTS.task_role_arn


@pytest.mark.parametrize(
    ("exposed", "problem"),
    [
        (None, False),
        ({}, False),
        ({"9000/tcp": {}}, False),
        ({"9000/tcp": {}, "9090/tcp": {}}, False),
        ({"8080/tcp": {}}, True),
        ({"9000/udp": {}}, True),
    ],
)
def test_exposed_ports_are_checked_against_container_port(exposed: Any, problem: bool) -> None:
    found = image.exposed_port_problem(exposed, 9000, "greeter:abc1234")
    assert (found is not None) is problem
    if found:
        assert found.startswith(
            f"image greeter:abc1234 exposes {', '.join(sorted(exposed))}, but container_port"
        )


@pytest.fixture
def service(tmp_path: Path) -> Path:
    """A project whose service listens on 9000 while its Dockerfile exposes 8080."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(f"FROM {stack.LOCAL_BASE_IMAGE}\nEXPOSE 8080\n")
    (tmp_path / "pyproject.toml").write_text('[tool.pipeline]\nservice_dir = "app"\ncontainer_port = 9000\n')
    return tmp_path


def test_dockerize_refuses_an_image_exposing_another_port(
    service: Path, make_context: Callable[..., Any], prefix: str
) -> None:
    ctx = make_context(root=service)
    with pytest.raises(ConfigError) as info:
        verbs.dockerize(ctx, Revision("abcdef1"))
    assert info.value.message == (
        f"image {prefix}:abcdef1 exposes 8080/tcp, but container_port in [tool.pipeline] is 9000; "
        "make the Dockerfile's EXPOSE and container_port agree"
    )
    assert not docker.from_env().images.list(name=prefix)  # nothing left for a push to ship


def test_deploy_checks_ports_and_names_the_values_file_before_any_change(
    tmp_path: Path,
    make_context: Callable[..., Any],
    deploy_target: DeployTarget,
    aws_cli: Callable[..., Any],
) -> None:
    shutil.copytree(ROOT / "hello_world" / "deploy", tmp_path / "app" / "deploy")
    (tmp_path / "pyproject.toml").write_text('[tool.pipeline]\nservice_dir = "app"\ncontainer_port = 9000\n')
    tpl = json.loads((tmp_path / "app/deploy/taskdef.json").read_text())
    tpl["taskRoleArn"] = "${task_role_arn}"
    (tmp_path / "app/deploy/taskdef.json").write_text(json.dumps(tpl))
    ctx = make_context(root=tmp_path)
    options = deploy.DeployOptions("prod", deploy_target.sha, smoke=False)

    change = deploy.check(ctx, options)
    assert change.request is not None
    assert change.request["taskRoleArn"].endswith(f":role/{ctx.settings.prefix}-prod-ecs-task-role")
    assert change.request["containerDefinitions"][0]["portMappings"][0]["containerPort"] == 9000

    sizes = {"cpu": "256", "memory": "512"}
    (tmp_path / "app/deploy/prod.json").write_text(
        json.dumps({"values": sizes, "environment": {"DB_PASSWORD": "hunter2"}})
    )
    with pytest.raises(ConfigError) as info:
        deploy.deploy(ctx, options)
    assert info.value.message.startswith("app/deploy/prod.json: DB_PASSWORD looks like a secret")

    tpl["containerDefinitions"][0]["portMappings"][0]["containerPort"] = 8080
    (tmp_path / "app/deploy/taskdef.json").write_text(json.dumps(tpl))
    (tmp_path / "app/deploy/prod.json").write_text(json.dumps({"values": sizes}))
    with pytest.raises(
        ConfigError, match="app/deploy/taskdef.json: container .* maps port 8080, but container_port"
    ):
        deploy.deploy(ctx, options)
    families = aws_cli("ecs", "list-task-definitions", "--family-prefix", deploy_target.family)
    assert families["taskDefinitionArns"] == [deploy_target.initial]
