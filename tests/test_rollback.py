"""`invoke rollback` on real containers: a deploy of an earlier verified revision through
the same path as a deploy, only ever backwards, refused before any change when the
target's image has left ECR. Each rollout here is the local ECS replacing real tasks;
the aws CLI is the independent check of what runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipeline import deploy
from pipeline.errors import NotFound
from tests.conftest import DeployTarget
from tests.helpers import ROLLOUT_DEADLINE

BACK = deploy.DeployOptions.rollback_to("prod", timeout=ROLLOUT_DEADLINE, smoke=False)


def deploy_again(ctx: Any, target: DeployTarget) -> str:
    """A deploy of the target's image: a new revision, verified once it COMPLETED."""
    released = deploy.deploy(
        ctx, deploy.DeployOptions("prod", target.sha, timeout=ROLLOUT_DEADLINE, smoke=False)
    )
    return str(released.task_definition).rsplit("/", 1)[-1]


def running(aws_cli: Callable[..., Any], target: DeployTarget) -> str:
    service = aws_cli("ecs", "describe-services", "--cluster", target.cluster, "--services", target.service)
    return str(service["services"][0]["taskDefinition"]).rsplit("/", 1)[-1]


def test_rollback_redeploys_the_last_verified_revision_and_never_goes_forward(
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
