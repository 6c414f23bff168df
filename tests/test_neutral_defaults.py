"""No service's values in the library: a project that configures nothing gets neutral
defaults, steps with no command say "skipped", integration is left out of the plan, the
local stack names no resource prefix, and hints name only flags the task has."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline import ci, config, plan, smoke, stack, verbs
from pipeline.clients import Clients
from pipeline.config import CIPolicy, SmokeSettings
from pipeline.context import Context
from pipeline.errors import NotFound, StepFailed
from pipeline.git import Revision
from pipeline.output import Output
from tests.helpers import free_port

SHA = "a" * 40
BASE = {"AWS_RESOURCE_NAME_PREFIX": "greeter", "AWS_DEFAULT_REGION": "eu-west-1"}


def context(root: Path, project: dict[str, Any] | None = None) -> Context:
    settings = config.load(BASE, root, project or {})
    return Context(settings, Clients(region=settings.region), Output(stream=io.StringIO()), dict(os.environ))


def test_the_defaults_name_no_service(tmp_path: Path) -> None:
    s = config.load(BASE, tmp_path, {})
    assert (s.service_dir, s.dockerfile) == (tmp_path / ".", tmp_path / "." / "Dockerfile")
    assert (s.build_command, s.test_command, s.integration_command, s.serve_command) == ("", "", "", "")
    assert (s.base_path, s.smoke.text, s.smoke.status) == ("/", "", 200)
    assert "hello" not in repr(s).lower()


def test_a_step_without_a_command_is_skipped_never_ok(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    for name, run in (("build", verbs.build), ("test", verbs.test)):
        with ctx.out.step(name):
            run(ctx)
    log = ctx.out.stream.getvalue()
    assert [(s.name, s.status) for s in ctx.out.steps] == [("build", "skipped"), ("test", "skipped")]
    assert "skipped: no build_command in [tool.pipeline]" in log
    assert "<== build: skipped" in log and "ok" not in log


def test_a_failing_command_fails_its_step(tmp_path: Path) -> None:
    ctx = context(tmp_path, {"build_command": "exit 7"})
    with pytest.raises(StepFailed, match=r"build failed \(exit 7\): exit 7"), ctx.out.step("build"):
        verbs.build(ctx)
    assert [(s.name, s.status) for s in ctx.out.steps] == [("build", "failed")]


def test_the_ci_summary_says_skipped(tmp_path: Path) -> None:
    ctx = context(tmp_path, {"test_command": "true"})
    ci.run(ctx, plan.make("branch", "feature/x", CIPolicy()), Revision(SHA), ci.Options())
    log = ctx.out.stream.getvalue()
    rows = [line.split()[:2] for line in log[log.index("ci branch feature/x") :].splitlines()[2:]]
    assert rows == [["test", "ok"], ["build", "skipped"], ["total", "passed"]]


def test_without_integration_command_the_plan_leaves_integration_out(tmp_path: Path) -> None:
    policy = config.load_policy(tmp_path, {})
    mainline = plan.make("branch", "main", policy)
    assert mainline.steps == ("test", "build", "dockerize", "push", "deploy")
    assert plan.make("tag", "v1-prod", policy).steps == ("deploy",)
    lines = plan.describe(mainline, SHA)
    assert "left out:    integration (no integration_command in [tool.pipeline])" in lines
    assert not any("invoke integration" in line for line in lines)
    # The full settings agree with the plan-only policy.
    assert config.load(BASE, tmp_path, {}).ci == policy
    with_tests = config.load_policy(tmp_path, {"integration_command": "pytest integration"})
    assert plan.make("branch", "main", with_tests).steps[-1] == "integration"


def test_invoke_ci_leaves_integration_out_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "taskdef.json").write_text('{"containerDefinitions": []}')
    ctx = context(tmp_path)
    policy = replace(ctx.settings.ci, tag_steps=("integration",))
    the_plan = plan.make("tag", "v1-prod", policy)
    assert (the_plan.steps, the_plan.left_out) == (
        (),
        (("integration", "no integration_command in [tool.pipeline]"),),
    )
    assert ci.run(ctx, the_plan, Revision(SHA), ci.Options()) == []
    log = ctx.out.stream.getvalue()
    assert "nothing to do for tag v1-prod" in log
    assert "  left out: integration (no integration_command in [tool.pipeline])" in log


def test_invoke_plan_shows_integration_left_out(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pipeline]\ncontainer_port = 9000\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CIRCLE_"))}
    proc = subprocess.run(
        [sys.executable, "-c", "from pipeline.cli import main; main()", "plan", "--branch", "main"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "left out:    integration (no integration_command in [tool.pipeline])" in proc.stdout
    assert "5. deploy" in proc.stdout and "6." not in proc.stdout


def test_the_local_stack_sets_no_resource_prefix() -> None:
    cfg = stack.config_from({"PIPELINE_STACK_DIR": "/nonexistent"})
    assert "AWS_RESOURCE_NAME_PREFIX" not in stack.env(cfg)


@pytest.mark.parametrize(
    ("pyproject", "dirname", "expected"),
    [
        ('[project]\nname = "Greeter_Service"\n', "x", "greeter-service"),
        ("[tool.pipeline]\n", "My Shop", "my-shop"),
        ("not toml [", "a", "service"),
    ],
)
def test_a_prefix_is_derived_from_the_projects_name(
    tmp_path: Path, pyproject: str, dirname: str, expected: str
) -> None:
    root = tmp_path / dirname
    root.mkdir()
    (root / "pyproject.toml").write_text(pyproject)
    assert config.name_from_project(root) == expected


def test_smoke_checks_the_text_only_where_configured() -> None:
    answer = smoke.Probe(200, 0.01, "hi there")
    assert answer.passes(SmokeSettings())
    assert not answer.passes(SmokeSettings(text="Hello World!"))
    assert not smoke.Probe(503, 0.01, "hi").passes(SmokeSettings())
    assert answer.passes(SmokeSettings(status=200, text="hi"))


def test_a_failed_smoke_test_without_text_names_only_the_status() -> None:
    port = free_port()  # nothing listens: no answer
    with pytest.raises(StepFailed) as info:
        smoke.check(f"http://127.0.0.1:{port}/", SmokeSettings(timeout=0.01), lambda _: None, lambda _: None)
    assert "expected HTTP 200, got no answer" in info.value.message


@pytest.mark.parametrize(
    ("instead", "flags"),
    [("pass --url URL", ["--url"]), ("pass --smoke-url URL (or --no-smoke)", ["--smoke-url", "--no-smoke"])],
)
def test_hints_name_flags_the_task_has(tmp_path: Path, instead: str, flags: list[str]) -> None:
    settings = config.load(BASE, tmp_path, {})

    class NoBalancer:
        exceptions = type("Exceptions", (), {"ClusterNotFoundException": type("Gone", (Exception,), {})})

        def describe_services(self, **_: Any) -> dict[str, Any]:
            return {"services": [{"serviceName": "greeter-service", "status": "ACTIVE", "loadBalancers": []}]}

    clients = Clients(region="eu-west-1", aws_factory=lambda service, **_: NoBalancer())
    with pytest.raises(NotFound) as info:
        smoke.discover_url(settings, settings.environment("prod"), clients, instead)
    message = info.value.message
    assert instead in message and "invoke setup --env prod" in message
    named = {word.strip("(),;") for word in message.split() if word.startswith(("--", "(--"))}
    assert named - {"--env"} == set(flags)


def test_deploy_help_has_the_flags_its_hint_names() -> None:
    from pipeline.tasks import ns

    deploy_flags = {f"--{name.replace('_', '-')}" for name in ns["deploy"].help}
    assert {"--smoke-url", "--no-smoke"} <= deploy_flags
    assert "--url" in {f"--{name}" for name in ns["smoke"].help}
    assert "--base-url" in {f"--{name.replace('_', '-')}" for name in ns["ci"].help}


def test_this_repository_keeps_hello_worlds_values_in_its_own_file() -> None:
    root = Path(__file__).resolve().parent.parent
    section = config.read_project_file(root)
    assert section["service_dir"] == "hello_world" and section["smoke"] == {"text": "Hello World!"}
    assert json.dumps(config.project._PROJECT_DEFAULTS).lower().count("hello") == 0


def test_a_step_over_several_services_ends_failed_when_one_failed_without_raising() -> None:
    stream = io.StringIO()
    out = Output(stream=stream, json_logs=True)
    with out.step("smoke test 2 services"):
        out.detail("audit: GET ...: HTTP 200")
        out.fail("1 services failed; ledger: smoke test failed")
    with out.step("next"):
        pass  # the mark ends with its step
    assert [(s.name, s.status, s.error) for s in out.steps] == [
        ("smoke test 2 services", "failed", "1 services failed; ledger: smoke test failed"),
        ("next", "ok", ""),
    ]
    assert "<== smoke test 2 services: failed" in stream.getvalue()
