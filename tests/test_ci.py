"""`invoke ci` runs the plan's steps through the same verbs, stops at the first
failure and ends with a summary; `invoke demo` runs the mainline flow end to end."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from pipeline import ci, plan, steps
from pipeline.config import CIPolicy
from pipeline.errors import ConfigError, StepFailed
from pipeline.git import Revision
from tests.conftest import DeployTarget, remove_services
from tests.helpers import free_port

SHA = "1234567890abcdef1234567890abcdef12345678"


@pytest.mark.parametrize(
    ("environ", "flags", "expected"),
    [
        ({"CIRCLE_BRANCH": "main", "CIRCLE_SHA1": SHA}, {}, ("branch", "main", SHA)),
        ({"CIRCLE_TAG": "v1-prod", "CIRCLE_BRANCH": "", "CIRCLE_SHA1": SHA}, {}, ("tag", "v1-prod", SHA)),
        (
            {"CIRCLE_BRANCH": "main", "CIRCLE_SHA1": SHA},
            {"tag": "v2-staging", "sha": "abcdef1"},
            ("tag", "v2-staging", "abcdef1"),
        ),
    ],
)
def test_the_ref_comes_from_flags_then_circleci(
    environ: dict[str, str], flags: dict[str, str], expected: tuple[str, str, str]
) -> None:
    assert ci.ci_ref(environ, flags.get("branch"), flags.get("tag"), flags.get("sha")) == expected


def test_every_step_has_a_runner_in_the_registrys_order() -> None:
    assert tuple(ci.RUNNERS) == steps.STEP_NAMES


def test_missing_ci_variables_are_all_named() -> None:
    with pytest.raises(ConfigError) as info:
        ci.ci_ref({}, None, None, None)
    assert info.value.problems == [
        "CIRCLE_BRANCH or CIRCLE_TAG: must be set (CircleCI sets them), or pass --branch/--tag",
        "CIRCLE_SHA1: must be set (CircleCI sets it), or pass --sha",
    ]
    with pytest.raises(ConfigError, match="--branch and --tag: give one of them, not both"):
        ci.ci_ref({"CIRCLE_SHA1": SHA}, "main", "v1-prod", None)


def test_ci_without_its_variables_is_one_line(run_task: Callable[..., Any]) -> None:
    proc = run_task("ci")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: CIRCLE_BRANCH or CIRCLE_TAG: must be set (CircleCI sets them), or pass "
        "--branch/--tag; CIRCLE_SHA1: must be set (CircleCI sets it), or pass --sha"
    )


def test_dry_run_prints_the_commands(run_task: Callable[..., Any]) -> None:
    proc = run_task("ci", "--tag", "v1.2.0-staging", "--sha", SHA, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert f"invoke deploy --env staging --sha {SHA}" in proc.stdout
    assert "invoke integration --env staging" in proc.stdout


@pytest.mark.heavy
def test_mainline_runs_every_step_and_deploys(
    run_task: Callable[..., Any], deploy_target: DeployTarget, hello_url: str, aws_cli: Callable[..., Any]
) -> None:
    sha = deploy_target.sha[:8] + "0" * 32
    proc = run_task("ci", "--branch", "main", "--sha", sha, "--base-url", hello_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout[proc.stdout.index("ci branch main") :].splitlines()
    assert [row.split()[:2] for row in table[2:]] == [
        [step, "ok"] for step in ("test", "build", "dockerize", "push", "deploy", "integration")
    ] + [["total", "passed"]]
    service = aws_cli(
        "ecs", "describe-services", "--cluster", deploy_target.cluster, "--services", deploy_target.service
    )["services"][0]
    image = aws_cli("ecs", "describe-task-definition", "--task-definition", service["taskDefinition"])[
        "taskDefinition"
    ]["containerDefinitions"][0]["image"]
    assert image.endswith(f":{sha}")
    docker.from_env().images.remove(image, force=True, noprune=True)


def test_a_tag_whose_image_was_never_pushed_changes_nothing(
    run_task: Callable[..., Any], deploy_target: DeployTarget, aws_cli: Callable[..., Any]
) -> None:
    proc = run_task("ci", "--tag", "v9-prod", "--sha", "f" * 40, "--json-logs")
    assert proc.returncode == 2
    steps = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [(s["step"], s["status"], s["sha"]) for s in steps] == [
        ("check deploy to prod", "failed", "f" * 40),
        ("deploy", "failed", "f" * 40),
    ]
    assert steps[-1]["error"].startswith("no image ")
    assert proc.stderr.startswith(
        f"error: no image {deploy_target.family.removesuffix('-service')}:{'f' * 40} "
        "in ECR; push it first with"
    )
    rows = proc.stdout[proc.stdout.index("ci tag v9-prod") :].splitlines()[2:]
    assert [row.split()[:2] for row in rows] == [
        ["deploy", "failed"],
        ["integration", "skipped"],
        ["total", "failed"],
    ]
    arns = aws_cli("ecs", "list-task-definitions", "--family-prefix", deploy_target.family)[
        "taskDefinitionArns"
    ]
    assert len(arns) == 1


def test_the_first_failing_step_stops_the_run(make_context: Callable[..., Any], tmp_path: Path) -> None:
    (tmp_path / "hello_world").mkdir()
    (tmp_path / "pyproject.toml").write_text('[tool.pipeline]\ntest_command = "exit 3"\n')
    ctx = make_context(root=tmp_path)
    the_plan = plan.make("branch", "feature/x", CIPolicy())
    with pytest.raises(StepFailed, match=r"tests failed \(exit 3\): exit 3"):
        ci.run(ctx, the_plan, Revision(SHA), ci.Options())
    log = ctx.out.stream.getvalue()
    assert [line.split()[:2] for line in log[log.index("ci branch feature/x") :].splitlines()[2:]] == [
        ["test", "failed"],
        ["build", "skipped"],
        ["total", "failed"],
    ]


@pytest.mark.heavy
def test_demo_runs_the_mainline_flow_and_can_run_again(
    run_task: Callable[..., Any], environ: dict[str, str], prefix: str, aws_cli: Callable[..., Any]
) -> None:
    port = free_port()
    registry = environ["ECR_ENDPOINT"]  # the stack's registry port is configurable
    try:
        for revision, flags in ((2, ()), (3, ("--failure",))):
            proc = run_task("demo", "--port", str(port), *flags)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert f"deployed   {prefix}-service:{revision} ({registry}/{prefix}:" in proc.stdout
            assert f"answering  http://127.0.0.1:{port}/hello/" in proc.stdout
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/", timeout=5) as resp:
                assert resp.read() == b"Hello World!\n"
        # The second run's broken image (revision 4) was caught and ECS rolled back to 3.
        assert f"caught as intended: deploy of {prefix}-service:4 to prod failed" in proc.stdout
        assert f"{prefix}-service: exit 3" in proc.stdout
        service = aws_cli(
            "ecs", "describe-services", "--cluster", f"{prefix}-cluster", "--services", f"{prefix}-service"
        )["services"][0]
        assert service["taskDefinition"].endswith(f"{prefix}-service:3")
        assert [d["rolloutState"] for d in service["deployments"]] == ["COMPLETED"]
        # Each good deploy was smoke-tested through the (local) load balancer before it counted
        # as verified; the caught one never was.
        verified = {
            n: "pipeline:verified-at"
            in {
                t["key"]
                for t in aws_cli(
                    "ecs",
                    "describe-task-definition",
                    "--task-definition",
                    f"{prefix}-service:{n}",
                    "--include",
                    "TAGS",
                )["tags"]
            }
            for n in (2, 3, 4)
        }
        assert verified == {2: True, 3: True, 4: False}
    finally:
        remove_services(environ, prefix)  # the local ECS's task containers hold the images
        client = docker.from_env()
        for container in client.containers.list(all=True, filters={"name": prefix}, ignore_removed=True):
            container.remove(force=True)
        images = client.images.list(name=f"{registry}/{prefix}") + client.images.list(name=prefix)
        pending = {image.id for image in images}
        for _ in range(3):  # the broken image (--failure) is a child of the good one: it goes first
            for image_id in sorted(pending):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(image_id, force=True, noprune=True)
                    pending.discard(image_id)


@pytest.mark.heavy
def test_demo_with_a_strategy_shows_the_gate_stopping_a_wrong_revision_while_production_answers(
    run_task: Callable[..., Any], environ: dict[str, str], prefix: str, aws_cli: Callable[..., Any]
) -> None:
    port = free_port()
    own = f"{prefix}-canary"  # the strategy's demo runs under its own prefix
    try:
        proc = run_task("demo", "--port", str(port), "--strategy", "canary")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        assert "gate: passed; CONTINUE to production traffic" in proc.stdout
        assert (
            f"caught at the gate, as intended: deploy of {own}-service:3 to prod failed: "
            "the smoke test at the gate failed: " in proc.stdout
        )
        (meanwhile,) = [line for line in proc.stdout.splitlines() if line.startswith("production meanwhile")]
        assert meanwhile.endswith(" failed") and meanwhile.split()[-2] == "0", meanwhile
        assert int(meanwhile.split(": ")[1].split()[0]) > 0
        service = aws_cli(
            "ecs", "describe-services", "--cluster", f"{own}-cluster", "--services", f"{own}-service"
        )
        live = service["services"][0]
        assert live["deploymentConfiguration"]["strategy"] == "CANARY"
        assert live["taskDefinition"].endswith(f"{own}-service:2")
    finally:
        remove_services({**environ, "AWS_RESOURCE_NAME_PREFIX": own}, own)
        client = docker.from_env()
        for container in client.containers.list(all=True, filters={"name": own}, ignore_removed=True):
            container.remove(force=True)


def test_a_demo_strategy_that_is_not_one_of_ecss_is_one_line_and_exit_2(run_task: Callable[..., Any]) -> None:
    proc = run_task("demo", "--strategy", "purple")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "error: --strategy purple: one of BLUE_GREEN, LINEAR, CANARY (without it: the project's own)"
    )


def test_plan_json_is_unchanged_by_ci(run_task: Callable[..., Any]) -> None:
    proc = run_task("plan", "--branch", "main", "--json")
    assert json.loads(proc.stdout)["steps"] == ["test", "build", "dockerize", "push", "deploy", "integration"]
