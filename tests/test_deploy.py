"""The deploy, smoke, integration and status tasks on the real stack: moto server as
ECS/ECR/ELBv2, the aws CLI as the independent check, a real hello_world container
as what the smoke test talks to."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline import deploy
from pipeline.errors import ConfigError, Unavailable
from pipeline.git import Revision
from tests.conftest import DeployTarget, push_image
from tests.helpers import ROLLOUT_DEADLINE, ROOT


@pytest.mark.heavy
def test_deploy_registers_updates_waits_and_smoke_tests(
    run_task: Callable[..., Any],
    deploy_target: DeployTarget,
    hello_url: str,
    aws_cli: Callable[..., Any],
    environ: dict[str, str],
) -> None:
    proc = run_task("deploy", "--env", "prod", "--sha", deploy_target.sha, "--smoke-url", hello_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for step in ("check deploy", "register task definition", "deploy ", "smoke test"):
        assert f"==> {step}" in proc.stdout and f"<== {step}" in proc.stdout
    assert f"GET {hello_url}: HTTP 200" in proc.stdout

    service = aws_cli(
        "ecs", "describe-services", "--cluster", deploy_target.cluster, "--services", deploy_target.service
    )["services"][0]
    assert service["taskDefinition"].endswith(f"task-definition/{deploy_target.family}:2")
    assert [d["rolloutState"] for d in service["deployments"]] == ["COMPLETED"]
    described = aws_cli(
        "ecs", "describe-task-definition", "--task-definition", service["taskDefinition"], "--include", "TAGS"
    )
    image = described["taskDefinition"]["containerDefinitions"][0]["image"]
    registry = environ["ECR_ENDPOINT"]  # the stack's registry port is configurable
    assert image == f"{registry}/{deploy_target.family.removesuffix('-service')}:{deploy_target.sha}"
    tags = {t["key"]: t["value"] for t in described["tags"]}
    assert tags["pipeline:git-sha"] == deploy_target.sha and "pipeline:verified-at" in tags

    status = run_task("status", "--env", "prod", "--json")
    report = json.loads(status.stdout)
    assert (report["revision"], report["sha"], report["rolloutState"]) == (
        f"{deploy_target.family}:2",
        deploy_target.sha,
        "COMPLETED",
    )
    assert report["images"] == [image] and report["runningCount"] == report["desiredCount"] == 1


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A service repository of its own, with a richer template."""
    shutil.copytree(
        ROOT / "hello_world", tmp_path / "hello_world", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def test_every_field_of_the_template_survives_registration(
    project: Path,
    make_context: Callable[..., Any],
    deploy_target: DeployTarget,
    aws_cli: Callable[..., Any],
    aws: Callable[[str], Any],
) -> None:
    template = json.loads((project / "hello_world/deploy/taskdef.json").read_text())
    template.update(
        {
            "ephemeralStorage": {"sizeInGiB": 30},
            "volumes": [{"name": "scratch"}],
            "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
            "taskRoleArn": "${task_role_arn}",
            "cpu": "512",
            "memory": "1024",
        }
    )
    template["containerDefinitions"][0]["mountPoints"] = [
        {"sourceVolume": "scratch", "containerPath": "/tmp"}
    ]
    (project / "hello_world/deploy/taskdef.json").write_text(json.dumps(template))
    (project / "hello_world/deploy/prod.json").write_text(
        json.dumps(
            {
                "environment": {"GREETING": "hi"},
                "secrets": {"DB_PASSWORD": "arn:aws:ssm:us-east-1:123456789012:parameter/app/prod/db"},
            }
        )
    )
    # ECS resolves the secret when the task starts: it must exist.
    aws("ssm").put_parameter(Name="/app/prod/db", Value="s3cret", Type="SecureString", Overwrite=True)
    ctx = make_context(root=project)
    released = deploy.deploy(
        ctx, deploy.DeployOptions("prod", deploy_target.sha, timeout=ROLLOUT_DEADLINE, smoke=False)
    )

    live = aws_cli(
        "ecs", "describe-task-definition", "--task-definition", released.task_definition, "--include", "TAGS"
    )
    definition = live["taskDefinition"]
    for key in (
        "ephemeralStorage",
        "volumes",
        "runtimePlatform",
        "cpu",
        "memory",
        "networkMode",
        "requiresCompatibilities",
    ):
        assert definition[key] == template[key], key
    assert (
        definition["executionRoleArn"]
        == f"arn:aws:iam::123456789012:role/{ctx.settings.prefix}-prod-ecs-execution-role"
    )
    assert (
        definition["taskRoleArn"]
        == f"arn:aws:iam::123456789012:role/{ctx.settings.prefix}-prod-ecs-task-role"
    )
    (container,) = definition["containerDefinitions"]
    assert container["mountPoints"] == [{"sourceVolume": "scratch", "containerPath": "/tmp"}]
    assert container["secrets"] == [
        {"name": "DB_PASSWORD", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/app/prod/db"}
    ]
    assert {"name": "GREETING", "value": "hi"} in container["environment"]
    assert container["healthCheck"] == {
        **template["containerDefinitions"][0]["healthCheck"],
        "command": container["healthCheck"]["command"],
    }
    assert container["logConfiguration"]["options"]["awslogs-group"] == f"/ecs/{ctx.settings.prefix}"
    assert {"key": "service", "value": deploy_target.service} in live["tags"]


def test_dry_run_prints_the_definition_and_diff_and_changes_nothing(
    run_task: Callable[..., Any],
    deploy_target: DeployTarget,
    aws_cli: Callable[..., Any],
    environ: dict[str, str],
) -> None:
    proc = run_task("deploy", "--env", "prod", "--sha", deploy_target.sha, "--dry-run", "--no-smoke")
    assert proc.returncode == 0, proc.stderr
    assert f'"image": "{environ["ECR_ENDPOINT"]}/' in proc.stdout
    assert f"--- live {deploy_target.family}:1" in proc.stdout and '+  "executionRoleArn"' in proc.stdout
    assert "dry run: nothing was registered or updated" in proc.stdout
    arns = aws_cli("ecs", "list-task-definitions", "--family-prefix", deploy_target.family)[
        "taskDefinitionArns"
    ]
    assert [a.rsplit(":", 1)[1] for a in arns] == ["1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "qa"], "error: --env qa: unknown environment; choose one of: prod, staging"),
        (
            ["--env", "prod", "--sha", "0" * 40],
            "error: no image {prefix}:0000000000000000000000000000000000000000 in ECR; push it first with "
            "`invoke dockerize --sha 0000000000000000000000000000000000000000 && invoke push --sha ",
        ),
        (
            ["--env", "staging"],
            "error: ECS service '{prefix}-staging-service' not found in cluster "
            "'{prefix}-cluster'; create it with `invoke setup`",
        ),
    ],
)
def test_bad_input_stops_before_any_change(
    run_task: Callable[..., Any],
    deploy_target: DeployTarget,
    prefix: str,
    aws_cli: Callable[..., Any],
    args: list[str],
    message: str,
) -> None:
    if "--sha" not in args:
        args = [*args, "--sha", deploy_target.sha]
    proc = run_task("deploy", *args, "--no-smoke")
    assert proc.returncode == 2
    assert proc.stderr.startswith(message.format(prefix=prefix)) and len(proc.stderr.splitlines()) == 1
    arns = aws_cli("ecs", "list-task-definitions", "--family-prefix", deploy_target.family)[
        "taskDefinitionArns"
    ]
    assert len(arns) == 1


def test_a_missing_cluster_says_how_to_create_it(
    run_task: Callable[..., Any], repository: str, prefix: str, aws: Callable[[str], Any]
) -> None:
    from tests.helpers import put_image_record

    put_image_record(aws, repository, "abcdef1")
    proc = run_task("deploy", "--env", "prod", "--sha", "abcdef1", "--no-smoke")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: ECS cluster '{prefix}-cluster' not found; create it with `invoke setup` "
        f"(or `aws ecs create-cluster --cluster-name {prefix}-cluster`)"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            '{"family": "x",\n "containerDefinitions": [}',
            "hello_world/deploy/taskdef.json:2:27: not valid JSON: Expecting value",
        ),
        ('{"family": "${family}"}', "containerDefinitions must list at least one container"),
    ],
)
def test_a_broken_template_is_named(
    project: Path, make_context: Callable[..., Any], deploy_target: DeployTarget, content: str, problem: str
) -> None:
    (project / "hello_world/deploy/taskdef.json").write_text(content)
    with pytest.raises(ConfigError, match=problem):
        deploy.deploy(
            make_context(root=project), deploy.DeployOptions("prod", deploy_target.sha, smoke=False)
        )


def test_access_denied_names_the_action(
    make_context: Callable[..., Any], deploy_target: DeployTarget, aws: Callable[[str], Any]
) -> None:
    class Denied:
        """Stand-in for an IAM policy without ecs:RegisterTaskDefinition (moto does not enforce IAM)."""

        def __init__(self, real: Any) -> None:
            self.real = real

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def register_task_definition(self, **_: Any) -> Any:
            error = {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}
            raise ClientError(error, "RegisterTaskDefinition")

    ctx = make_context(aws_factory=lambda name: Denied(aws(name)) if name == "ecs" else aws(name))
    with pytest.raises(
        Unavailable, match=r"^AccessDenied: this identity may not call ecs:RegisterTaskDefinition"
    ):
        deploy.deploy(ctx, deploy.DeployOptions("prod", deploy_target.sha, smoke=False))


def test_integration_task_runs_the_projects_tests_against_the_url(
    run_task: Callable[..., Any], hello_url: str
) -> None:
    proc = run_task("integration", "--env", "prod", "--url", hello_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
    broken = run_task("integration", "--env", "prod", "--url", hello_url.replace("/hello/", "/other/"))
    assert broken.returncode == 1 and broken.stderr.startswith("error: integration tests failed (exit 1)")


@pytest.mark.heavy
def test_a_revision_built_in_this_process_is_deployed_as_built_whatever_head_is(
    make_context: Callable[..., Any],
    deploy_target: DeployTarget,
    repository: str,
    environ: dict[str, str],
    hello_image: str,
    aws_cli: Callable[..., Any],
) -> None:
    # What the demo built from a work tree with changes: a dirty tag of a sha that is not
    # this checkout's HEAD (a commit made while the demo ran moves HEAD on).
    built = Revision(deploy_target.sha, changes="0123abcd")
    push_image(environ, hello_image, repository, built.tag)
    ctx = make_context()
    assert ctx.revision().sha != built.sha
    deploy.deploy(ctx, deploy.DeployOptions("prod", built=built, timeout=ROLLOUT_DEADLINE, smoke=False))
    service = aws_cli(
        "ecs", "describe-services", "--cluster", deploy_target.cluster, "--services", deploy_target.service
    )["services"][0]
    definition = aws_cli("ecs", "describe-task-definition", "--task-definition", service["taskDefinition"])
    (container,) = definition["taskDefinition"]["containerDefinitions"]
    assert container["image"].endswith(f"/{repository}:{built.tag}")
