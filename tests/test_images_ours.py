"""Images are ours (issue 19): a tag squatted in ECR under main's sha is an error naming
both digests, never "already in ECR"; the same image pushed again is left alone; a deploy
refuses a tag ECR moved after this run's push. Real engine, registry, emulator, aws CLI."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from pipeline import deploy, stack
from pipeline.errors import StepFailed
from tests.conftest import DeployTarget, build_image, push_image
from tests.helpers import ROOT

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def sha() -> str:
    return uuid.uuid4().hex[:12] + "0" * 28


@pytest.fixture
def built(run_task: Run, prefix: str, sha: str) -> Iterator[str]:
    proc = run_task("dockerize", "--sha", sha)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield f"{prefix}:{sha}"
    client = docker.from_env()
    for image in client.images.list(name=prefix):
        for tag in image.tags:
            client.images.remove(tag, force=True, noprune=True)


def digests(aws_cli: Callable[..., Any], repository: str) -> dict[str, str]:
    images = aws_cli("ecr", "describe-images", "--repository-name", repository)["imageDetails"]
    return {tag: i["imageDigest"] for i in images for tag in i.get("imageTags", [])}


@pytest.mark.heavy
def test_a_squatted_tag_is_an_error_naming_both_digests_and_ecr_is_unchanged(
    run_task: Run, built: str, repository: str, sha: str, environ: dict[str, str], aws_cli: Callable[..., Any]
) -> None:
    # A branch job pushes its own image under main's sha before main's pipeline does.
    squatter = build_image(f"FROM {stack.LOCAL_BASE_IMAGE}\nLABEL squatter={uuid.uuid4().hex}\n")
    try:
        push_image(environ, squatter, repository, sha)
    finally:
        docker.from_env().images.remove(squatter, noprune=True)
    before = digests(aws_cli, repository)

    proc = run_task("push", "--sha", sha)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    local = docker.from_env().images.get(built).id
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(
        f"error: {repository}:{sha} is already in ECR as another image: ECR's {before[sha]}"
    )
    assert f"is not the local image {local}; nothing was pushed" in line
    assert "not pushed again" not in proc.stdout and "Pushed" not in proc.stdout
    assert digests(aws_cli, repository) == before


@pytest.mark.heavy
def test_the_same_image_pushed_again_is_left_alone(
    run_task: Run, built: str, repository: str, sha: str, aws_cli: Callable[..., Any]
) -> None:
    first = run_task("push", "--sha", sha)
    assert first.returncode == 0, first.stderr
    pushed = digests(aws_cli, repository)
    again = run_task("push", "--sha", sha)
    assert again.returncode == 0, again.stderr
    assert (
        f"{repository}:{sha} is already in ECR ({pushed[sha]}), the same image; not pushed again"
        in again.stdout
    )
    assert digests(aws_cli, repository) == pushed


@pytest.mark.heavy
def test_a_dev_branch_job_pushes_into_the_dev_repository_so_mains_push_of_that_sha_is_its_own(
    run_task: Run, repository: str, sha: str, environ: dict[str, str], aws: Any, aws_cli: Callable[..., Any]
) -> None:
    dev_repository = f"{repository}-dev"
    aws("ecr").create_repository(repositoryName=dev_repository)  # `invoke setup` makes it (test_infra_stack)
    # CircleCI's own variables decide, whatever the flags say: the job of a -dev branch.
    dev_job = {**environ, "CIRCLECI": "true", "CIRCLE_BRANCH": "try-this-dev", "CIRCLE_SHA1": sha}
    main_job = {**dev_job, "CIRCLE_BRANCH": "main"}
    try:
        for step in ("dockerize", "push"):
            proc = run_task(step, "--sha", sha, env=dev_job)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert f"its images go to {dev_repository}, not {repository}" in proc.stdout + proc.stderr
        assert sha in digests(aws_cli, dev_repository)
        assert sha not in digests(aws_cli, repository)  # nothing a -dev job pushed can deploy
        listed = json.loads(run_task("images", "--dev", "--json").stdout)
        assert [sha] in [row["tags"] for row in listed]

        for step in ("dockerize", "push"):
            proc = run_task(step, "--sha", sha, env=main_job)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (
            "not pushed again" not in proc.stdout
            and f"/{repository}:{sha}@sha256:" in proc.stdout + proc.stderr
        )
        assert sha in digests(aws_cli, repository)
    finally:
        client = docker.from_env()
        for name in (repository, dev_repository):
            for image in client.images.list(name=name):
                for tag in image.tags:
                    client.images.remove(tag, force=True, noprune=True)


def test_a_deploy_refuses_a_tag_moved_since_this_runs_push(
    make_context: Callable[..., Any], deploy_target: DeployTarget, aws_cli: Callable[..., Any]
) -> None:
    ctx = make_context()
    ctx.pushed[deploy_target.sha] = "sha256:" + "0" * 64  # what this run pushed; ECR lists another
    with pytest.raises(StepFailed, match="the tag was moved after the push; nothing was deployed"):
        deploy.deploy(ctx, deploy.DeployOptions("prod", deploy_target.sha, smoke=False))
    arns = aws_cli("ecs", "list-task-definitions", "--family-prefix", deploy_target.family)[
        "taskDefinitionArns"
    ]
    assert len(arns) == 1


def test_a_smoke_tested_revisions_image_is_kept_from_the_lifecycle(
    run_task: Run, deploy_target: DeployTarget, aws_cli: Callable[..., Any], repository: str, hello_url: str
) -> None:
    # Verified means smoke-tested: a --no-smoke deploy is no rollback target (tests/test_rollback.py).
    proc = run_task("deploy", "--env", "prod", "--sha", deploy_target.sha, "--smoke-url", hello_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tags = digests(aws_cli, repository)
    assert tags[f"keep-{deploy_target.sha}"] == tags[deploy_target.sha]  # the same image, a second tag
    # The lifecycle's first rule matches keep-* and expires none of them in practice; ECR
    # never lets a lower rule expire an image a higher one matched.
    body = (ROOT / "pipeline/templates/project.yaml").read_text()
    text = body[body.index('{"rules"') : body.index("]}", body.index('{"rules"')) + 2]
    rules = json.loads(text.replace("${UntaggedImageDays}", "14").replace("${KeepImages}", "100"))["rules"]
    first = min(rules, key=lambda r: r["rulePriority"])
    assert first["selection"]["tagPatternList"] == ["keep-*"] and first["selection"]["countNumber"] >= 10000
    assert max(rules, key=lambda r: r["rulePriority"])["selection"]["tagStatus"] == "any"
