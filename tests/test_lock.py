"""The deploy lock (pipeline/lock.py) on the emulator's real SSM: one holder per environment's
service, a second refused naming the holder or waiting, stale locks taken over, the by-hand
tasks; and two real deploy processes with slow migrations that never overlap."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import lock
from pipeline.errors import DeployLocked
from tests.helpers import said, wait_until
from tests.processes import Service, deploy, project_with, service

__all__ = ["service"]  # the fixture


@pytest.fixture
def ctx(make_context: Callable[..., Any]) -> Any:
    return make_context()


def parameter(aws: Callable[[str], Any], name: str) -> dict[str, Any] | None:
    try:
        return json.loads(aws("ssm").get_parameter(Name=name)["Parameter"]["Value"])
    except aws("ssm").exceptions.ParameterNotFound:
        return None


def test_the_lock_is_one_ssm_parameter_per_environments_service_holding_who_and_until_when(
    ctx: Any, aws: Callable[[str], Any]
) -> None:
    env = ctx.settings.environment("prod")
    name = lock.name(env)
    assert name == f"/ecs-pipeline/deploy-lock/{env.cluster}/{env.service}"
    with lock.held(ctx, [name], "deploy", "a" * 40) as holder:
        record = parameter(aws, name)
        assert record is not None
        assert {record["action"], record["sha"], record["pid"], record["token"]} == {
            "deploy",
            "a" * 40,
            holder.pid,
            holder.token,
        }
        assert datetime.fromisoformat(record["expires"]) - datetime.fromisoformat(
            record["started"]
        ) == timedelta(seconds=lock.TTL)
    assert parameter(aws, name) is None  # released on the way out


def test_a_second_holder_is_refused_naming_the_first(ctx: Any, make_context: Callable[..., Any]) -> None:
    name = lock.name(ctx.settings.environment("prod"))
    other = make_context(env={**ctx.environ, "CIRCLE_BUILD_URL": "https://circleci.example/b/7"})
    with lock.held(other, [name], "deploy", "b" * 40), pytest.raises(DeployLocked) as refused:
        lock.acquire(ctx, [name], lock.me(ctx, "rollback", ""))
    assert refused.value.exit_code == 5
    assert refused.value.message.startswith(
        f"the deploy lock {name} is held by https://circleci.example/b/7 (deploy of sha bbbbbbbbbbbb, pid "
    )
    assert "nothing was changed" in refused.value.message


def test_wait_takes_the_lock_once_its_holder_gives_it_back(
    ctx: Any, make_context: Callable[..., Any]
) -> None:
    name = lock.name(ctx.settings.environment("prod"))
    first = make_context()
    holder = lock.me(first, "deploy", "")
    lock.acquire(first, [name], holder)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the holder finishes while the second one waits
        sleeps.append(seconds)
        lock.release(first, [name], holder)

    second = lock.me(ctx, "deploy", "")
    lock.acquire(ctx, [name], second, wait=True, timeout=30, sleep=sleep)
    assert lock.read(ctx, name) == second
    assert len(sleeps) == 1
    assert f"waiting for the deploy lock {name}, held by " in said(ctx)


def test_an_expired_lock_is_taken_over_and_a_dead_local_process_lock_at_once(
    ctx: Any, aws: Callable[[str], Any], capsys: pytest.CaptureFixture[str]
) -> None:
    name = lock.name(ctx.settings.environment("prod"))
    expired = lock.me(ctx, "deploy", "c" * 40, ttl=-1)
    aws("ssm").put_parameter(Name=name, Value=expired.to_json(), Type="String")
    mine = lock.me(ctx, "deploy", "")
    lock.acquire(ctx, [name], mine)
    assert lock.read(ctx, name) == mine
    assert f"taking over the stale deploy lock {name} of " in capsys.readouterr().err

    # A holder on this host whose process is gone (killed) is stale before it expires.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = lock.me(ctx, "deploy", "")
    dead = lock.Holder(**{**dead.__dict__, "pid": int(gone.stdout)})
    aws("ssm").put_parameter(Name=name, Value=dead.to_json(), Type="String", Overwrite=True)
    again = lock.me(ctx, "deploy", "")
    lock.acquire(ctx, [name], again)
    assert lock.read(ctx, name) == again


def test_a_release_takes_all_its_locks_or_none(ctx: Any, aws: Callable[[str], Any]) -> None:
    names = [f"/ecs-pipeline/deploy-lock/{ctx.settings.prefix}-c/s{i}" for i in range(3)]
    other = lock.me(ctx, "deploy", "")
    lock.acquire(ctx, [names[2]], other)
    with pytest.raises(DeployLocked):
        lock.acquire(ctx, names, lock.me(ctx, "release", ""))
    # The two it had taken before the third refused it are given back.
    assert [parameter(aws, n) is None for n in names] == [True, True, False]


def test_the_holder_renews_its_lock_while_it_works(ctx: Any, aws: Callable[[str], Any]) -> None:
    name = lock.name(ctx.settings.environment("prod"))
    with lock.held(ctx, [name], "deploy", "", ttl=2.0) as holder:
        # Renewed every ttl/5: the expiry moves past the first one while the holder works.
        wait_until(lambda: datetime.fromisoformat(parameter(aws, name)["expires"]) > holder.expires, 10)  # type: ignore[index]


def test_lock_tasks_acquire_show_refuse_and_release_by_hand(
    run_task: Callable[..., subprocess.CompletedProcess[str]], environ: dict[str, str], service: Service
) -> None:
    took = run_task("lock.acquire", "--env", "prod", "--message", "database maintenance")
    assert took.returncode == 0, took.stderr
    shown = run_task("lock.status", "--env", "prod", "--json")
    record = json.loads(shown.stdout)
    assert record["held"] and record["action"] == "held by hand: database maintenance" and record["pid"] == 0

    refused = deploy(service, service.shas[0])
    assert refused.finish() == 5, refused.text()
    assert "(held by hand: database maintenance, by hand on " in refused.text()
    assert "nothing was changed" in refused.text()
    assert service.revisions() == [f"{service.service}:1"]  # not even registered

    released = run_task("lock.release", "--env", "prod")
    assert released.returncode == 0, released.stderr
    assert json.loads(run_task("lock.status", "--env", "prod", "--json").stdout) == {
        "lock": record["lock"],
        "held": False,
    }


def test_lock_release_refuses_a_pipelines_lock_without_force(
    run_task: Callable[..., subprocess.CompletedProcess[str]], make_context: Callable[..., Any]
) -> None:
    ctx = make_context()
    name = lock.name(ctx.settings.environment("prod"))
    lock.acquire(ctx, [name], lock.me(ctx, "deploy", "d" * 40))
    refused = run_task("lock.release", "--env", "prod")
    assert refused.returncode == 5
    assert "pass --force to break it" in refused.stderr
    forced = run_task("lock.release", "--env", "prod", "--force")
    assert forced.returncode == 0, forced.stderr
    assert lock.read(ctx, name) is None


MIGRATION = "sh -c 'echo migration begins; sleep 20; echo migration ends'"


@pytest.mark.heavy
def test_two_deploys_two_seconds_apart_never_run_their_20s_migrations_at_once(
    service: Service, tmp_path: Path
) -> None:
    project = project_with(tmp_path, f'migrate_command = "{MIGRATION}"')
    first = deploy(service, service.shas[0], cwd=project)
    # The first holds the lock once its check begins; the second starts then, seconds before
    # the first's migration, and both would pass the ECS-deployments guard.
    wait_until(lambda: any(line.startswith("==> check deploy") for line in first.lines), 60)
    second = deploy(service, service.shas[1], "--wait", cwd=project)
    assert first.finish(timeout=300) == 0, first.text()
    assert second.finish(timeout=300) == 0, second.text()
    family = service.service
    # The second waited for the first's lock, naming it, and its migration began only after
    # the first's had ended (the moments each process printed its step's start and end).
    assert "waiting for the deploy lock " in second.text()
    assert f"(deploy of sha {service.shas[0][:12]}, pid {first.proc.pid} on " in second.text()
    first_ended = first.when(f"<== migrate with {family}:2: ok")
    second_began = second.when(f"==> migrate with {family}:3")
    assert second_began > first_ended
    assert "| migration ends" in first.text() and "| migration ends" in second.text()
    assert service.running() == f"{family}:3"


@pytest.mark.heavy
def test_a_deploy_that_finds_the_lock_held_during_a_migration_is_refused_with_exit_5(
    service: Service, tmp_path: Path
) -> None:
    project = project_with(tmp_path, f'migrate_command = "{MIGRATION}"')
    first = deploy(service, service.shas[0], cwd=project)
    wait_until(lambda: any(line.startswith("==> migrate with") for line in first.lines), 60)
    second = deploy(service, service.shas[1], cwd=project)
    assert second.finish() == 5, second.text()
    assert "is held by " in second.text() and f"(deploy of sha {service.shas[0][:12]}, pid " in second.text()
    assert "==> migrate" not in second.text()
    assert first.finish(timeout=300) == 0, first.text()
    assert service.running() == f"{service.service}:2"
