"""Prod credentials only for prod refs: the refs each environment's deploy role trusts,
the CircleCI context restriction `invoke setup` prints, and the tool's own refusal to
deploy an environment the CI policy does not map to the job's ref (defence in depth)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipeline import ci_identity
from pipeline.config import CIPolicy
from pipeline.errors import ConfigError

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
