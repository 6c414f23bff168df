""".circleci/config.yml: valid for CircleCI, and the same flow as the CI policy.

CircleCI itself can't run here, so `circleci_jobs` below evaluates the config's workflow
filters the way CircleCI documents them, and the tests hold its answer for each ref to
what pipeline/plan.py plans: the same steps, through the same `invoke` commands, in order.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import config, plan
from tests.helpers import ROOT, invoke

CONFIG = ROOT / ".circleci" / "config.yml"
SETUP_COMMANDS = {"install", "aws-credentials"}  # reusable commands: plumbing, never a step
# Steps that touch AWS: their jobs need the credentials, and so a context.
AWS_STEPS = {"push", "deploy", "integration"}


@pytest.fixture(scope="module")
def circleci() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


# --- a small, faithful model of CircleCI's workflow filters -------------------------


@dataclass(frozen=True)
class Job:
    """One job of a workflow as it would run: its name, run commands and contexts."""

    workflow: str
    name: str
    requires: tuple[str, ...]
    filters: dict[str, Any]
    context: tuple[str, ...]
    own_commands: tuple[str, ...]  # the job's own `run` steps
    commands: tuple[str, ...]  # every `run` command, reusable commands expanded


def _patterns(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, ref: str) -> bool:
    """/regex/ must match the whole name; anything else is an exact name."""
    if len(pattern) > 1 and pattern.startswith("/") and pattern.endswith("/"):
        return re.fullmatch(pattern[1:-1], ref) is not None
    return pattern == ref


def _passes(rule: dict[str, Any], ref: str) -> bool:
    """`only` is considered before `ignore`."""
    if "only" in rule and not any(_matches(p, ref) for p in _patterns(rule["only"])):
        return False
    return not ("ignore" in rule and any(_matches(p, ref) for p in _patterns(rule["ignore"])))


def filters_pass(filters: dict[str, Any], kind: str, ref: str) -> bool:
    """Branches: no filter runs every branch. Tags: no `only`/`ignore` runs no tag."""
    if kind == "branch":
        return _passes(filters.get("branches") or {}, ref)
    rule = filters.get("tags") or {}
    return bool(rule) and _passes(rule, ref)


def _substitute(text: str, params: dict[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        assert match[1] in params, f"<< parameters.{match[1]} >> has no value"
        return str(params[match[1]])

    return re.sub(r"<<\s*parameters\.([\w-]+)\s*>>", value, text)


def _run_commands(steps: list[Any], cfg: dict[str, Any], params: dict[str, Any]) -> list[str]:
    commands: list[str] = []
    for step in steps:
        name, args = (step, {}) if isinstance(step, str) else next(iter(step.items()))
        if name == "run":
            commands.append(_substitute(args if isinstance(args, str) else args["command"], params))
        elif name in cfg.get("commands", {}):
            commands += _run_commands(cfg["commands"][name]["steps"], cfg, params)
    return commands


def workflow_jobs(cfg: dict[str, Any]) -> list[Job]:
    jobs: list[Job] = []
    for workflow, body in cfg["workflows"].items():
        # Anything the model does not understand must stop the test, not be ignored.
        assert set(body) <= {"jobs"}, f"workflow {workflow}: {set(body) - {'jobs'}} not modelled"
        for entry in body["jobs"]:
            key, args = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
            args = args or {}
            assert set(args) <= {"name", "requires", "filters", "context"} | set(
                cfg["jobs"][key].get("parameters", {})
            ), f"{workflow}/{key}: keys not modelled"
            assert isinstance(args.get("filters", {}), dict), "expression filters are not modelled"
            definition = cfg["jobs"][key]
            params = {k: v.get("default") for k, v in definition.get("parameters", {}).items()}
            params |= {k: v for k, v in args.items() if k in params}
            own = [s["run"] for s in definition["steps"] if isinstance(s, dict) and "run" in s]
            jobs.append(
                Job(
                    workflow=workflow,
                    name=args.get("name", key),
                    requires=tuple(args.get("requires", ())),
                    filters=args.get("filters", {}),
                    context=tuple(_patterns(args.get("context", []))),
                    own_commands=tuple(
                        _substitute(r if isinstance(r, str) else r["command"], params) for r in own
                    ),
                    commands=tuple(_run_commands(definition["steps"], cfg, params)),
                )
            )
    return jobs


def circleci_jobs(cfg: dict[str, Any], kind: str, ref: str) -> list[Job]:
    """The jobs CircleCI runs for a push of this branch or tag, each after what it requires."""
    jobs = workflow_jobs(cfg)
    return [
        job
        for workflow in cfg["workflows"]
        for job in _run_workflow({j.name: j for j in jobs if j.workflow == workflow}, kind, ref)
    ]


def _run_workflow(jobs: dict[str, Job], kind: str, ref: str) -> list[Job]:
    """A job runs when its filters pass and, if it requires jobs, when at least one of them
    runs (CircleCI drops filtered-out requirements; `test_requirements_hold` forbids
    relying on that)."""
    memo: dict[str, bool] = {}

    def runs(name: str, seen: tuple[str, ...] = ()) -> bool:
        assert name in jobs, f"requires {name!r}, which is not in the workflow"
        assert name not in seen, f"requires cycle {seen}"
        if name not in memo:
            job = jobs[name]
            memo[name] = filters_pass(job.filters, kind, ref) and (
                not job.requires or any(runs(r, (*seen, name)) for r in job.requires)
            )
        return memo[name]

    running = [j for j in jobs.values() if runs(j.name)]
    ordered: list[Job] = []
    while running:
        names = {j.name for j in running}
        job = next(j for j in running if not names & set(j.requires))
        ordered.append(job)
        running.remove(job)
    return ordered


def _argv(command: str) -> tuple[str, ...]:
    return tuple(shlex.split(command))


# --- the tests ----------------------------------------------------------------------

REFS = [
    ("branch", "main"),
    ("branch", "master"),
    ("branch", "feature/x"),
    ("branch", "feature/x-dev"),
    ("branch", "release"),
    ("branch", "main-dev"),
    ("branch", "x-staging"),
    ("tag", "v1.2.0-staging"),
    ("tag", "v1.2.0-prod"),
    ("tag", "v1.2.0"),
    ("tag", "main"),
    ("tag", "v1.2.0-prod-rc1"),
]


def test_config_matches_circleci_schema(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["check-jsonschema", "--builtin-schema", "vendor.circle-ci", str(CONFIG)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # The same check refuses a config CircleCI would refuse, so passing means something.
    broken = tmp_path / "config.yml"
    broken.write_text(
        CONFIG.read_text().replace("          command: invoke test\n", "          commands: invoke test\n")
    )
    proc = subprocess.run(
        ["check-jsonschema", "--builtin-schema", "vendor.circle-ci", str(broken)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0


@pytest.mark.parametrize(("kind", "ref"), REFS)
def test_circleci_runs_what_the_policy_plans(circleci: dict[str, Any], kind: Any, ref: str) -> None:
    planned = plan.make(kind, ref, config.load_policy(ROOT))
    expected = [step.argv for step in plan.step_commands(planned, plan.SHA_PLACEHOLDER)]
    jobs = circleci_jobs(circleci, kind, ref)
    ran = [_argv(c) for job in jobs for c in job.commands if c.startswith("invoke ")]
    assert ran == expected, f"{kind} {ref}: CircleCI runs {[' '.join(a) for a in ran]}"


@pytest.mark.parametrize(("kind", "ref"), REFS)
def test_requirements_hold(circleci: dict[str, Any], kind: Any, ref: str) -> None:
    """Whatever runs for a ref runs as one chain: each job after the required one before it,
    and never without a job it requires (CircleCI would quietly run it without)."""
    jobs = circleci_jobs(circleci, kind, ref)
    names = {j.name for j in jobs}
    for job in jobs:
        assert set(job.requires) <= names, (
            f"{kind} {ref}: {job.name} runs without {set(job.requires) - names}"
        )
    for before, after in zip(jobs, jobs[1:], strict=False):
        assert after.requires == (before.name,), f"{kind} {ref}: {after.name} does not wait for {before.name}"


def test_jobs_hold_no_logic_of_their_own(circleci: dict[str, Any]) -> None:
    for job in workflow_jobs(circleci):
        for command in job.own_commands:
            assert command.startswith("invoke ") and "\n" not in command.strip(), f"{job.name}: {command!r}"
        # Reusable commands are set-up only: every step command is the job's own.
        assert [c for c in job.commands if c.startswith("invoke")] == list(job.own_commands)
    assert set(circleci["commands"]) == SETUP_COMMANDS


def aws_access_problems(cfg: dict[str, Any], kind: str, ref: str, binary: str = "invoke") -> list[str]:
    """Where a config breaks the CI identity policy for a ref (README, "CI identity"): jobs that
    push or deploy get credentials from the V2 OIDC token (its subject names the ref, which
    the deploy roles require); deploy jobs get their environment's own context (its deploy
    role), never the push role's `aws`; push jobs get `aws`; jobs any branch can trigger
    get no context, so no secret reaches an unreviewed branch."""
    problems = []
    for job in circleci_jobs(cfg, kind, ref):
        argvs = [_argv(c) for c in job.own_commands if c.startswith(f"{binary} ")]
        steps = {argv[1] for argv in argvs}
        credentials = [c for c in job.commands if "assume-role-with-web-identity" in c]
        if steps & AWS_STEPS:
            deploys = [argv for argv in argvs if argv[1] == "deploy"]
            # -dev branches push with their own role (into <repository>-dev), never the mainline's.
            push = "aws-dev" if kind == "branch" and ref.endswith("-dev") else "aws"
            wanted = {f"aws-{argv[argv.index('--env') + 1]}" for argv in deploys} or {push}
            if not wanted <= set(job.context):
                problems.append(f"{job.name}: contexts {job.context}, needs {sorted(wanted)}")
            if deploys and {"aws", "aws-dev"} & set(job.context):
                problems.append(f"{job.name}: a deploy job with a push role's context")
            if ({"aws", "aws-dev"} - {push}) & set(job.context):
                problems.append(f"{job.name}: the other push role's context for {kind} {ref}")
            if not credentials or not all(
                "$CIRCLE_OIDC_TOKEN_V2" in c or "${CIRCLE_OIDC_TOKEN_V2" in c for c in credentials
            ):
                problems.append(f"{job.name}: no credentials from the V2 OIDC token")
        elif job.context or credentials:
            problems.append(f"{job.name}: contexts or credentials for a job that needs no AWS")
    return problems


@pytest.mark.parametrize(("kind", "ref"), REFS)
def test_aws_access_only_where_a_step_needs_it(circleci: dict[str, Any], kind: Any, ref: str) -> None:
    assert aws_access_problems(circleci, kind, ref) == []


def test_the_access_check_catches_a_deploy_with_the_push_context(circleci: dict[str, Any]) -> None:
    broken = yaml.safe_load(CONFIG.read_text().replace("- aws-prod  #", "- aws  #"))
    assert aws_access_problems(broken, "branch", "main") == [
        "deploy-prod: contexts ('aws', 'honeycomb'), needs ['aws-prod']",
        "deploy-prod: a deploy job with a push role's context",
    ]
    v1 = yaml.safe_load(
        CONFIG.read_text().replace("${CIRCLE_OIDC_TOKEN_V2:-$CIRCLE_OIDC_TOKEN}", "$CIRCLE_OIDC_TOKEN")
    )
    assert "deploy-prod: no credentials from the V2 OIDC token" in aws_access_problems(v1, "branch", "main")


def test_tag_jobs_ignore_branches(circleci: dict[str, Any]) -> None:
    """A job with tag filters runs for branches too unless it ignores them."""
    for job in workflow_jobs(circleci):
        if job.filters.get("tags"):
            assert job.filters.get("branches") == {"ignore": "/.*/"}, job.name


def test_commands_are_real_tasks_with_real_flags(circleci: dict[str, Any]) -> None:
    """Each `invoke` command in the config names a task and flags tasks.py defines."""
    listing = invoke("--list", "--list-format=json")
    tasks = {t["name"] for t in json.loads(listing.stdout)["tasks"]}
    used = {_argv(c) for job in workflow_jobs(circleci) for c in job.own_commands}
    for argv in sorted(used):
        assert argv[1] in tasks, f"{' '.join(argv)}: no task {argv[1]!r}"
        helptext = invoke("--help", argv[1]).stdout
        for flag in (a for a in argv[2:] if a.startswith("--")):
            assert re.search(rf"{flag}[=\s]", helptext), f"{' '.join(argv)}: {argv[1]} has no {flag}"


# --- the OIDC credentials step, run for real against the emulator's STS -------------


@pytest.fixture
def credentials_script(circleci: dict[str, Any]) -> str:
    (step,) = circleci["commands"]["aws-credentials"]["steps"]
    return str(step["run"]["command"])


@pytest.fixture
def run_step(environ: dict[str, str], tmp_path: Path, credentials_script: str) -> Callable[..., Any]:
    """Run the step as CircleCI does (bash -eo pipefail, a $BASH_ENV for later steps)."""

    def run(**variables: str) -> tuple[subprocess.CompletedProcess[str], Path]:
        bash_env = tmp_path / "bash_env"
        bash_env.write_text("")
        env = {k: v for k, v in environ.items() if k not in {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}}
        env |= {"BASH_ENV": str(bash_env), "CIRCLE_BUILD_NUM": "42", **variables}
        proc = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", credentials_script], env=env, capture_output=True, text=True
        )
        return proc, bash_env

    return run


def test_oidc_token_becomes_short_lived_keys(
    run_step: Callable[..., Any], aws: Callable[[str], Any], prefix: str, environ: dict[str, str]
) -> None:
    role = aws("iam").create_role(
        RoleName=f"{prefix}-circleci",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    proc, bash_env = run_step(AWS_ROLE_ARN=role, CIRCLE_OIDC_TOKEN="header.payload.signature")
    assert proc.returncode == 0, proc.stderr
    exported = bash_env.read_text()
    assert set(re.findall(r"^export (AWS_\w+)=\S+$", exported, re.M)) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    }
    keys = dict(re.findall(r"^export (AWS_\w+)=(\S+)$", exported, re.M))
    assert not any(value in proc.stdout + proc.stderr for value in keys.values())

    # A later step sources $BASH_ENV; the real aws CLI then acts as the assumed role.
    identity = subprocess.run(
        ["bash", "-c", f"source {bash_env} && aws sts get-caller-identity --output json"],
        env={k: v for k, v in environ.items() if k not in {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}},
        capture_output=True,
        text=True,
    )
    assert identity.returncode == 0, identity.stderr
    assert f"assumed-role/{prefix}-circleci/" in json.loads(identity.stdout)["Arn"]


def test_long_lived_keys_are_the_fallback(run_step: Callable[..., Any]) -> None:
    proc, bash_env = run_step(AWS_ACCESS_KEY_ID="AKIAFALLBACK", AWS_SECRET_ACCESS_KEY="secret")
    assert proc.returncode == 0
    assert proc.stderr.startswith("warning: using the context's long-lived AWS keys")
    assert bash_env.read_text() == ""


def test_no_aws_access_is_one_clear_error(run_step: Callable[..., Any]) -> None:
    proc, bash_env = run_step()
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: no AWS access: set AWS_ROLE_ARN")
    assert bash_env.read_text() == ""


def test_a_failed_sts_call_stops_the_job(run_step: Callable[..., Any]) -> None:
    """When STS refuses (here: no token, no valid role), `bash -e` ends the step before any export."""
    proc, bash_env = run_step(AWS_ROLE_ARN="not-an-arn", CIRCLE_OIDC_TOKEN="")
    assert proc.returncode != 0
    assert bash_env.read_text() == ""
