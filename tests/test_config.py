"""Settings: defaults from the seed, overrides, and every problem reported at once."""

from __future__ import annotations

import pytest

from pipeline import config
from pipeline.errors import ConfigError
from tests.helpers import ROOT

BASE = {"AWS_RESOURCE_NAME_PREFIX": "shop", "AWS_DEFAULT_REGION": "eu-west-1"}


def load(environ: dict[str, str], project: dict | None = None) -> config.Settings:
    return config.load(environ, ROOT, project if project is not None else {})


def problems(environ: dict[str, str], project: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(environ, project)
    return info.value.problems


def test_names_follow_the_seed() -> None:
    s = load(BASE)
    assert (s.repository, s.execution_role) == ("shop", "")  # "": one per environment, made by setup
    prod, staging = s.environment("prod"), s.environment("staging")
    assert (prod.cluster, prod.service, prod.family, prod.container) == (
        "shop-cluster",
        "shop-service",
        "shop-service",
        "shop-service",
    )
    assert (staging.cluster, staging.service, staging.family) == (
        "shop-cluster",
        "shop-staging-service",
        "shop-staging-service",
    )
    assert s.registry("123456789012") == "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    # Each environment its own roles and secrets: staging's hold none of prod's rights.
    assert (
        s.execution_role_arn("123456789012", "prod")
        == "arn:aws:iam::123456789012:role/shop-prod-ecs-execution-role"
    )
    assert s.execution_role_arn("123456789012", "staging").endswith(":role/shop-staging-ecs-execution-role")
    assert (
        s.task_role_arn("123456789012", "staging")
        == "arn:aws:iam::123456789012:role/shop-staging-ecs-task-role"
    )
    assert (s.secrets_path("prod"), s.secrets_path("staging")) == ("shop/prod", "shop/staging")


def test_seed_variables_override_the_derived_names() -> None:
    s = load(
        {
            **BASE,
            "ECR_REPOSITORY_NAME": "team/shop",
            "ECS_CLUSTER_NAME": "shared",
            "ECS_SERVICE_NAME": "shop-web",
            "ECS_TASK_FAMILY_NAME": "shop-web-task",
            "ECS_CONTAINER_DEFINITION_NAME": "web",
            "EXECUTION_ROLE_ARN": "arn:aws:iam::111111111111:role/custom",
            "ECR_ENDPOINT": "http://127.0.0.1:5000/",
        }
    )
    prod = s.environment("prod")
    assert (s.repository, prod.cluster, prod.service, prod.family, prod.container) == (
        "team/shop",
        "shared",
        "shop-web",
        "shop-web-task",
        "web",
    )
    assert s.environment("staging").cluster == "shared"
    assert s.execution_role_arn("123456789012", "prod") == "arn:aws:iam::111111111111:role/custom"
    assert s.execution_role_arn("123456789012", "staging") == "arn:aws:iam::111111111111:role/custom"
    assert s.registry("123456789012") == "127.0.0.1:5000"


def test_region_falls_back_to_aws_region_then_the_seeds_default() -> None:
    assert load({"AWS_RESOURCE_NAME_PREFIX": "shop", "AWS_REGION": "ap-south-1"}).region == "ap-south-1"
    assert load({"AWS_RESOURCE_NAME_PREFIX": "shop"}).region == "us-east-1"


def test_project_file_sets_what_is_not_secret() -> None:
    s = load(
        BASE,
        {
            "base_path": "/shop/",
            "container_port": 3000,
            "build_command": "make build",
            "environments": {"qa": {"service": "shop-qa"}, "staging": {"cluster": "stage-cluster"}},
            "smoke": {"text": "ok", "status": 204},
        },
    )
    assert (s.base_path, s.container_port, s.build_command) == ("/shop/", 3000, "make build")
    assert s.environment("qa").service == "shop-qa"
    assert s.environment("qa").family == "shop-qa-service"
    assert s.environment("staging").cluster == "stage-cluster"
    assert (s.smoke.text, s.smoke.status) == ("ok", 204)


def test_this_repositorys_project_file_loads() -> None:
    s = config.load(BASE, ROOT)
    assert s.service_dir == ROOT / "hello_world" and s.dockerfile == ROOT / "hello_world" / "Dockerfile"
    assert s.environment("prod").template == ROOT / "hello_world" / "deploy" / "taskdef.json"


def test_missing_prefix_is_named() -> None:
    assert problems({}) == [
        '[tool.pipeline] prefix: not set; add prefix = "orders" (`ecs-pipeline init` writes one) or '
        "export AWS_RESOURCE_NAME_PREFIX=orders; it names the ECR repository and ECS resources"
    ]


def test_the_prefix_setting_names_resources_and_the_variable_overrides_it() -> None:
    s = load({}, {"prefix": "ledger"})
    assert (s.prefix, s.repository, s.environment("prod").service) == ("ledger", "ledger", "ledger-service")
    assert load({"AWS_RESOURCE_NAME_PREFIX": "ledger-pr-7"}, {"prefix": "ledger"}).prefix == "ledger-pr-7"
    (problem,) = problems({}, {"prefix": "Ledger Service"})
    assert problem.startswith("[tool.pipeline] prefix: 'Ledger Service' is not a valid name")


def test_tasks_that_touch_no_aws_load_without_a_prefix() -> None:
    s = config.load({}, ROOT, {"test_command": "python -m pytest"}, need_prefix=False)
    assert (s.prefix, s.test_command) == ("", "python -m pytest")
    with pytest.raises(ConfigError, match=r"base_path"):  # everything else is still checked
        config.load({}, ROOT, {"base_path": "x"}, need_prefix=False)


@pytest.mark.parametrize("prefix", ["Shop", "shop service", "-shop", "shop--", "a", "shop/web"])
def test_invalid_prefix_is_named(prefix: str) -> None:
    (problem,) = problems({"AWS_RESOURCE_NAME_PREFIX": prefix})
    assert problem.startswith(f"AWS_RESOURCE_NAME_PREFIX: {prefix!r} is not a valid name")


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {"AWS_DEFAULT_REGION": "mars", "AWS_ACCOUNT_ID": "12", "ECR_ENDPOINT": "not a host"},
        {
            "base_path": "hello",
            "container_port": 70000,
            "test_command": " ",
            "colour": "blue",
            "environments": {"Prod": {}},
            "ci": {"branch_steps": ["test", "lint"]},
        },
    )
    names = [p.split(":")[0] for p in found]
    assert names == [
        "[tool.pipeline] colour",
        "[tool.pipeline] prefix",
        "AWS_DEFAULT_REGION",
        "AWS_ACCOUNT_ID",
        "ECR_ENDPOINT",
        "[tool.pipeline] base_path",
        "[tool.pipeline] container_port",
        "[tool.pipeline] test_command",
        "[tool.pipeline.environments] 'Prod'",
        "[tool.pipeline.ci] branch_steps",
    ]


def test_unknown_environment_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"--env qa: unknown environment; choose one of: prod, staging"):
        load(BASE).environment("qa")


@pytest.mark.parametrize(
    ("project", "message"),
    [
        (
            {"container_prot": 9000},
            "[tool.pipeline] container_prot: unknown setting; did you mean container_port?",
        ),
        ({"smoke": {"txt": "hi"}}, "[tool.pipeline.smoke] txt: unknown setting; did you mean text?"),
        (
            {"environments": {"qa": {"clster": "c"}}},
            "[tool.pipeline.environments.qa] clster: unknown setting; did you mean cluster?",
        ),
        ({"zzz": 1}, "[tool.pipeline] zzz: unknown setting; known: "),
    ],
)
def test_an_unknown_setting_suggests_the_nearest_known_one(project: dict, message: str) -> None:
    assert any(p.startswith(message) for p in problems(BASE, project)), problems(BASE, project)


def test_the_execution_role_arn_names_the_regions_partition() -> None:
    china = load({**BASE, "AWS_DEFAULT_REGION": "cn-north-1"})
    assert (
        china.execution_role_arn("123456789012", "prod")
        == "arn:aws-cn:iam::123456789012:role/shop-prod-ecs-execution-role"
    )
    gov = load({**BASE, "AWS_DEFAULT_REGION": "us-gov-west-1"})
    assert gov.execution_role_arn("123456789012", "prod").startswith("arn:aws-us-gov:iam::")
