"""Prod credentials only for prod refs: the refs each environment's deploy role trusts,
the CircleCI context restriction `invoke setup` prints, and the tool's own refusal to
deploy an environment the CI policy does not map to the job's ref (defence in depth)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline import ci_identity
from pipeline.config import CIPolicy
from pipeline.errors import ConfigError
from tests.helpers import ROOT

POLICY = CIPolicy()
SHA = "1234567890abcdef1234567890abcdef12345678"


@pytest.mark.parametrize(
    ("env", "refs"),
    [
        ("prod", ["refs/heads/main", "refs/heads/master", "refs/tags/*-prod"]),
        ("staging", ["refs/tags/*-staging"]),
        ("qa", []),
    ],
)
def test_trusted_refs_follow_the_ci_policy(env: str, refs: list[str]) -> None:
    assert ci_identity.trusted_refs(POLICY, env) == refs


def test_trusted_subjects_pin_everything_before_the_ref() -> None:
    [main] = ci_identity.trusted_subjects("ORG", "PROJ", "github.com/example/app", ["refs/heads/main"])
    assert (
        main
        == f"org/ORG/project/PROJ/user/{'?' * 36}/vcs-origin/github.com/example/app/vcs-ref/refs/heads/main"
    )


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://github.com/example/app", "github.com/example/app"),
        ("https://github.com/example/app.git", "github.com/example/app"),
        ("git@github.com:example/app.git", ""),  # not a URL: setup asks for one
        ("github.com/example/app/", "github.com/example/app"),
        ("", ""),
    ],
)
def test_vcs_origin(url: str, origin: str) -> None:
    assert ci_identity.vcs_origin(url) == origin


def test_mainline_and_dev_branches_push_with_separate_roles() -> None:
    assert ci_identity.push_refs(POLICY) == ["refs/heads/main", "refs/heads/master"]
    assert ci_identity.dev_push_refs(POLICY) == ["refs/heads/*-dev"]
    # A policy whose -dev branches do not push has no dev role (and no dev repository).
    assert ci_identity.dev_push_refs(CIPolicy(dev_steps=("test", "build"))) == []
    assert ci_identity.push_context_expression(POLICY, dev=False) == (
        '(pipeline.git.branch == "main" or pipeline.git.branch == "master") and not job.ssh.enabled'
    )
    assert ci_identity.push_context_expression(POLICY, dev=True) == (
        '(pipeline.git.branch ends-with "-dev") and not job.ssh.enabled'
    )
    assert ci_identity.push_context_expression(CIPolicy(dev_steps=("test",)), dev=True) == "false"


@pytest.mark.parametrize(
    ("environ", "dev"),
    [
        ({"CIRCLECI": "true", "CIRCLE_BRANCH": "try-dev"}, True),
        ({"CIRCLECI": "true", "CIRCLE_BRANCH": "main-dev"}, True),
        ({"CIRCLECI": "true", "CIRCLE_BRANCH": "main"}, False),
        ({"CIRCLECI": "true", "CIRCLE_BRANCH": "feature"}, False),
        ({"CIRCLECI": "true", "CIRCLE_TAG": "v1-dev"}, False),  # tags never push
        ({"CIRCLE_BRANCH": "try-dev"}, False),  # a person's shell, not a CircleCI job
    ],
)
def test_a_dev_branch_job_is_told_by_circlecis_own_variables(environ: dict[str, str], dev: bool) -> None:
    assert ci_identity.dev_branch_job(POLICY, environ) is dev


def test_the_context_restriction_for_each_environment() -> None:
    assert ci_identity.context_expression(POLICY, "prod") == (
        '(pipeline.git.branch == "main" or pipeline.git.branch == "master" or '
        'pipeline.git.tag ends-with "-prod") and not job.ssh.enabled'
    )
    assert ci_identity.context_expression(POLICY, "staging") == (
        '(pipeline.git.tag ends-with "-staging") and not job.ssh.enabled'
    )
    assert ci_identity.context_expression(POLICY, "qa") == "false"


CIRCLE = {"CIRCLECI": "true", "CIRCLE_SHA1": SHA}


@pytest.mark.parametrize(
    ("variables", "env", "allowed"),
    [
        ({"CIRCLE_BRANCH": "main"}, "prod", True),
        ({"CIRCLE_BRANCH": "feature-x"}, "prod", False),
        ({"CIRCLE_BRANCH": "main-dev"}, "prod", False),
        ({"CIRCLE_TAG": "v1-prod"}, "prod", True),
        ({"CIRCLE_TAG": "v1-staging"}, "prod", False),
        ({"CIRCLE_TAG": "v1-staging"}, "staging", True),
        ({"CIRCLE_BRANCH": "main"}, "staging", False),
        ({}, "prod", False),
        ({"CIRCLE_BRANCH": "bad..ref"}, "prod", False),
    ],
)
def test_in_circleci_only_the_mapped_environment_deploys(
    variables: dict[str, str], env: str, allowed: bool
) -> None:
    environ = {**CIRCLE, **variables}
    if allowed:
        ci_identity.require_ci_ref(POLICY, environ, env)
    else:
        with pytest.raises(ConfigError, match=f"--env {env}: "):
            ci_identity.require_ci_ref(POLICY, environ, env)


def test_outside_circleci_a_person_may_deploy_anything() -> None:
    """CIRCLE_BRANCH alone (a person's shell that has it set) is not a CircleCI job: the same
    branch that a job may not deploy from passes the check outside one."""
    outside = {"CIRCLE_BRANCH": "feature-x"}
    assert ci_identity.require_ci_ref(POLICY, outside, "prod") is None
    with pytest.raises(ConfigError, match="this CircleCI job runs for branch 'feature-x'"):
        ci_identity.require_ci_ref(POLICY, {**CIRCLE, **outside}, "prod")


def test_invoke_deploy_and_ci_refuse_in_a_feature_branch_job(
    run_task: Callable[..., Any], environ: dict[str, str]
) -> None:
    job = {**environ, **CIRCLE, "CIRCLE_BRANCH": "feature-x"}
    deploy = run_task("deploy", "--env", "prod", "--sha", SHA, "--no-smoke", env=job)
    assert deploy.returncode == 2, deploy.stderr
    assert deploy.stderr.strip() == (
        "error: --env prod: this CircleCI job runs for branch 'feature-x', which the CI policy maps to "
        "no environment; it may not deploy prod (`invoke plan --branch feature-x` shows the policy)"
    )
    ci = run_task("ci", "--branch", "main", env=job)  # a flag naming another ref changes nothing
    assert ci.returncode == 2, ci.stdout + ci.stderr
    assert "this CircleCI job runs for branch 'feature-x'" in ci.stderr
    assert "==> test" not in ci.stdout  # refused before the first step


# --- a -prod tag deploys only a commit on the mainline -------------------------------------------

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


def commit(root: Path, name: str) -> str:
    (root / name).write_text(name)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", name], cwd=root, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def clone(tmp_path: Path) -> tuple[Path, str, str]:
    """A CI job's clone of a repository whose main has one reviewed commit and whose
    feature branch has one more, unmerged: (clone, main's sha, the feature's sha)."""
    work, origin, ci = tmp_path / "work", tmp_path / "origin.git", tmp_path / "ci"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    shutil.copytree(ROOT / "hello_world", work / "hello_world", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "tasks.py", work / "tasks.py")
    (work / "pyproject.toml").write_text(
        '[tool.pipeline]\nservice_dir = "hello_world"\nbase_path = "/hello/"\n'
    )
    subprocess.run([*GIT, "init", "-q", "-b", "main", str(work)], check=True)
    reviewed = commit(work, "reviewed")
    subprocess.run([*GIT, "checkout", "-q", "-b", "feature"], cwd=work, check=True)
    unreviewed = commit(work, "unreviewed")
    subprocess.run([*GIT, "push", "-q", str(origin), "main", "feature"], cwd=work, check=True)
    subprocess.run(["git", "clone", "-q", "-b", "feature", str(origin), str(ci)], check=True)
    return ci, reviewed, unreviewed


def test_a_prod_tag_deploys_only_a_commit_on_the_mainline(clone: tuple[Path, str, str]) -> None:
    root, reviewed, unreviewed = clone
    job = {**CIRCLE, "CIRCLE_TAG": "v1-prod"}
    ci_identity.require_reviewed_commit(root, POLICY, job, "prod", reviewed)
    with pytest.raises(ConfigError) as info:
        ci_identity.require_reviewed_commit(root, POLICY, job, "prod", unreviewed)
    assert info.value.message == (
        f"--env prod: tag 'v1-prod' names {unreviewed[:12]}, which is not on main: only reviewed "
        "(merged) commits deploy prod; merge it, then tag the merge"
    )
    # Staging tags and jobs outside CircleCI are not held to the mainline.
    ci_identity.require_reviewed_commit(
        root, POLICY, {**CIRCLE, "CIRCLE_TAG": "v1-staging"}, "staging", unreviewed
    )
    ci_identity.require_reviewed_commit(root, POLICY, {"CIRCLE_TAG": "v1-prod"}, "prod", unreviewed)


def test_a_clone_without_the_mainline_fetches_it_and_without_origin_says_so(
    clone: tuple[Path, str, str],
) -> None:
    root, reviewed, unreviewed = clone
    job = {**CIRCLE, "CIRCLE_TAG": "v1-prod"}
    subprocess.run(["git", "update-ref", "-d", "refs/remotes/origin/main"], cwd=root, check=True)
    ci_identity.require_reviewed_commit(root, POLICY, job, "prod", reviewed)  # fetched origin's main itself
    with pytest.raises(ConfigError, match="which is not on main"):
        ci_identity.require_reviewed_commit(root, POLICY, job, "prod", unreviewed)
    subprocess.run(["git", "update-ref", "-d", "refs/remotes/origin/main"], cwd=root, check=True)
    subprocess.run(["git", "remote", "remove", "origin"], cwd=root, check=True)
    # A local branch named main proves nothing: any job can make one.
    subprocess.run(["git", "branch", "-f", "main", "HEAD"], cwd=root, check=True)
    with pytest.raises(ConfigError) as info:
        ci_identity.require_reviewed_commit(root, POLICY, job, "prod", reviewed)
    assert info.value.message == (
        f"--env prod: tag 'v1-prod' deploys prod only if {reviewed[:12]} is on a mainline branch, and none of "
        "origin/main, origin/master could be read (git fetch failed); check the clone's remote origin"
    )


def test_invoke_deploy_refuses_a_prod_tag_on_a_feature_commit(
    clone: tuple[Path, str, str],
    run_task: Callable[..., Any],
    environ: dict[str, str],
    aws_cli: Callable[..., Any],
) -> None:
    root, _, unreviewed = clone
    job = {**environ, **CIRCLE, "CIRCLE_SHA1": unreviewed, "CIRCLE_TAG": "v1-prod"}
    proc = run_task("deploy", "--env", "prod", "--sha", unreviewed, "--no-smoke", env=job, cwd=root)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (
        f"error: --env prod: tag 'v1-prod' names {unreviewed[:12]}, which is not on main: only reviewed "
        "(merged) commits deploy prod; merge it, then tag the merge"
    )
    family = f"{environ['AWS_RESOURCE_NAME_PREFIX']}-service"
    assert not aws_cli("ecs", "list-task-definitions", "--family-prefix", family)["taskDefinitionArns"]
