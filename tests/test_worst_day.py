"""Real `invoke deploy` processes on a real (local) ECS: two pipelines at once (the deploy
lock), a deploy by another tool (the ECS-deployments guard, the second line of defence),
SIGINT/SIGTERM during the wait, and a second signal while the first one's report hangs on
an AWS endpoint that stopped answering (tests/aws_faults.py). tests/processes.py holds the
service and the processes."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import pytest

from tests.aws_faults import FaultProxy
from tests.conftest import hello_task_definition
from tests.helpers import wait_until
from tests.processes import WAITING, Service, deploy, service

__all__ = ["service"]  # the fixture


def lock_holder(aws_cli: Callable[..., Any], svc: Service) -> dict[str, Any] | None:
    """The deploy lock's record as the aws CLI reads it; None when nobody holds it."""
    name = f"/ecs-pipeline/deploy-lock/{svc.cluster}/{svc.service}"
    found = aws_cli("ssm", "get-parameters", "--names", name)["Parameters"]
    return json.loads(found[0]["Value"]) if found else None


def another_tools_rollout(svc: Service, aws_cli: Callable[..., Any], revision: str | None = None) -> str:
    """What a deploy tool that takes no lock does (here the aws CLI, as a person in a shell):
    UpdateService to `revision`, by default a new revision of the running image whose tasks
    never pass their health check (failures count only after a 300-s start period): a
    rollout that stays in progress while the test deploys. The deployment id."""
    if revision is None:
        running = svc.client("ecs").describe_task_definition(taskDefinition=svc.running())["taskDefinition"]
        image = running["containerDefinitions"][0]["image"]
        definition = hello_task_definition(svc.service, image)
        definition["containerDefinitions"][0]["healthCheck"] = {
            "command": ["CMD-SHELL", "exit 1"],
            "interval": 30,
            "timeout": 5,
            "retries": 10,
            "startPeriod": 300,
        }
        revision = svc.client("ecs").register_task_definition(**definition)["taskDefinition"][
            "taskDefinitionArn"
        ]
    updated = aws_cli(
        "ecs",
        "update-service",
        "--cluster",
        svc.cluster,
        "--service",
        svc.service,
        "--task-definition",
        revision,
    )["service"]
    return str(next(d["id"] for d in updated["deployments"] if d["status"] == "PRIMARY"))


@pytest.mark.heavy
def test_two_deploys_at_once_one_wins_and_the_lock_refuses_the_other_naming_the_winner(
    service: Service, aws_cli: Callable[..., Any]
) -> None:
    family = service.service
    runs = [deploy(service, service.shas[0]), deploy(service, service.shas[1])]
    codes = [r.finish() for r in runs]
    # Each takes the lock before its check, and a rollout outlasts the other's start-up by
    # seconds: whichever asked first wins, the other is refused before it registers anything.
    assert sorted(codes) == [0, 5], [r.text() for r in runs]
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert f"deploy of {family}:2 to prod succeeded" in runs[winner].text()
    lock = f"/ecs-pipeline/deploy-lock/{service.cluster}/{family}"
    assert f"the deploy lock {lock} is held by " in runs[loser].text()
    assert (
        f"(deploy of sha {service.shas[winner][:12]}, pid {runs[winner].proc.pid} on " in runs[loser].text()
    )
    assert "==> register" not in runs[loser].text()
    assert service.running() == f"{family}:2" and service.revisions() == [f"{family}:1", f"{family}:2"]
    assert lock_holder(aws_cli, service) is None  # the winner gave it back


@pytest.mark.heavy
def test_force_does_not_break_a_live_lock(service: Service) -> None:
    first = deploy(service, service.shas[0])
    wait_until(lambda: WAITING in first.text() or first.proc.poll() is not None, 60)
    forced = deploy(service, service.shas[1], "--force")
    assert forced.finish() == 5, forced.text()
    assert f"(deploy of sha {service.shas[0][:12]}, pid {first.proc.pid} on " in forced.text()
    assert "`invoke lock.release --env ENV --force` breaks it" in forced.text()
    assert first.finish() == 0, first.text()
    assert service.running() == f"{service.service}:2"


@pytest.mark.heavy
def test_a_rollout_by_another_tool_is_refused_then_forced(
    service: Service, aws_cli: Callable[..., Any]
) -> None:
    family = service.service
    theirs = another_tools_rollout(service, aws_cli)  # :2, rolling out

    refused = deploy(service, service.shas[0])
    assert refused.finish() == 5, refused.text()
    assert (
        f"has a rollout in progress: deployment {theirs} of {family}:2 (sha unknown, started "
        in refused.text()
    )
    assert "nothing was changed" in refused.text()

    forced = deploy(service, service.shas[0], "--force")
    assert forced.finish() == 0, forced.text()
    assert f"--force: replacing the rollout in progress: deployment {theirs} of {family}:2" in forced.text()
    assert f"deploy of {family}:3 to prod succeeded" in forced.text()
    assert service.running() == f"{family}:3"


@pytest.mark.heavy
def test_a_deploy_replaced_by_another_tool_names_it_and_does_not_roll_back_over_it(
    service: Service, aws_cli: Callable[..., Any]
) -> None:
    family = service.service
    first = deploy(service, service.shas[0])
    wait_until(lambda: WAITING in first.text() or first.proc.poll() is not None, 60)
    theirs = another_tools_rollout(service, aws_cli, f"{family}:1")  # a person's console rollback
    assert first.finish() == 6, first.text()
    text = first.text()
    assert (
        f"deploy of {family}:2 to prod did not finish: it was replaced by deployment {theirs} of {family}:1"
        in text
    )
    assert "not rolled back over that deploy" in text and "roll back to" not in text
    wait_until(lambda: service.describe()["deployments"][0].get("rolloutState") == "COMPLETED", 120)
    assert service.running() == f"{family}:1"


def test_wait_goes_after_the_deploy_holding_the_lock(service: Service) -> None:
    family = service.service
    first = deploy(service, service.shas[0])
    wait_until(lambda: WAITING in first.text() or first.proc.poll() is not None, 60)
    second = deploy(service, service.shas[1], "--wait")
    assert first.finish() == 0, first.text()
    assert second.finish() == 0, second.text()
    assert f"waiting for the deploy lock /ecs-pipeline/deploy-lock/{service.cluster}/{family}, held by " in (
        second.text()
    )
    assert second.when("==> check deploy") > first.when(f"deploy of {family}:2 to prod succeeded")
    assert service.running() == f"{family}:3"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_the_wait_stops_waiting_changes_nothing_and_gives_the_lock_back(
    service: Service, aws_cli: Callable[..., Any], signum: int, code: int
) -> None:
    from tests.standins import honeycomb_markers

    family = service.service
    with honeycomb_markers(None, None).running() as api:
        env = {**service.environ, "HONEYCOMB_API_KEY": "k", "HONEYCOMB_API_HOST": api.url}
        run = deploy(service, service.shas[0], env=env)
        wait_until(lambda: WAITING in run.text() or run.proc.poll() is not None, 30)
        run.proc.send_signal(signum)
        assert run.finish(timeout=15) == code, run.text()
    text = run.text()
    name = signal.Signals(signum).name
    assert (
        f"deploy of {family}:2 to prod interrupted by {name}: stopped waiting and changed nothing more"
        in text
    )
    assert f"the service runs {family}:2; still rolling out: deployment " in text
    assert "roll back to" not in text and "succeeded" not in text
    assert api.requests == []  # no marker claims a deploy that was not verified
    # The rollout goes on without us; nothing rolled it back.
    deployments = service.describe()["deployments"]
    assert deployments[0]["taskDefinition"].endswith(f"{family}:2")
    tags = service.client("ecs").describe_task_definition(taskDefinition=f"{family}:2", include=["TAGS"])[
        "tags"
    ]
    assert "pipeline:verified-at" not in {t["key"] for t in tags}
    assert lock_holder(aws_cli, service) is None


def test_a_second_ctrl_c_exits_at_once_while_the_first_ones_report_hangs_on_aws(service: Service) -> None:
    """The first interrupt's report asks AWS what runs; with the endpoint black-holing every
    request, that report hangs, and the second Ctrl-C must end the deploy at once."""
    with FaultProxy(service.environ["AWS_ENDPOINT_URL"]) as proxy:
        run = deploy(service, service.shas[0], env={**service.environ, "AWS_ENDPOINT_URL": proxy.url})
        wait_until(lambda: WAITING in run.text() or run.proc.poll() is not None, 60)
        proxy.fail("hang", seconds=120)
        run.proc.send_signal(signal.SIGINT)
        wait_until(lambda: proxy.refused >= 1, 30)  # the report's DescribeServices is stuck
        assert run.proc.poll() is None
        run.proc.send_signal(signal.SIGINT)
        assert run.finish(timeout=5) == 130, run.text()
    assert "succeeded" not in run.text() and "roll back to" not in run.text()
