"""migrate_command: the setting (for all environments or one), the CI plan's line, and
the deploy's step: a one-off task of the new revision after the checks and before
UpdateService, whose failure leaves the service on its revision. ECS's task answers
are scripted at the seam (tests/tasks_standin.py); the rest is the emulator's API."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from pipeline import config, deploy, migrate, plan
from pipeline.errors import ConfigError, DeployFailed
from tests.conftest import DeployTarget
from tests.helpers import ROOT
from tests.tasks_standin import ScriptedTasks, Step, factory, task


def load(environ: dict[str, str], project: dict[str, Any]) -> config.Settings:
    return config.load(environ, ROOT, {**config.read_project_file(ROOT), **project})


def test_migrate_command_for_all_environments_or_one(environ: dict[str, str]) -> None:
    settings = load(
        environ,
        {"migrate_command": "python manage.py migrate", "environments": {"staging": {"migrate_command": ""}}},
    )
    assert settings.environment("prod").migrate_command == "python manage.py migrate"
    assert settings.environment("staging").migrate_command == ""
    none = load(environ, {})
    assert none.environment("prod").migrate_command == ""


@pytest.mark.parametrize(
    ("project", "problem"),
    [
        (
            {"migrate_command": "sh -c 'unclosed"},
            '[tool.pipeline] migrate_command: "sh -c \'unclosed" does not split',
        ),
        (
            {"environments": {"prod": {"migrate_command": 3}}},
            "environments.prod] migrate_command: must be a command",
        ),
        ({"migrate_comand": "x"}, "did you mean migrate_command?"),
    ],
)
def test_a_bad_migrate_command_is_named(
    environ: dict[str, str], project: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(environ, project)
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_commands_reads_the_raw_project_table_for_the_plan() -> None:
    project = {"migrate_command": "m", "environments": {"qa": {}, "staging": {"migrate_command": " "}}}
    assert migrate.commands(project) == {"prod": "m", "qa": "m"}


def test_the_ci_plan_shows_the_migration_under_the_deploy_step(environ: dict[str, str]) -> None:
    found = plan.make("branch", "main", config.CIPolicy())
    lines = plan.describe(found, "abc1234", migrate_command="python manage.py migrate")
    deploy_at = next(i for i, line in enumerate(lines) if " deploy " in line)
    assert (
        "first runs migrate_command as a one-off task of the new revision before UpdateService"
        in lines[deploy_at + 1]
    )
    assert lines[deploy_at + 1].endswith("python manage.py migrate")
    assert not any("migrate_command" in line for line in plan.describe(found, "abc1234"))


# --- the deploy's step --------------------------------------------------------------------


@pytest.fixture
def migrating(
    aws: Callable[[str], Any], make_context: Callable[..., Any], deploy_target: DeployTarget, prefix: str
) -> Callable[[list[Step]], tuple[Any, ScriptedTasks]]:
    """A context whose prod environment has a migrate_command, and ECS's task answers scripted."""
    aws("logs").create_log_group(logGroupName=f"/ecs/{prefix}")

    def make(steps: list[Step]) -> tuple[Any, ScriptedTasks]:
        standin = ScriptedTasks(
            aws("ecs"), aws("logs"), steps, log_group=f"/ecs/{prefix}", stream_prefix="prod"
        )
        real_run = standin.run_task

        def run_task(**request: Any) -> dict[str, Any]:
            # What the service ran at the moment the migration started.
            service = aws("ecs").describe_services(
                cluster=deploy_target.cluster, services=[deploy_target.service]
            )
            standin.service_at_run = service["services"][0]["taskDefinition"]  # type: ignore[attr-defined]
            return real_run(**request)

        standin.run_task = run_task  # type: ignore[method-assign]
        ctx = make_context(aws_factory=factory(aws, standin))
        envs = dict(ctx.settings.environments)
        envs["prod"] = dataclasses.replace(envs["prod"], migrate_command="sh -c 'echo migrating; exit 3'")
        ctx.settings = dataclasses.replace(ctx.settings, environments=envs)
        return ctx, standin

    return make


def _deploy(ctx: Any, target: DeployTarget) -> Any:
    options = deploy.DeployOptions("prod", target.sha, timeout=30.0, smoke=False, sleep=lambda _s: None)
    return deploy.deploy(ctx, options)


def _running(aws: Callable[[str], Any], target: DeployTarget) -> str:
    found = aws("ecs").describe_services(cluster=target.cluster, services=[target.service])["services"][0]
    return str(found["taskDefinition"]).rsplit("/", 1)[-1]


def test_a_failing_migration_stops_the_deploy_with_the_service_on_its_revision(
    migrating: Callable[..., Any], aws: Callable[[str], Any], deploy_target: DeployTarget
) -> None:
    name = deploy_target.service
    ctx, standin = migrating(
        [
            Step(task("RUNNING", name), ("migrating", "ERROR: relation exists")),
            Step(task("STOPPED", name, 3, "EssentialContainerExited", "Essential container in task exited")),
        ]
    )
    with pytest.raises(DeployFailed) as caught:
        _deploy(ctx, deploy_target)
    message = caught.value.message
    assert message.startswith("migration failed:") and "exit code 3" in message
    assert f"still runs {deploy_target.family}:1" in message
    assert _running(aws, deploy_target) == f"{deploy_target.family}:1"
    [request] = standin.run_requests
    assert request["taskDefinition"].endswith(f"{deploy_target.family}:2")  # the new revision
    assert request["startedBy"] == "ecs-pipeline/migrate"
    assert request["overrides"]["containerOverrides"][0]["command"] == ["sh", "-c", "echo migrating; exit 3"]
    output = ctx.out.stream.getvalue()
    assert "| migrating" in output and "| ERROR: relation exists" in output
    assert "==> deploy " not in output  # UpdateService never ran


def test_a_migration_that_succeeds_runs_before_update_service(
    migrating: Callable[..., Any], aws: Callable[[str], Any], deploy_target: DeployTarget
) -> None:
    name = deploy_target.service
    ctx, standin = migrating(
        [
            Step(
                task("STOPPED", name, 0, "EssentialContainerExited", "Essential container in task exited"),
                ("done",),
            )
        ]
    )
    released = _deploy(ctx, deploy_target)
    assert released.task_definition.endswith(f"{deploy_target.family}:2")
    assert standin.service_at_run.endswith(f"{deploy_target.family}:1")  # type: ignore[attr-defined]
    assert _running(aws, deploy_target) == f"{deploy_target.family}:2"
    output = ctx.out.stream.getvalue()
    assert output.index("==> migrate with") < output.index(f"==> deploy {deploy_target.family}:2")


def test_a_rollback_runs_no_migration(
    migrating: Callable[..., Any], aws: Callable[[str], Any], deploy_target: DeployTarget
) -> None:
    ctx, standin = migrating([Step(task("STOPPED", deploy_target.service, 0))])
    options = deploy.DeployOptions.rollback_to("prod", "1", timeout=30.0, smoke=False, sleep=lambda _s: None)
    deploy.deploy(ctx, options)
    assert standin.run_requests == []


def test_the_dry_run_names_the_migration(migrating: Callable[..., Any], deploy_target: DeployTarget) -> None:
    ctx, standin = migrating([Step(task("STOPPED", deploy_target.service, 0))])
    options = deploy.DeployOptions("prod", deploy_target.sha, smoke=False, dry_run=True)
    deploy.deploy(ctx, options)
    assert "runs migrate_command as a one-off task" in ctx.out.stream.getvalue()
    assert standin.run_requests == []
