"""What a deploy does as ECS reports its rollout: success only when OUR deployment
COMPLETED; FAILED, circuit-breaker rollbacks and timeouts roll back to the last known
good revision. ECS's rollout progress comes from the stand-in (tests/ecs_standin.py);
everything else (registering, updating, tagging, ECR) is the emulator's real API.
A circuit-breaker rollback, the reasons tasks stopped, a rollout that never ends (our
time-out rolls it back), --no-rollback and a failed smoke test run on real containers in
tests/test_failures.py; these are the states real containers cannot produce on demand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipeline import deploy
from pipeline.errors import DeployFailed, RollbackFailed, RolloutInProgress
from tests import ecs_standin as standin
from tests.conftest import DeployTarget

NO_SLEEP: Callable[[float], None] = lambda _s: None  # noqa: E731


@pytest.fixture
def scripted(aws: Callable[[str], Any], make_context: Callable[..., Any]) -> Callable[..., Any]:
    """(context, stand-in) for a list of scripts: one per UpdateService call."""

    def make(*scripts: list[standin.State], stopped: list[dict[str, Any]] | None = None) -> tuple[Any, Any]:
        fake = standin.ScriptedECS(aws("ecs"), list(scripts), stopped_tasks=stopped or [])
        ctx = make_context(aws_factory=lambda name: fake if name == "ecs" else aws(name))
        return ctx, fake

    return make


def run(ctx: Any, target: DeployTarget, **kwargs: Any) -> Any:
    options = {"timeout": 5.0, "smoke": False, "sleep": NO_SLEEP, **kwargs}
    return deploy.deploy(ctx, deploy.DeployOptions("prod", target.sha, **options))


def running(aws: Callable[[str], Any], target: DeployTarget) -> str:
    """What the emulator says the service runs (family:revision)."""
    found = aws("ecs").describe_services(cluster=target.cluster, services=[target.service])["services"][0]
    return found["taskDefinition"].rsplit("/", 1)[-1]


def test_success_waits_for_the_stale_deployment_to_drain(
    scripted: Any, deploy_target: DeployTarget, aws: Callable[[str], Any]
) -> None:
    ctx, fake = scripted([standin.draining, standin.draining, standin.half_way, standin.completed])
    released = run(ctx, deploy_target)
    assert released.task_definition.endswith(f":task-definition/{deploy_target.family}:2")
    assert running(aws, deploy_target) == f"{deploy_target.family}:2"
    assert fake.describe_calls >= 4  # it kept polling through the drain
    log = ctx.out.stream.getvalue()
    assert "ACTIVE  COMPLETED" in log and "running=0/1 pending=1" in log
    assert log.count("has started 1 tasks") == 1  # each event printed once
    tags = aws("ecs").describe_task_definition(taskDefinition=released.task_definition, include=["TAGS"])[
        "tags"
    ]
    # Rolled out, but no smoke test ran (smoke=False): not verified, so no rollback target.
    keys = {t["key"] for t in tags}
    assert keys >= {"pipeline:git-sha", "pipeline:rolled-out-at", "pipeline:created-at"}
    assert "pipeline:verified-at" not in keys
    assert "rolled out without a smoke test: tagged pipeline:rolled-out-at, not verified" in log


def test_a_service_without_rollout_state_succeeds_when_stale_deployments_are_gone(
    scripted: Any, deploy_target: DeployTarget
) -> None:
    ctx, _ = scripted([standin.legacy_draining, standin.legacy_draining, standin.legacy_done])
    assert run(ctx, deploy_target).task_definition.endswith(":2")


def test_throttling_is_retried_within_the_timeout(scripted: Any, deploy_target: DeployTarget) -> None:
    ctx, fake = scripted([standin.throttled, standin.throttled, standin.draining, standin.completed])
    assert run(ctx, deploy_target).task_definition.endswith(":2")
    assert "throttled; polling again" in ctx.out.stream.getvalue()


def test_a_failed_rollback_is_exit_code_4(
    scripted: Any, deploy_target: DeployTarget, environ: dict[str, str]
) -> None:
    from tests.standins import honeycomb_markers

    with honeycomb_markers(None, None).running() as api:
        ctx, _ = scripted([standin.draining], [standin.draining])
        ctx.environ = {**environ, "HONEYCOMB_API_KEY": "k", "HONEYCOMB_API_HOST": api.url}
        with pytest.raises(RollbackFailed, match="the rollback to .*:1 failed too") as info:
            run(ctx, deploy_target, timeout=0.3)
    assert info.value.exit_code == 4
    assert [r.json()["type"] for r in api.requests] == ["deploy-failed", "rollback-failed"]


def test_a_service_that_never_completed_is_not_rolled_back(
    scripted: Any, deploy_target: DeployTarget, aws: Callable[[str], Any]
) -> None:
    ctx, fake = scripted([standin.draining])
    fake.before = lambda r: {
        "deployments": [standin.deployment(r.old_id, r.old_td, running=0, pending=1, state="IN_PROGRESS")]
    }
    with pytest.raises(RolloutInProgress, match="has a rollout in progress: deployment "):
        run(ctx, deploy_target, timeout=0.3)  # its first deployment is still rolling out
    assert fake.updates == []
    with pytest.raises(DeployFailed, match=r"not rolled back \(no earlier revision had COMPLETED\)"):
        run(ctx, deploy_target, timeout=0.3, busy=deploy.Busy.REPLACE)
    assert len(fake.updates) == 1


def test_a_failed_deploy_and_its_rollback_post_markers(
    scripted: Any, deploy_target: DeployTarget, environ: dict[str, str]
) -> None:
    from tests.standins import honeycomb_markers

    with honeycomb_markers(None, None).running() as api:
        ctx, _ = scripted([standin.failed, standin.rolled_back])
        ctx.environ = {**environ, "HONEYCOMB_API_KEY": "k", "HONEYCOMB_API_HOST": api.url}
        with pytest.raises(DeployFailed):
            run(ctx, deploy_target)
    family = deploy_target.family
    assert [(r.json()["type"], r.json()["message"].split(": ", 1)[1]) for r in api.requests] == [
        ("deploy-failed", f"sha {deploy_target.sha[:12]}, revision {family}:2 (failed)"),
        ("rollback", f"sha unknown, revision {family}:1"),
    ]
