"""pipeline/taskdef.py: rendering the task definition, checking it against the ECS API model, the diff (pure)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline import taskdef
from pipeline.errors import ConfigError
from tests.helpers import ROOT, health_check_url

INPUTS = taskdef.RenderInputs(
    family="shop-service",
    container="shop-service",
    image="1.dkr.ecr.us-east-1.amazonaws.com/shop:abc1234",
    sha="abc1234",
    environment="prod",
    region="us-east-1",
    account_id="123456789012",
    prefix="shop",
    cluster="shop-cluster",
    service="shop-service",
    execution_role_arn="arn:aws:iam::123456789012:role/shop-ecs-execution-role",
    log_group="/ecs/shop",
    port=8080,
    base_path="/shop/",
    created_at=datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC),
    build_url="https://circleci.com/gh/acme/shop/42",
)
MINIMAL = {"containerDefinitions": [{"name": "${container}", "image": "${image}"}]}


def render(template: dict[str, Any], values: taskdef.EnvironmentValues | None = None) -> dict[str, Any]:
    return taskdef.render(template, values or taskdef.EnvironmentValues(), INPUTS, "taskdef.json")


def test_hello_worlds_template_renders_to_a_valid_fargate_request() -> None:
    template = taskdef.load_template(ROOT / "hello_world/deploy/taskdef.json")
    values = taskdef.load_values(ROOT / "hello_world/deploy/prod.json")
    request = render(template, values)
    taskdef.validate_request(request, "taskdef.json")
    (container,) = request["containerDefinitions"]
    assert (request["cpu"], request["memory"], request["networkMode"]) == ("256", "512", "awsvpc")
    assert request["executionRoleArn"] == INPUTS.execution_role_arn
    assert container["image"] == INPUTS.image
    assert container["portMappings"][0]["containerPort"] == 8080  # a number, as the API wants
    assert container["environment"] == [
        {"name": "BASE_PATH", "value": "/shop/"},
        {"name": "DEPLOY_ENV", "value": "prod"},
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "PORT", "value": "8080"},
        {"name": "REVISION", "value": INPUTS.sha},  # ${sha}: answers name the revision that served them
    ]
    assert health_check_url(container["healthCheck"]["command"]) == "http://127.0.0.1:8080/shop/health"
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/ecs/shop"
    assert request["tags"] == [
        {"key": "pipeline:ci-build-url", "value": "https://circleci.com/gh/acme/shop/42"},
        {"key": "pipeline:created-at", "value": "2026-05-06T07:08:09+00:00"},
        {"key": "pipeline:git-sha", "value": "abc1234"},
        {"key": "service", "value": "shop-service"},
    ]


def test_staging_renders_its_own_values() -> None:
    template = taskdef.load_template(ROOT / "hello_world/deploy/taskdef.json")
    values = taskdef.load_values(ROOT / "hello_world/deploy/staging.json")
    env = render(template, values)["containerDefinitions"][0]["environment"]
    assert {"name": "DEPLOY_ENV", "value": "staging"} in env


def test_fields_the_user_writes_pass_through_untouched() -> None:
    template = {
        **MINIMAL,
        "ephemeralStorage": {"sizeInGiB": 40},
        "volumes": [{"name": "scratch", "host": {}}],
        "pidMode": "task",
        "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
    }
    request = render(template)
    for key in ("ephemeralStorage", "volumes", "pidMode", "runtimePlatform"):
        assert request[key] == template[key]


def test_secrets_become_value_from_references() -> None:
    values = taskdef.EnvironmentValues(
        secrets={
            "DB_PASSWORD": "arn:aws:secretsmanager:us-east-1:123456789012:secret:shop/db-AbCdEf",
            "API_TOKEN": "arn:aws:ssm:${region}:${account_id}:parameter/shop/prod/api-token",
            "OTHER": "/shop/prod/other",
        }
    )
    container = render(MINIMAL, values)["containerDefinitions"][0]
    assert container["secrets"] == [
        {
            "name": "API_TOKEN",
            "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/shop/prod/api-token",
        },
        {
            "name": "DB_PASSWORD",
            "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:shop/db-AbCdEf",
        },
        {"name": "OTHER", "valueFrom": "/shop/prod/other"},
    ]
    assert "environment" not in container


def test_a_whole_value_placeholder_of_a_number_renders_as_a_string_in_environment_and_secrets() -> None:
    # "${n}" alone keeps its value's type elsewhere (ports stay numbers); ECS wants strings here.
    values = taskdef.EnvironmentValues(
        values={"n": 5}, environment={"WORKERS": "${n}"}, secrets={"KEY": "${n}"}
    )
    container = render(MINIMAL, values)["containerDefinitions"][0]
    assert (container["environment"], container["secrets"]) == (
        [{"name": "WORKERS", "value": "5"}],
        [{"name": "KEY", "valueFrom": "5"}],
    )


def test_values_read_back_from_the_api_are_dropped() -> None:
    live = {**MINIMAL, "revision": 7, "status": "ACTIVE", "taskDefinitionArn": "arn:x", "registeredAt": "t"}
    assert set(render(live)) == {"containerDefinitions", "family", "tags"}


@pytest.mark.parametrize(
    ("template", "values", "problem"),
    [
        (
            {"containerDefinitions": []},
            None,
            "taskdef.json: containerDefinitions must list at least one container",
        ),
        (
            {"containerDefinitions": [{"name": "${container}"}]},
            None,
            "taskdef.json: containerDefinitions[0] needs a name and an image",
        ),
        (
            {"containerDefinitions": [{"name": "web", "image": "${image}"}]},
            None,
            "taskdef.json: no container named 'shop-service'",
        ),
        ({**MINIMAL, "cpu": "${cpus}"}, None, "taskdef.json: unknown placeholder ${cpus}; known: "),
        (
            MINIMAL,
            taskdef.EnvironmentValues(secrets={"KEY": "s3cr3t value"}),
            "taskdef.json: secret KEY: its value is not a Secrets Manager/SSM ARN or an SSM parameter name",
        ),
        (
            MINIMAL,
            taskdef.EnvironmentValues(secrets={"KEY": "arn:aws:s3:::bucket/key"}),
            "taskdef.json: secret KEY: its value is not",
        ),
        (
            MINIMAL,
            taskdef.EnvironmentValues(secrets={"DB\nPASSWORD": "/app/prod/db"}),
            "taskdef.json: secret name 'DB\\nPASSWORD' is not a valid environment variable name",
        ),
        (
            MINIMAL,
            taskdef.EnvironmentValues(environment={"STRIPE_API_KEY": "sk_live_x"}),
            "taskdef.json: STRIPE_API_KEY looks like a secret but is a plain environment value",
        ),
    ],
)
def test_bad_templates_and_values_are_named(template: dict[str, Any], values: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        render(template, values)
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems
    for secret in values.secrets.values() if values else ():
        assert secret not in info.value.message  # the key is named, the value never echoed


@pytest.mark.parametrize(
    "name",
    [
        "DB_PASS",
        "SECRET_KEY",
        "DJANGO_SECRET_KEY",
        "GITHUB_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "GOOGLE_CREDENTIALS",
    ],
)
def test_plain_variables_named_like_credentials_are_refused(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        render(MINIMAL, taskdef.EnvironmentValues(environment={name: "Tr0ub4dor&3"}))
    assert info.value.problems == [
        f"taskdef.json: {name} looks like a secret but is a plain environment value; "
        'move it to "secrets" as an SSM parameter or Secrets Manager reference'
    ]
    assert "Tr0ub4dor" not in info.value.message


@pytest.mark.parametrize(
    "value",
    [
        "postgres://app:Tr0ub4dor&3@db.internal:5432/app",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE",
        "AKIAIOSFODNN7EXAMPLE",
    ],
)
def test_plain_values_that_carry_a_credential_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE looks like a secret") as info:
        render(MINIMAL, taskdef.EnvironmentValues(environment={"DATABASE": value}))
    assert value not in info.value.message


@pytest.mark.parametrize("name", ["PASSWORD_FILE", "TOKEN_URL", "AUTH_MODE", "PWD", "LOG_LEVEL"])
def test_ordinary_names_pass(name: str) -> None:
    render(MINIMAL, taskdef.EnvironmentValues(environment={name: "x", "DATABASE_URL": "postgres://db/app"}))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"family": "other-family"},
            "taskdef.json: family is 'other-family', not the checked 'shop-service'",
        ),
        (
            {"executionRoleArn": "arn:aws:iam::999999999999:role/admin"},
            "taskdef.json: executionRoleArn is 'arn:aws:iam::999999999999:role/admin', not the checked",
        ),
        (
            {"containerDefinitions": [{"name": "${container}", "image": "docker.io/attacker/evil:latest"}]},
            "taskdef.json: container shop-service runs 'docker.io/attacker/evil:latest', not the checked image",
        ),
    ],
)
def test_a_template_cannot_register_another_identity_than_the_checked_one(
    change: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        render({**MINIMAL, **change})
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_a_values_file_that_sets_the_identity_is_refused_with_its_path_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "prod.json"
    attack = {
        "image": "docker.io/attacker/evil:latest",
        "family": "x",
        "execution_role_arn": "arn:aws:iam::999999999999:role/admin",
        "cpu": "256",
    }
    path.write_text(json.dumps({"values": attack}))
    with pytest.raises(ConfigError) as info:
        taskdef.load_values(path)
    assert info.value.problems == [
        f"{path}: values.{key}: set by the pipeline (the settings and the checked sha), never by a values file; remove it"
        for key in ("execution_role_arn", "family", "image")
    ]


def test_every_built_in_placeholder_is_reserved() -> None:
    assert set(INPUTS.placeholders()) | {"task_role_arn"} == taskdef.BUILT_IN


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"values": {"cpu": "\xff\xfe"}}', "not UTF-8 (byte 20)"),
        (b'{"values": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "nested deeper than 32 levels"),
        (b'{"values": {"x": "' + b"[" * 100 + b'"}}', None),  # brackets inside a string are text
    ],
)
def test_unreadable_values_files_are_bad_input(tmp_path: Path, content: bytes, problem: str | None) -> None:
    path = tmp_path / "prod.json"
    path.write_bytes(content)
    if problem is None:
        assert taskdef.load_values(path).values == {"x": "[" * 100}
        return
    with pytest.raises(ConfigError, match=re.escape(f"environment values {path}: {problem}")):
        taskdef.load_values(path)


def test_the_api_model_catches_misspelt_or_mistyped_fields() -> None:
    request = render({**MINIMAL, "memroy": "512", "cpu": 256})
    with pytest.raises(ConfigError) as info:
        taskdef.validate_request(request, "taskdef.json")
    text = " ".join(info.value.problems)
    assert 'Unknown parameter in input: "memroy"' in text and "Invalid type for parameter cpu" in text


def test_invalid_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "taskdef.json"
    path.write_text('{\n  "family": "x",\n  "cpu": 256,,\n}')
    with pytest.raises(ConfigError, match=rf"task definition template {path}:3:14: not valid JSON"):
        taskdef.load_template(path)


def test_values_file_with_unknown_keys_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "prod.json"
    path.write_text(json.dumps({"env": {"A": "1"}}))
    with pytest.raises(ConfigError, match="unknown key 'env'; use values, environment, secrets"):
        taskdef.load_values(path)


def test_diff_shows_only_meaningful_changes() -> None:
    live = {**MINIMAL, "volumes": [], "tags": [{"key": "pipeline:created-at", "value": "yesterday"}]}
    rendered = {**MINIMAL, "cpu": "512", "tags": [{"key": "pipeline:created-at", "value": "today"}]}
    text = taskdef.diff(live, rendered, "fam:3")
    assert '+  "cpu": "512"' in text
    assert "volumes" not in text and "created-at" not in text


def test_a_value_no_placeholder_can_name_is_refused_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "prod.json"
    path.write_text(json.dumps({"values": {"cpu": "256", "\n": None, "memory-mb": "512"}}))
    with pytest.raises(ConfigError) as info:
        taskdef.load_values(path)
    assert info.value.problems == [
        f"{path}: values: {key!r} is not a placeholder name; use letters, digits and _"
        for key in ("\n", "memory-mb")
    ]
    assert all("\n" not in problem for problem in info.value.problems)
