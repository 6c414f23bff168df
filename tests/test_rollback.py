"""`invoke rollback` on real containers: a deploy of an earlier verified revision through
the same path as a deploy, only ever backwards, refused before any change when the
target's image has left ECR or the revision is another family's. Verified means smoke-tested:
a --no-smoke deploy is never a target, however many such revisions came since. Each rollout
here is the local ECS replacing real tasks; the aws CLI is the independent check of what runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipeline import deploy
from pipeline.errors import ConfigError, NotFound
from tests.conftest import DeployTarget
from tests.helpers import ROLLOUT_DEADLINE

BACK = deploy.DeployOptions.rollback_to("prod", timeout=ROLLOUT_DEADLINE, smoke=False)


@pytest.fixture
def deploy_again(hello_url: str) -> Callable[..., str]:
    """A deploy of the target's image: a new revision, verified once it COMPLETED and its
    smoke test passed (a real hello_world container answers the smoke URL); smoke=False
    deploys it untested, as --no-smoke does."""

    def run(ctx: Any, target: DeployTarget, smoke: bool = True) -> str:
        options = deploy.DeployOptions(
            "prod", target.sha, timeout=ROLLOUT_DEADLINE, smoke=smoke, smoke_url=hello_url if smoke else None
        )
        released = deploy.deploy(ctx, options)
        assert released is not None
        return str(released.task_definition).rsplit("/", 1)[-1]

    return run


def running(aws_cli: Callable[..., Any], target: DeployTarget) -> str:
    service = aws_cli("ecs", "describe-services", "--cluster", target.cluster, "--services", target.service)
    return str(service["services"][0]["taskDefinition"]).rsplit("/", 1)[-1]


def test_rollback_redeploys_the_last_verified_revision_and_never_goes_forward(
    deploy_again: Callable[..., str],
    make_context: Callable[..., Any],
    deploy_target: DeployTarget,
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
) -> None:
    ctx, family = make_context(), deploy_target.family
    assert [deploy_again(ctx, deploy_target) for _ in range(2)] == [f"{family}:2", f"{family}:3"]
    aws("ecs").register_task_definition(  # :4 registered but never deployed or verified
        family=family, containerDefinitions=[{"name": "x", "image": "y", "memory": 64}]
    )
    released = deploy.deploy(ctx, BACK)
    assert released.task_definition.endswith(f"{family}:2")
    assert running(aws_cli, deploy_target) == f"{family}:2"
    # Again: :1 was never verified and :3 is forward, not back; nothing changes.
    with pytest.raises(NotFound, match=f"no verified revision of {family} older than the running {family}:2"):
        deploy.deploy(ctx, BACK)
    service = aws_cli(
        "ecs", "describe-services", "--cluster", deploy_target.cluster, "--services", deploy_target.service
    )["services"][0]
    assert [(d["taskDefinition"].rsplit("/", 1)[-1], d["rolloutState"]) for d in service["deployments"]] == [
        (f"{family}:2", "COMPLETED")
    ]


def test_a_rollback_target_whose_image_expired_changes_nothing(
    deploy_again: Callable[..., str],
    make_context: Callable[..., Any],
    deploy_target: DeployTarget,
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
    environ: dict[str, str],
    hello_image: str,
    repository: str,
) -> None:
    from tests.conftest import push_image

    ctx, family = make_context(), deploy_target.family
    deploy_again(ctx, deploy_target)  # :2, the rollback target
    newer = DeployTarget(
        "f" * 40, deploy_target.cluster, deploy_target.service, family, deploy_target.initial
    )
    push_image(environ, hello_image, repository, newer.sha)
    deploy_again(ctx, newer)  # :3, running
    aws("ecr").batch_delete_image(repositoryName=repository, imageIds=[{"imageTag": deploy_target.sha}])
    with pytest.raises(
        NotFound, match="which is no longer in ECR .*nothing was changed; pick another revision with --to"
    ):
        deploy.deploy(ctx, BACK)
    assert running(aws_cli, deploy_target) == f"{family}:3"


def tags(aws: Callable[[str], Any], revision: str) -> set[str]:
    found = aws("ecs").describe_task_definition(taskDefinition=revision, include=["TAGS"])
    return {t["key"] for t in found.get("tags", [])}


def test_after_a_smoke_tested_a_no_smoke_and_a_smoke_tested_deploy_rollback_goes_to_the_first(
    deploy_again: Callable[..., str],
    make_context: Callable[..., Any],
    deploy_target: DeployTarget,
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
    run_task: Callable[..., Any],
) -> None:
    ctx, family = make_context(), deploy_target.family
    a = deploy_again(ctx, deploy_target)
    b = deploy_again(ctx, deploy_target, smoke=False)
    assert (
        "rolled out without a smoke test: tagged pipeline:rolled-out-at, not verified"
        in ctx.out.stream.getvalue()
    )
    c = deploy_again(ctx, deploy_target)
    assert (a, b, c) == (f"{family}:2", f"{family}:3", f"{family}:4")
    assert "pipeline:verified-at" not in tags(aws, b) and "pipeline:rolled-out-at" in tags(aws, b)
    proc = run_task("rollback", "--env", "prod", "--no-smoke", "--timeout", str(int(ROLLOUT_DEADLINE)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{family}:4 → {family}:2" in proc.stdout
    assert running(aws_cli, deploy_target) == f"{family}:2"


def test_rollback_finds_the_verified_revision_behind_thirty_newer_unverified_ones(
    deploy_again: Callable[..., str],
    make_context: Callable[..., Any],
    deploy_target: DeployTarget,
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
) -> None:
    ctx, family = make_context(), deploy_target.family
    assert deploy_again(ctx, deploy_target) == f"{family}:2"
    definition = aws("ecs").describe_task_definition(taskDefinition=f"{family}:2")["taskDefinition"]
    kept = ("family", "containerDefinitions", "networkMode", "requiresCompatibilities", "cpu", "memory")
    for _ in range(30):  # registered (as failed deploys leave them), never verified
        aws("ecs").register_task_definition(**{k: definition[k] for k in kept if k in definition})
    assert deploy_again(ctx, deploy_target) == f"{family}:33"
    released = deploy.deploy(ctx, BACK)
    assert released is not None and released.task_definition.endswith(f"{family}:2")
    assert running(aws_cli, deploy_target) == f"{family}:2"


def test_rollback_to_another_familys_revision_is_refused_with_exit_2(
    make_context: Callable[..., Any],
    deploy_target: DeployTarget,
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
) -> None:
    ctx, family = make_context(), deploy_target.family
    staging = aws("ecs").register_task_definition(
        family=f"{family}-staging", containerDefinitions=[{"name": "x", "image": "y", "memory": 64}]
    )["taskDefinition"]["taskDefinitionArn"]
    for to in (f"{family}-staging:1", staging):
        with pytest.raises(ConfigError) as refused:
            deploy.deploy(ctx, deploy.DeployOptions.rollback_to("prod", to, timeout=5, smoke=False))
        assert refused.value.exit_code == 2
        assert refused.value.message == (
            f"--to {to}: a revision of {family}-staging, not of this environment's family {family}; "
            f"nothing was changed; pass a number or {family}:REVISION"
        )
    assert running(aws_cli, deploy_target) == f"{family}:1"
