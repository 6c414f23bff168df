"""The CI policy (pipeline/plan.py) and `invoke plan`: tables of refs in, plans out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import config, git, plan
from pipeline.config import CIPolicy
from pipeline.errors import ConfigError
from pipeline.steps import STEP_NAMES

ROOT = Path(__file__).resolve().parent.parent
ALL = list(STEP_NAMES)

# The table: (kind, ref) -> (environment, steps) under the default policy.
DEFAULT_TABLE: list[tuple[str, str, str | None, list[str]]] = [
    ("branch", "main", "prod", ALL),
    ("branch", "master", "prod", ALL),
    ("branch", "feature/x", None, ["test", "build"]),
    ("branch", "release", None, ["test", "build"]),
    ("branch", "feature/x-dev", None, ["test", "build", "dockerize", "push"]),
    ("branch", "main-dev", None, ["test", "build", "dockerize", "push"]),
    ("branch", "x-staging", None, ["test", "build"]),  # suffixes for tags say nothing about branches
    ("branch", "maintenance", None, ["test", "build"]),  # mainline names match exactly
    ("tag", "v1.2.0-staging", "staging", ["deploy", "integration"]),
    ("tag", "v1.2.0-prod", "prod", ["deploy", "integration"]),
    ("tag", "v1.2.0", None, []),
    ("tag", "v1.2.0-dev", None, []),  # -dev is for branches
    ("tag", "main", None, []),  # a tag named like a mainline branch is still a tag
    ("tag", "v1.2.0-prod-rc1", None, []),
]


@pytest.mark.parametrize(("kind", "ref", "environment", "steps"), DEFAULT_TABLE)
def test_default_policy(kind: Any, ref: str, environment: str | None, steps: list[str]) -> None:
    result = plan.make(kind, ref, CIPolicy())
    assert (result.ref, result.kind, result.environment, list(result.steps)) == (
        ref,
        kind,
        environment,
        steps,
    )


def test_the_repository_policy_is_the_default() -> None:
    """This repository's pyproject.toml keeps the seed's flow (the CircleCI config relies on it)."""
    assert config.load_policy(ROOT) == CIPolicy()


CUSTOM_PROJECT = {
    "environments": {"eu": {}},
    "ci": {
        "mainline_branches": ["trunk"],
        "mainline_environment": "staging",
        "mainline_steps": ["deploy", "build", "test", "dockerize", "push"],  # order is the pipeline's
        "dev_suffix": "",
        "branch_steps": ["test"],
        "tag_environments": {"-live": "prod", "-eu-live": "eu"},
        "tag_steps": ["deploy"],
    },
}


@pytest.mark.parametrize(
    ("kind", "ref", "environment", "steps"),
    [
        ("branch", "trunk", "staging", ["test", "build", "dockerize", "push", "deploy"]),
        ("branch", "main", None, ["test"]),
        ("branch", "x-dev", None, ["test"]),  # an empty dev suffix turns dev branches off
        ("tag", "v2-live", "prod", ["deploy"]),
        ("tag", "v2-eu-live", "eu", ["deploy"]),  # the longest matching suffix wins
        ("tag", "v2-prod", None, []),
    ],
)
def test_configured_policy(kind: Any, ref: str, environment: str | None, steps: list[str]) -> None:
    result = plan.make(kind, ref, config.load_policy(ROOT, CUSTOM_PROJECT))
    assert (result.environment, list(result.steps)) == (environment, steps)


@pytest.mark.parametrize(
    ("ci", "environments", "expected"),
    [
        ({"mainline_steps": ["test", "deploi"]}, {}, "mainline_steps: unknown step 'deploi'"),
        ({"mainline_environment": "qa"}, {}, "mainline_environment: 'qa' is not an environment"),
        ({"tag_environments": {"-qa": "qa"}}, {}, "tag_environments '-qa': 'qa' is not an environment"),
        ({"tag_environments": {"-qa": "qa"}}, {"qa": {}}, None),
        ({"tag_environments": ["-prod"]}, {}, "tag_environments: must map a tag suffix"),
        ({"branch_steps": ["test", "deploy"]}, {}, "branch_steps: 'deploy' needs an environment"),
        ({"dev_steps": ["integration"]}, {}, "dev_steps: 'integration' needs an environment"),
        ({"mainline_environment": ""}, {}, "mainline_steps: 'deploy' needs an environment"),
        ({"mainline_environment": "", "mainline_steps": ["test"]}, {}, None),
        ({"tag_steps": ["dockerize", "push", "deploy"]}, {}, "tag_steps: 'dockerize' would rebuild"),
        ({"mainline_branches": ["ma in"]}, {}, "mainline_branches: 'ma in' is not a branch name"),
        ({"mainline_branches": "main"}, {}, "mainline_branches: must be a list of strings"),
        ({"dev_suffix": False}, {}, "dev_suffix: must be a string"),
        ({"deploy_on": "main"}, {}, "[tool.pipeline.ci] deploy_on: unknown setting"),
    ],
)
def test_policy_problems(ci: dict[str, Any], environments: dict[str, Any], expected: str | None) -> None:
    project = {"ci": ci, "environments": environments}
    if expected is None:
        config.load_policy(ROOT, project)
        return
    with pytest.raises(ConfigError) as err:
        config.load_policy(ROOT, project)
    assert expected in err.value.message
    assert "\n" not in err.value.message


def test_full_settings_report_policy_problems_with_the_rest() -> None:
    """config.load checks the policy with the same rules, every problem at once."""
    project = {"container_port": 0, "ci": {"tag_steps": ["deploi"], "mainline_environment": "qa"}}
    with pytest.raises(ConfigError) as err:
        config.load({"AWS_RESOURCE_NAME_PREFIX": "plan-test"}, ROOT, project)
    assert [p.split(":")[0] for p in err.value.problems] == [
        "[tool.pipeline] container_port",
        "[tool.pipeline.ci] tag_steps",
        "[tool.pipeline.ci] mainline_environment",
    ]


# Names git accepts or refuses; the oracle is git itself, not this list.
REF_NAMES = [
    "main", "feature/x-dev", "v1.2.0-prod", "a@b", "@", "HEAD", "-x", "", "a b", "a..b",
    "a.lock", "a/b.lock", "a.lock/b", "a/", "/a", "a//b", "a.", ".a", "a/.b", "a@{b",
    "a\\b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\tb", "a\x7fb", "ünïcode",
]  # fmt: skip


@pytest.fixture(scope="module")
def git_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with one commit, to ask git itself which tag names it takes."""
    repo = tmp_path_factory.mktemp("refs")
    for args in (
        ["init", "-q"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


@pytest.mark.parametrize("name", REF_NAMES)
def test_ref_names_follow_git(name: str, git_sandbox: Path, tmp_path: Path) -> None:
    branch_ok = subprocess.run(
        ["git", "check-ref-format", "--branch", name], cwd=tmp_path, capture_output=True
    )
    tag_ok = subprocess.run(["git", "tag", "--", name], cwd=git_sandbox, capture_output=True)
    subprocess.run(["git", "update-ref", "-d", f"refs/tags/{name}"], cwd=git_sandbox, capture_output=True)
    assert (git.ref_problem(name, "branch") is None) == (branch_ok.returncode == 0)
    assert (git.ref_problem(name, "tag") is None) == (tag_ok.returncode == 0)


def test_every_step_has_a_command() -> None:
    full = plan.Plan("main", "branch", "staging", STEP_NAMES, "")
    commands = {step.name: step.command for step in plan.step_commands(full, "abc1234")}
    assert commands == {
        "test": "invoke test",
        "build": "invoke build",
        "dockerize": "invoke dockerize --sha abc1234",
        "push": "invoke push --sha abc1234",
        "deploy": "invoke deploy --env staging --sha abc1234",
        "integration": "invoke integration --env staging",
    }


def test_a_deploy_without_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="need an environment"):
        plan.step_commands(plan.Plan("x", "branch", None, ("deploy",), ""))


# --- `invoke plan` through the real CLI ----------------------------------------------


def bare_env(environ: dict[str, str], **extra: str) -> dict[str, str]:
    """No AWS settings or credentials at all: `plan` must not need them."""
    keep = {k: v for k, v in environ.items() if not k.startswith(("AWS_", "CIRCLE_", "ECR_", "ECS_"))}
    return {**keep, "AWS_EC2_METADATA_DISABLED": "true", **extra}


@pytest.mark.parametrize(("kind", "ref", "environment", "steps"), DEFAULT_TABLE)
def test_invoke_plan_json(
    run_task: Any, environ: dict[str, str], kind: str, ref: str, environment: str | None, steps: list[str]
) -> None:
    proc = run_task("plan", f"--{kind}", ref, "--json", env=bare_env(environ))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"ref": ref, "kind": kind, "environment": environment, "steps": steps}


def test_invoke_plan_prints_each_steps_command(run_task: Any, environ: dict[str, str]) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    proc = run_task("plan", "--tag", "v1.2.0-staging", "--sha", sha, env=bare_env(environ))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:5] == [
        "ref:         v1.2.0-staging (tag): ends in -staging",
        "environment: staging",
        "steps:",
        f"  1. deploy       invoke deploy --env staging --sha {sha}",
        "  2. integration  invoke integration --env staging",
    ]
    assert f"image already in ECR for {sha} (build once, deploy many)" in lines[5]

    proc = run_task("plan", "--tag", "v1.2.0", env=bare_env(environ))
    assert proc.stdout.splitlines()[-1] == "steps:       none: CI does nothing for this tag"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"CIRCLE_BRANCH": "feature/x-dev"}, ("feature/x-dev", "branch")),
        ({"CIRCLE_TAG": "v1.2.0-prod"}, ("v1.2.0-prod", "tag")),
        # CircleCI sets both for a tag on a branch's commit: the tag decides.
        ({"CIRCLE_TAG": "v1.2.0-prod", "CIRCLE_BRANCH": "main"}, ("v1.2.0-prod", "tag")),
    ],
)
def test_invoke_plan_reads_circleci_variables(
    run_task: Any, environ: dict[str, str], variables: dict[str, str], expected: tuple[str, str]
) -> None:
    proc = run_task("plan", "--json", env=bare_env(environ, **variables))
    assert proc.returncode == 0, proc.stderr
    assert (json.loads(proc.stdout)["ref"], json.loads(proc.stdout)["kind"]) == expected


def test_invoke_plan_falls_back_to_git(run_task: Any, environ: dict[str, str]) -> None:
    def git(*args: str) -> str | None:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else None

    tag = git("describe", "--tags", "--exact-match", "HEAD")
    expected = ("tag", tag) if tag else ("branch", git("symbolic-ref", "--short", "-q", "HEAD"))
    proc = run_task("plan", "--json", env=bare_env(environ))
    assert proc.returncode == 0, proc.stderr
    assert (json.loads(proc.stdout)["kind"], json.loads(proc.stdout)["ref"]) == expected


@pytest.mark.parametrize(
    ("args", "variables", "message"),
    [
        (
            ["--branch", "main", "--tag", "v1-prod"],
            {},
            "error: --branch and --tag: give one of them, not both",
        ),
        (["--branch="], {}, "error: --branch '': not a valid branch name (it is empty)"),
        (["--tag", "v1..2-prod"], {}, "error: --tag 'v1..2-prod': not a valid tag name (it contains '..')"),
        (
            ["--branch", "feature x"],
            {},
            "error: --branch 'feature x': not a valid branch name (it contains a space)",
        ),
        (
            [],
            {"CIRCLE_BRANCH": "bad:name"},
            "error: CIRCLE_BRANCH 'bad:name': not a valid branch name (it contains ':')",
        ),
        (["--branch", "main", "--sha", "nothex"], {}, "error: --sha 'nothex': not a commit id"),
    ],
)
def test_invoke_plan_bad_input(
    run_task: Any, environ: dict[str, str], args: list[str], variables: dict[str, str], message: str
) -> None:
    proc = run_task("plan", *args, env=bare_env(environ, **variables))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(message), proc.stderr


def run_in_project(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """tasks.py copied into another project, as its docstring says a service repository does."""
    shutil.copy(ROOT / "tasks.py", project / "tasks.py")
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=project,
        env={**env, "PYTHONPATH": pythonpath},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            '[tool.pipeline.ci]\nmainline_steps = ["test", "dockerise"]\n',
            "mainline_steps: unknown step 'dockerise'",
        ),
        (
            '[tool.pipeline.ci]\ntag_environments = {"-qa" = "qa"}\n',
            "tag_environments '-qa': 'qa' is not an environment",
        ),
        (
            '[tool.pipeline.ci]\nmainline_environment = "production"\n',
            "mainline_environment: 'production' is not an environment",
        ),
    ],
)
def test_invoke_plan_refuses_a_bad_project_policy(
    tmp_path: Path, environ: dict[str, str], section: str, message: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(section)
    proc = run_in_project(tmp_path, "plan", "--branch", "main", env=bare_env(environ))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_invoke_plan_in_another_project_uses_its_policy(tmp_path: Path, environ: dict[str, str]) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pipeline.ci]\nmainline_branches = ["trunk"]\ntag_environments = {"-live" = "prod"}\n'
    )
    for args, expected in [
        (["--branch", "trunk"], {"ref": "trunk", "kind": "branch", "environment": "prod", "steps": ALL}),
        (
            ["--branch", "main"],
            {"ref": "main", "kind": "branch", "environment": None, "steps": ["test", "build"]},
        ),
        (
            ["--tag", "v3-live"],
            {"ref": "v3-live", "kind": "tag", "environment": "prod", "steps": ["deploy", "integration"]},
        ),
        (["--tag", "v3-prod"], {"ref": "v3-prod", "kind": "tag", "environment": None, "steps": []}),
    ]:
        proc = run_in_project(tmp_path, "plan", *args, "--json", env=bare_env(environ))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == expected
