"""Inputs that reach IAM are validated by what they become, and setup prints the trust
policy IAM holds: the trust-injection attack of issue 19 replayed on the emulator's IAM
through real `invoke` processes, checked with the real aws CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline import ci_identity, config
from pipeline.errors import ConfigError
from tests.helpers import ROOT, put_image_record
from tests.infra_fixtures import BASE, ORG, PROJECT

Aws = Callable[[str], Any]


def load(**project: Any) -> config.Settings:
    return config.load(BASE, ROOT, {**config.read_project_file(ROOT), **project})


def problems(**project: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(**project)
    return info.value.problems


@pytest.mark.parametrize(
    "url",
    [
        f"https://github.com/example/app,org/{ORG}/project/{PROJECT}/user/*,",  # the issue's injection
        'https://github.com/example/app", "org/*',
        "https://github.com/example/*",
        "https://github.com/example/app?x=1",
        "https://user:pw@github.com/example/app",
        "https://github.com:443/example/app",
        "https://github.com/example",  # no repository
        "https://github.com/../app",
        "ftp://github.com/example/app",
        "https://github.com/example/app name",
    ],
)
def test_a_source_url_that_could_widen_a_trust_policy_is_refused(url: str) -> None:
    [problem] = problems(source_url=url)
    assert problem.startswith(f"[tool.pipeline] source_url: {url!r} must be the repository's https URL")


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/example/app",
        "https://github.com/example/app.git",
        "github.com/example/app/",
        "https://gitlab.com/group/sub-group/app",
        "git@github.com:example/app.git",
        "",
    ],
)
def test_real_repository_urls_are_accepted(url: str) -> None:
    assert load(source_url=url).source_url == url


@pytest.mark.parametrize(
    ("ci", "setting"),
    [
        ({"mainline_branches": ['main",']}, "mainline_branches"),
        ({"mainline_branches": ["main,x"]}, "mainline_branches"),
        ({"tag_environments": {"*": "prod"}}, "tag_environments"),
        ({"tag_environments": {'-prod"': "prod"}}, "tag_environments"),
        ({"tag_environments": {"-prod,refs/heads/x": "prod"}}, "tag_environments"),
        ({"tag_environments": {"a/-prod": "prod"}}, "tag_environments"),
        ({"dev_suffix": "*"}, "dev_suffix"),
    ],
)
def test_branch_and_tag_patterns_that_could_widen_a_trust_policy_are_refused(
    ci: dict[str, Any], setting: str
) -> None:
    found = problems(ci=ci)
    assert any(p.startswith(f"[tool.pipeline.ci] {setting}: ") for p in found), found
    assert any("no comma, quote" in p for p in found), found


@pytest.mark.parametrize(
    ("infra", "setting"),
    [
        ({"circleci_org_id": f"{ORG}/project/*", "circleci_project_id": PROJECT}, "circleci_org_id"),
        ({"circleci_org_id": ORG, "circleci_project_id": "*"}, "circleci_project_id"),
    ],
)
def test_ids_that_could_widen_a_trust_policy_are_refused(infra: dict[str, Any], setting: str) -> None:
    [problem] = problems(infra=infra)
    assert problem.startswith(f"[tool.pipeline.infra] {setting}: ")


@pytest.mark.parametrize("role", ["*", "arn:aws:iam::123456789012:role/*", "a,b"])
def test_an_execution_role_that_would_pass_any_role_is_refused(role: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load({**BASE, "EXECUTION_ROLE_ARN": role}, ROOT)
    [problem] = info.value.problems
    assert problem.startswith(f"EXECUTION_ROLE_ARN: {role!r} must be an IAM role ARN")


def test_a_subject_widened_past_the_settings_checks_never_reaches_iam() -> None:
    """Defence in depth: the rendered subjects are checked themselves (settings made in code)."""
    settings = load(infra={"circleci_org_id": ORG, "circleci_project_id": PROJECT})
    widened = replace(settings, source_url="https://github.com/example/app/vcs-ref/*")
    with pytest.raises(ConfigError, match="the prod deploy role would trust '.*/vcs-ref/\\*/vcs-ref/"):
        ci_identity.deploy_role_parameters(widened, "prod")
    assert ci_identity.deploy_role_parameters(settings, "prod")["CiTrustedSubjects"].count(",") == 2


# --- on the emulator's IAM, through real processes -----------------------------------------------


@pytest.fixture
def circleci(aws: Aws) -> Iterator[dict[str, str]]:
    """CircleCI's OIDC provider for an organization of this test's own."""
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    arn = aws("iam").create_open_id_connect_provider(
        Url=f"https://oidc.circleci.com/org/{org}", ClientIDList=[org], ThumbprintList=["9" * 40]
    )["OpenIDConnectProviderArn"]
    yield {"org": org, "project": project}
    aws("iam").delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)


def oidc_project(root: Path, circleci: dict[str, str], source_url: str) -> Path:
    """A service repository (hello_world's layout) whose CI identity is CircleCI's OIDC."""
    shutil.copytree(ROOT / "hello_world", root / "hello_world", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "tasks.py", root / "tasks.py")
    (root / "pyproject.toml").write_text(
        "[tool.pipeline]\n"
        'service_dir = "hello_world"\n'
        'base_path = "/hello/"\n'
        f"source_url = {json.dumps(source_url)}\n"
        "[tool.pipeline.infra]\n"
        f'circleci_org_id = "{circleci["org"]}"\n'
        f'circleci_project_id = "{circleci["project"]}"\n'
    )
    return root


def printed_trust(stdout: str, role: str) -> Any:
    [line] = [line for line in stdout.splitlines() if line.startswith(f"  trust policy of {role}: ")]
    return json.loads(line.split(": ", 1)[1])


def test_the_issues_trust_injection_is_refused_before_anything_exists(
    tmp_path: Path,
    circleci: dict[str, str],
    run_task: Callable[..., subprocess.CompletedProcess[str]],
    aws_cli: Callable[..., Any],
    prefix: str,
) -> None:
    url = f"https://github.com/example/app,org/{circleci['org']}/project/{circleci['project']}/user/*,"
    root = oidc_project(tmp_path, circleci, url)
    setup = run_task("setup", "--env", "prod", cwd=root)
    assert setup.returncode == 2, setup.stdout + setup.stderr
    assert setup.stderr.strip().startswith(f"error: [tool.pipeline] source_url: {url!r} must be")
    assert "Traceback" not in setup.stderr and "==> stack" not in setup.stdout
    roles = {r["RoleName"] for r in aws_cli("iam", "list-roles")["Roles"]}
    assert not {f"{prefix}-ci", f"{prefix}-deploy-prod"} & roles
    stacks = aws_cli("cloudformation", "list-stacks")["StackSummaries"]
    assert not [s for s in stacks if s["StackName"].startswith(prefix)]


@pytest.mark.heavy
def test_setup_prints_the_trust_policies_iam_holds_for_each_environment(
    tmp_path: Path,
    circleci: dict[str, str],
    run_task: Callable[..., subprocess.CompletedProcess[str]],
    aws_cli: Callable[..., Any],
    aws: Aws,
    prefix: str,
) -> None:
    root = oidc_project(tmp_path, circleci, "https://github.com/example/app")
    project = run_task("setup", cwd=root)
    assert project.returncode == 0, project.stderr
    put_image_record(aws, prefix, "abc1234")
    for env in ("prod", "staging"):
        done = run_task("setup", "--env", env, cwd=root)
        assert done.returncode == 0, done.stderr
        for role in (f"{prefix}-deploy-{env}", f"{prefix}-ci", f"{prefix}-ci-dev"):
            held = aws_cli("iam", "get-role", "--role-name", role)["Role"]["AssumeRolePolicyDocument"]
            assert printed_trust(done.stdout, role) == held, role
        # Each push role's context, with the restriction that keeps it to its own branches.
        for context, arn, expression in (
            ("aws", f"{prefix}-ci", '(pipeline.git.branch == "main" or pipeline.git.branch == "master")'),
            ("aws-dev", f"{prefix}-ci-dev", '(pipeline.git.branch ends-with "-dev")'),
        ):
            assert (
                f"CircleCI: context {context} holds AWS_ROLE_ARN=arn:aws:iam::123456789012:role/{arn}\n"
                in done.stdout
            )
            assert f"\n  {expression} and not job.ssh.enabled\n" in done.stdout
        held = aws_cli("iam", "get-role", "--role-name", f"{prefix}-deploy-{env}")["Role"]
        [statement] = held["AssumeRolePolicyDocument"]["Statement"]
        subjects = statement["Condition"]["StringLike"][f"oidc.circleci.com/org/{circleci['org']}:sub"]
        subjects = subjects if isinstance(subjects, list) else [subjects]
        origin = f"org/{circleci['org']}/project/{circleci['project']}/user/{'?' * 36}/vcs-origin/github.com/example/app/vcs-ref/"
        expected = (
            ["refs/heads/main", "refs/heads/master", "refs/tags/*-prod"]
            if env == "prod"
            else ["refs/tags/*-staging"]
        )
        assert subjects == [origin + ref for ref in expected]
        for subject in subjects:  # the lines above the JSON name each subject IAM holds
            assert f"\n    {subject}\n" in done.stdout
