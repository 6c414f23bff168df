"""Safe on its worst day, at the boto3 seam: every failure after UpdateService ends on one
path (roll back where it can, say what runs, an exit code that says a change was made),
a deploy we did not start is never undone, a rollback only goes back, and another
rollout in progress stops a deploy before it changes anything. Network faults are no
failure of the rollout: they are waited out, tested with real outages through the fault
proxy in tests/test_network_faults.py.

ECS's rollout progress and the errors come from the stand-in (tests/ecs_standin.py);
registering, updating, tagging and ECR are the emulator's real API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline import deploy, ecs
from pipeline.errors import (
    DeployFailed,
    RollbackFailed,
    RolloutInProgress,
    ServiceLeftChanged,
)
from pipeline.rollout import rolling
from pipeline.safety import Busy
from tests import ecs_standin as standin
from tests.conftest import DeployTarget
from tests.test_rollout import NO_SLEEP, run, running

OLD, NEW = "arn:aws:ecs:us-east-1:1:task-definition/fam:1", "arn:aws:ecs:us-east-1:1:task-definition/fam:2"
OTHER = "arn:aws:ecs:us-east-1:1:task-definition/fam:3"
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


# --- pure: whose deployment is PRIMARY -------------------------------------------------


def rollback_event(at: datetime) -> dict[str, Any]:
    return {"id": "e1", "createdAt": at, "message": "(service svc) rolling back to deployment old."}


@pytest.mark.parametrize(
    ("deployments", "events", "state", "by_ecs"),
    [
        # ECS's circuit breaker: ours FAILED, the last COMPLETED revision PRIMARY again.
        (
            [
                standin.deployment("rb", OLD, state="IN_PROGRESS"),
                standin.deployment("new", NEW, "ACTIVE", state="FAILED"),
            ],
            [],
            "failed",
            True,
        ),
        # Ours already gone, but ECS wrote its rollback event after we started.
        ([standin.deployment("rb", OLD)], [rollback_event(T0 + timedelta(seconds=5))], "failed", True),
        # The same earlier revision with no sign of ECS: a person's `invoke rollback`.
        ([standin.deployment("rb", OLD)], [], "replaced", False),
        # A rollback event from before our deployment started is history, not our rollback.
        ([standin.deployment("rb", OLD)], [rollback_event(T0 - timedelta(hours=1))], "replaced", False),
        # Another pipeline's newer revision: never ECS's rollback, whatever the events say.
        (
            [
                standin.deployment("other", OTHER, state="IN_PROGRESS"),
                standin.deployment("new", NEW, "ACTIVE", state="FAILED"),
            ],
            [rollback_event(T0 + timedelta(seconds=5))],
            "replaced",
            False,
        ),
    ],
    ids=["failed", "event", "person", "old-event", "other-revision"],
)
def test_a_deployment_we_did_not_start_is_never_taken_for_ecs_rollback(
    deployments: list[dict[str, Any]], events: list[dict[str, Any]], state: str, by_ecs: bool
) -> None:
    outcome = rolling.judge(
        {"status": "ACTIVE", "deployments": deployments, "events": events}, "new", NEW, previous=OLD, since=T0
    )
    assert outcome.state == state
    assert (outcome.rolled_back_by_ecs is not None) == by_ecs
    assert (outcome.replaced_by is not None) == (state == "replaced")


EARLIER = "arn:aws:ecs:us-east-1:1:task-definition/fam:0"


def test_ecs_rollback_to_an_earlier_revision_than_we_saw_complete_is_still_ecs_rollback() -> None:
    """ECS returns to the last deployment that completed by its own account: any earlier revision."""
    deployments = [
        standin.deployment("rb", EARLIER, state="IN_PROGRESS"),
        standin.deployment("new", NEW, "ACTIVE", state="FAILED", reason="tasks failed to start."),
    ]
    outcome = rolling.judge(
        {"status": "ACTIVE", "deployments": deployments}, "new", NEW, previous=OLD, since=T0
    )
    assert (outcome.state, outcome.reason) == ("failed", "tasks failed to start.")
    assert outcome.rolled_back_by_ecs is not None and outcome.rolled_back_by_ecs.task_definition == EARLIER


@pytest.mark.parametrize(("state", "verdict"), [("IN_PROGRESS", "rolling"), ("COMPLETED", "succeeded")])
def test_ecs_rollback_to_the_revision_our_rollback_targets_is_followed_not_replaced(
    state: str, verdict: str
) -> None:
    """Our rollback (deployment "back" of OLD) and ECS's circuit breaker both return to OLD:
    ECS's deployment is the way back, not a deploy we did not start."""
    deployments = [
        standin.deployment("ecs-rb", OLD, state=state),
        standin.deployment("back", OLD, "ACTIVE", state="FAILED"),
    ]
    outcome = rolling.judge(
        {
            "status": "ACTIVE",
            "deployments": deployments,
            "events": [rollback_event(T0 + timedelta(seconds=5))],
        },
        "back",
        OLD,
        since=T0,
    )
    assert outcome.state == verdict and outcome.replaced_by is None


@pytest.mark.parametrize(
    ("deployments", "rolling"),
    [
        ([standin.deployment("a", OLD)], []),
        ([standin.deployment("a", OLD, state=None)], []),
        ([standin.deployment("b", NEW, state="IN_PROGRESS"), standin.deployment("a", OLD, "ACTIVE")], ["b"]),
        (
            [standin.deployment("b", NEW, state=None), standin.deployment("a", OLD, "ACTIVE", state=None)],
            ["b", "a"],
        ),
    ],
)
def test_in_progress(deployments: list[dict[str, Any]], rolling: list[str]) -> None:
    assert [d.id for d in ecs.in_progress({"deployments": deployments})] == rolling


def verified(number: int, verified_at: int | None, created_at: int | None = None) -> ecs.Verified:
    def at(hour: int | None) -> datetime | None:
        return None if hour is None else T0 + timedelta(hours=hour)

    return ecs.Verified(f"fam:{number}", number, at(verified_at), at(created_at))


@pytest.mark.parametrize(
    ("running", "candidate", "back"),
    [
        (verified(3, 3, 3), verified(2, 2, 2), True),  # older and verified
        (verified(3, 3, 3), verified(2, None, 2), False),  # never verified
        (verified(2, 5, 1), verified(3, 3, 3), False),  # verified after :2 appeared: forward
        (verified(5, None, 9), verified(6, 8, 7), True),  # verified before :5 was registered
        (verified(5, None, None), verified(6, 8, 7), False),  # cannot tell: only lower numbers
        (verified(3, 3, 3), verified(3, 3, 3), False),
    ],
)
def test_the_rollback_rule_only_goes_back(running: ecs.Verified, candidate: ecs.Verified, back: bool) -> None:
    assert ecs.goes_back(running, candidate) is back


def test_tag_stamps_that_are_not_times_are_ignored() -> None:
    assert ecs.parse_stamp("yesterday") is None and ecs.parse_stamp("2026-11-29T12:00:00") is None
    assert ecs.parse_stamp("2026-11-29T12:00:00+00:00") == T0


# --- at the seam ------------------------------------------------------------------------


@pytest.fixture
def scripted(aws: Callable[[str], Any], make_context: Callable[..., Any]) -> Callable[..., Any]:
    """(context, stand-in) for scripts; `wrap` may replace the stand-in with a subclass."""

    def make(
        *scripts: list[standin.State], cls: type[standin.ScriptedECS] = standin.ScriptedECS
    ) -> tuple[Any, Any]:
        fake = cls(aws("ecs"), list(scripts))
        ctx = make_context(aws_factory=lambda name: fake if name == "ecs" else aws(name))
        return ctx, fake

    return make


def replaced_by_another(r: standin.Rollout) -> dict[str, Any]:
    """Another pipeline's UpdateService: its deployment PRIMARY, ours ACTIVE and draining."""
    return {
        "deployments": [
            standin.deployment(
                "ecs-svc/other", r.new_td.replace(":2", ":1"), running=0, pending=1, state="IN_PROGRESS"
            ),
            standin.deployment(r.new_id, r.new_td, status="ACTIVE", state="IN_PROGRESS"),
        ]
    }


def test_a_deploy_replaced_midway_names_the_replacer_and_does_not_roll_back(
    scripted: Any, deploy_target: DeployTarget
) -> None:
    ctx, fake = scripted([standin.draining, replaced_by_another])
    with pytest.raises(ServiceLeftChanged) as info:
        run(ctx, deploy_target)
    message = info.value.message
    assert message.startswith(
        f"deploy of {deploy_target.family}:2 to prod did not finish: it was replaced by "
    )
    assert f"deployment ecs-svc/other of {deploy_target.family}:1 (sha " in message
    assert "not rolled back over that deploy" in message
    assert info.value.exit_code == 6
    assert len(fake.updates) == 1  # nothing undone


def error(code: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "it broke"}, "ResponseMetadata": {}}, "DescribeServices"
    )


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        (
            error("InvalidParameterException"),
            "ecs:DescribeServices failed: InvalidParameterException: it broke",
        ),
        (RuntimeError("a bug"), "unexpected RuntimeError: a bug"),
    ],
    ids=["aws-error", "bug"],
)
def test_an_error_that_is_no_network_fault_while_polling_rolls_back_and_says_what_runs(
    scripted: Any, deploy_target: DeployTarget, aws: Callable[[str], Any], failure: Exception, said: str
) -> None:
    ctx, fake = scripted([standin.draining, lambda _r: failure], [standin.completed])
    with pytest.raises(DeployFailed) as info:
        run(ctx, deploy_target)
    family = deploy_target.family
    message = info.value.message
    assert message.startswith(f"deploy of {family}:2 to prod failed: ")
    assert message.endswith(f"; rolled back to {family}:1, which runs now")
    assert said in info.value.message
    assert info.value.exit_code == 1  # rolled back: the service is where it was
    assert [u.new_td.rsplit("/", 1)[-1] for u in fake.updates] == [f"{family}:2", f"{family}:1"]
    assert running(aws, deploy_target) == f"{family}:1"


def test_a_service_deleted_mid_rollout_is_exit_4_and_says_so(
    scripted: Any, deploy_target: DeployTarget, aws: Callable[[str], Any]
) -> None:
    def deleted(_r: standin.Rollout) -> Exception:
        aws("ecs").delete_service(cluster=deploy_target.cluster, service=deploy_target.service, force=True)
        return error("ServiceNotFoundException")

    ctx, _ = scripted([standin.draining, deleted], [deleted])
    with pytest.raises(RollbackFailed) as info:
        run(ctx, deploy_target)
    message = info.value.message
    family = deploy_target.family
    assert message.startswith(
        f"deploy of {family}:2 to prod failed: ecs:DescribeServices failed: ServiceNotFoundException"
    )
    assert f"; the rollback to {family}:1 failed too: " in message
    assert "; the service now runs unknown (could not describe the service: " in message
    assert info.value.exit_code == 4


class ThrottledReports(standin.ScriptedECS):
    """ListTasks and DescribeTasks throttled beyond retries while the failure is reported."""

    def list_tasks(self, **kwargs: Any) -> dict[str, Any]:
        raise standin.throttling()

    def describe_tasks(self, **kwargs: Any) -> dict[str, Any]:
        raise standin.throttling()


def test_throttled_failure_reporting_never_hides_the_failure(
    scripted: Any, deploy_target: DeployTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx, _ = scripted([standin.failed, standin.rolled_back], cls=ThrottledReports)
    with pytest.raises(DeployFailed) as info:
        run(ctx, deploy_target)
    assert "failed: ECS deployment circuit breaker: tasks failed to start; " in info.value.message
    assert info.value.message.endswith(f"rolled back to {deploy_target.family}:1, which runs now")
    assert "(the stopped tasks could not be listed: ecs:ListTasks was throttled" in ctx.out.stream.getvalue()


class NoTaskDefinitions(standin.ScriptedECS):
    describe_task_definition_calls = 0

    def describe_task_definition(self, **kwargs: Any) -> dict[str, Any]:
        type(self).describe_task_definition_calls += 1
        raise error("ServerException")


@pytest.mark.parametrize("with_key", [False, True])
def test_a_failing_describe_task_definition_for_the_marker_never_hides_the_failure(
    scripted: Any, deploy_target: DeployTarget, environ: dict[str, str], with_key: bool
) -> None:
    from tests.standins import honeycomb_markers

    NoTaskDefinitions.describe_task_definition_calls = 0
    with honeycomb_markers(None, None).running() as api:
        ctx, _ = scripted([standin.draining], [standin.completed], cls=NoTaskDefinitions)
        if with_key:
            ctx.environ = {**environ, "HONEYCOMB_API_KEY": "k", "HONEYCOMB_API_HOST": api.url}
        with pytest.raises(DeployFailed) as info:
            run(ctx, deploy_target, timeout=0.3)
    assert info.value.message.endswith(f"rolled back to {deploy_target.family}:1, which runs now")
    assert info.value.exit_code == 1
    if with_key:
        assert [r.json()["type"] for r in api.requests] == ["deploy-failed", "rollback"]
    else:
        # No key: the marker's sha is not even asked for; the one call is the rollback
        # target's image check, whose failure only warns (the rollback goes ahead).
        assert NoTaskDefinitions.describe_task_definition_calls == 1


def test_a_rollout_in_progress_stops_the_deploy_before_any_change(
    scripted: Any, deploy_target: DeployTarget
) -> None:
    ctx, fake = scripted([standin.completed])
    fake.before = lambda r: {
        "deployments": [
            standin.deployment("ecs-svc/theirs", r.old_td, running=0, pending=1, state="IN_PROGRESS"),
            standin.deployment("ecs-svc/older", r.old_td, status="ACTIVE"),
        ]
    }
    with pytest.raises(RolloutInProgress) as info:
        run(ctx, deploy_target)
    assert (
        f"has a rollout in progress: deployment ecs-svc/theirs of {deploy_target.family}:1 (sha unknown, started "
        in (info.value.message)
    )
    assert "--wait" in info.value.message and "--force" in info.value.message
    assert info.value.exit_code == 5 and fake.updates == []


def test_wait_goes_once_the_other_rollout_is_over(scripted: Any, deploy_target: DeployTarget) -> None:
    ctx, fake = scripted([standin.completed])
    calls = []

    def before(r: standin.Rollout) -> dict[str, Any]:
        calls.append(1)
        if len(calls) < 3:
            return {
                "deployments": [
                    standin.deployment("ecs-svc/theirs", r.old_td, running=0, state="IN_PROGRESS")
                ]
            }
        return {"deployments": [standin.deployment("ecs-svc/theirs", r.old_td)]}

    fake.before = before
    assert run(ctx, deploy_target, busy=Busy.WAIT).task_definition.endswith(":2")
    assert len(calls) >= 3 and len(fake.updates) == 1


def test_a_rollback_is_refused_too_while_another_rollout_is_in_progress(
    scripted: Any, deploy_target: DeployTarget
) -> None:
    ctx, fake = scripted([standin.completed])
    fake.before = lambda r: {
        "deployments": [
            standin.deployment("ecs-svc/theirs", r.old_td, running=0, pending=1, state="IN_PROGRESS")
        ]
    }
    with pytest.raises(RolloutInProgress, match="has a rollout in progress: deployment ecs-svc/theirs"):
        deploy.deploy(ctx, deploy.DeployOptions.rollback_to("prod", timeout=5, smoke=False, sleep=NO_SLEEP))
    assert fake.updates == []


def forced_over_our_rollback(r: standin.Rollout) -> dict[str, Any]:
    """Another pipeline's --force while we roll back: its deployment (of the revision we were
    leaving) PRIMARY, our rollback ACTIVE."""
    return {
        "deployments": [
            standin.deployment("ecs-svc/forced", r.old_td, running=0, pending=1, state="IN_PROGRESS"),
            standin.deployment(r.new_id, r.new_td, status="ACTIVE", state="IN_PROGRESS"),
        ]
    }


def test_forcing_over_a_deploy_that_is_rolling_back_is_exit_6_replaced_not_4(
    scripted: Any, deploy_target: DeployTarget
) -> None:
    ctx, fake = scripted([standin.draining], [standin.draining, forced_over_our_rollback])
    with pytest.raises(ServiceLeftChanged) as info:
        run(ctx, deploy_target, timeout=0.3)
    family = deploy_target.family
    message = info.value.message
    assert message.startswith(f"deploy of {family}:2 to prod failed: timed out after 0.3s")
    assert (
        f"; the rollback to {family}:1 was replaced by deployment ecs-svc/forced of {family}:2 (sha "
        in message
    )
    assert "not rolled back over that deploy; the service now runs " in message
    assert info.value.exit_code == 6
    assert len(fake.updates) == 2  # our deploy and our rollback; the forced deploy is not undone


def ecs_takes_over_our_rollback(r: standin.Rollout) -> dict[str, Any]:
    """ECS's circuit breaker returns to the very revision our rollback started."""
    return {
        "deployments": [
            standin.deployment("ecs-svc/ecs-rb", r.new_td, running=0, pending=1, state="IN_PROGRESS"),
            standin.deployment(r.new_id, r.new_td, status="ACTIVE", state="FAILED"),
        ],
        "events": [standin.event(f"(service svc) rolling back to deployment {r.old_id}.")],
    }


def ecs_rollback_done(r: standin.Rollout) -> dict[str, Any]:
    return {"deployments": [standin.deployment("ecs-svc/ecs-rb", r.new_td)]}


def test_ecs_rollback_to_the_same_revision_as_ours_is_reported_as_a_rollback(
    scripted: Any, deploy_target: DeployTarget
) -> None:
    ctx, fake = scripted([standin.draining], [ecs_takes_over_our_rollback, ecs_rollback_done])
    with pytest.raises(DeployFailed) as info:
        run(ctx, deploy_target, timeout=0.3)
    family = deploy_target.family
    assert info.value.message.endswith(f"; rolled back to {family}:1, which runs now")
    assert info.value.exit_code == 1
    assert len(fake.updates) == 2


def test_a_rollback_target_whose_image_is_gone_is_never_started(
    scripted: Any, deploy_target: DeployTarget, aws: Callable[[str], Any], repository: str
) -> None:
    def image_expires(r: standin.Rollout) -> dict[str, Any]:
        aws("ecr").batch_delete_image(repositoryName=repository, imageIds=[{"imageTag": deploy_target.sha}])
        return standin.draining(r)

    ctx, fake = scripted([image_expires])
    with pytest.raises(ServiceLeftChanged) as info:
        run(ctx, deploy_target, timeout=0.3)
    family = deploy_target.family
    message = info.value.message
    assert f"; not rolled back: {family}:1 runs " in message and "which is no longer in ECR" in message
    assert info.value.exit_code == 6
    assert len(fake.updates) == 1  # no UpdateService to a revision that could never start
