"""`ecs-pipeline init`: what it writes, what it refuses, and that what it writes works:
the settings load, the template renders to a valid request, the Dockerfile lints, and
the CircleCI config passes the same schema and policy checks as this repository's."""

from __future__ import annotations

import ast
import io
import json
import shlex
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import config, init, plan, taskdef
from pipeline.cli import version
from pipeline.errors import ConfigError
from tests.helpers import GREETER_INIT
from tests.test_circleci import REFS, circleci_jobs, workflow_jobs

BIN = Path(sys.executable).parent
GREETER = [*GREETER_INIT, "--smoke-text", "Hello, greeter"]
OTHER_SECTIONS = """\
[project]
name = "greeter"  # kept with its comment
version = "1.0"

[tool.ruff]
line-length = 100

[tool.other]
x = [1, 2]
"""


def scaffold(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ecs-pipeline"), "init", *args], cwd=root, capture_output=True, text=True, timeout=60
    )


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def greeter(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "pyproject.toml").write_text(OTHER_SECTIONS)
    proc = scaffold(tmp_path, *GREETER)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return tmp_path


def test_init_writes_the_files_and_says_what_next(tmp_path: Path) -> None:
    greeter = tmp_path
    proc = scaffold(greeter, *GREETER)
    written = proc.stdout.split("next:")[0]
    for name in [
        "tasks.py",
        "pyproject.toml",
        "app/deploy/taskdef.json",
        "app/deploy/staging.json",
        "app/deploy/prod.json",
        "app/Dockerfile",
        "app/.dockerignore",
        "local.env.example",
        ".circleci/config.yml",
    ]:
        assert f"  {name}\n" in written and (greeter / name).is_file()
    assert "invoke deploy --env prod" in proc.stdout.split("next:")[1]


def test_tasks_py_is_two_lines_and_imports_only_the_public_collection(greeter: Path) -> None:
    text = (greeter / "tasks.py").read_text()
    assert len(text.splitlines()) == 2
    tree = ast.parse(text)
    assert len(tree.body) <= 5
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [(n.module, [a.name for a in n.names]) for n in imports] == [("pipeline.tasks", ["ns"])]  # type: ignore[union-attr]


def test_invoke_in_the_scaffolded_repository_lists_the_tasks(greeter: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "invoke"), "--list"], cwd=greeter, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("init", "deploy", "pull-and-run", "stack.up", "version"):
        assert f"  {name} " in proc.stdout


def test_pyproject_gains_the_section_and_keeps_every_other_table(greeter: Path) -> None:
    text = (greeter / "pyproject.toml").read_text()
    assert text.startswith(OTHER_SECTIONS)
    data = tomllib.loads(text)
    assert data["project"] == {"name": "greeter", "version": "1.0"}
    assert data["tool"]["ruff"] == {"line-length": 100} and data["tool"]["other"] == {"x": [1, 2]}
    assert data["tool"]["pipeline"] == {
        "service_dir": "app",
        "container_port": 9000,
        "base_path": "/greet/",
        "serve_command": "python -m app",
        "smoke": {"text": "Hello, greeter"},
        "infra": {"health_check_path": "/greet/healthz"},
    }


def test_the_settings_load_as_the_flags_said(greeter: Path) -> None:
    s = config.load({"AWS_RESOURCE_NAME_PREFIX": "greeter"}, greeter)
    assert (s.service_dir, s.container_port, s.base_path) == (greeter / "app", 9000, "/greet/")
    assert (s.build_command, s.test_command, s.integration_command) == ("", "", "")
    assert s.smoke.text == "Hello, greeter"
    assert s.infra.environment("prod").health_check_path == "/greet/healthz"
    assert "integration" not in plan.make("branch", "main", s.ci).steps


def test_a_missing_pyproject_is_created(tmp_path: Path) -> None:
    proc = scaffold(tmp_path, "--port", "9000")
    assert proc.returncode == 0, proc.stderr
    data = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    assert set(data) == {"tool"} and data["tool"]["pipeline"]["service_dir"] == "."
    # The repository is the build context: its tooling stays out of the image.
    ignored = (tmp_path / ".dockerignore").read_text().splitlines()
    assert {"deploy/", ".circleci", "tasks.py", "*.md"} <= set(ignored)


def test_nothing_is_overwritten_without_force(greeter: Path) -> None:
    (greeter / "app" / "deploy" / "prod.json").write_text('{"values": {"cpu": "1024"}}')
    before = snapshot(greeter)
    proc = scaffold(greeter, *GREETER)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: init would overwrite [tool.pipeline] in pyproject.toml, tasks.py, ")
    assert "app/deploy/prod.json" in proc.stderr and "pass --force" in proc.stderr
    assert snapshot(greeter) == before


def test_force_replaces_the_section_and_the_files_but_not_other_tables(greeter: Path) -> None:
    (greeter / "tasks.py").write_text("# a hand-made one\n")
    proc = scaffold(greeter, "--service-dir", "app", "--port", "9100", "--base-path", "/g/", "--force")
    assert proc.returncode == 0, proc.stderr
    text = (greeter / "pyproject.toml").read_text()
    assert text.startswith(OTHER_SECTIONS) and text.count("[tool.pipeline]") == 1
    data = tomllib.loads(text)
    assert data["tool"]["pipeline"]["container_port"] == 9100 and "smoke" not in data["tool"]["pipeline"]
    assert data["tool"]["other"] == {"x": [1, 2]}
    assert (greeter / "tasks.py").read_text().startswith("# This service's tasks")


def test_an_existing_dockerfile_is_kept(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "Dockerfile").write_text("FROM scratch\n")
    proc = scaffold(tmp_path, "--service-dir", "svc", "--port", "9000")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "svc" / "Dockerfile").read_text() == "FROM scratch\n"
    assert "note: kept svc/Dockerfile (check it EXPOSEs 9000)" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0"], "--port '0': must be a port number 1-65535"),
        (["--port", "http"], "--port 'http': must be a port number 1-65535"),
        (["--base-path", "greet/"], "--base-path 'greet/': must start and end with '/'"),
        (["--base-path", "/greet"], "--base-path '/greet': must start and end with '/'"),
        (["--base-path", "/a b/"], "--base-path '/a b/'"),
        (["--health-path", "health"], "--health-path 'health': must be a path starting with '/'"),
        (["--service-dir", "../elsewhere"], "--service-dir '../elsewhere': must be a directory inside"),
        (["--service-dir", "/abs"], "--service-dir '/abs'"),
        (["--test-command", " "], "--test-command ' ': must be one non-blank line"),
    ],
)
def test_bad_flag_values_are_refused_in_one_line_before_anything_is_written(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(OTHER_SECTIONS)
    proc = scaffold(tmp_path, *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert snapshot(tmp_path) == {"pyproject.toml": OTHER_SECTIONS}


def test_a_section_written_as_dotted_keys_is_not_edited_blindly(tmp_path: Path) -> None:
    original = "[tool]\npipeline = {container_port = 8080}\n"
    with pytest.raises(ConfigError, match="cannot add \\[tool.pipeline\\] without changing other settings"):
        init.project_file_text(original, init.pipeline_section(init.check_options(init.InitOptions())), True)


def test_the_template_renders_to_a_valid_request_with_the_task_role(greeter: Path) -> None:
    s = config.load({"AWS_RESOURCE_NAME_PREFIX": "greeter", "AWS_DEFAULT_REGION": "eu-west-1"}, greeter)
    for name in ("staging", "prod"):
        env = s.environment(name)
        inputs = taskdef.RenderInputs(
            family=env.family,
            container=env.container,
            image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/greeter:abc1234",
            sha="abc1234",
            environment=name,
            region=s.region,
            account_id="123456789012",
            prefix=s.prefix,
            cluster=env.cluster,
            service=env.service,
            execution_role_arn=s.execution_role_arn("123456789012"),
            log_group=s.log_group,
            port=s.container_port,
            base_path=s.base_path,
            created_at=datetime.now(UTC),
            task_role_arn=s.task_role_arn("123456789012"),
        )
        request = taskdef.render(
            taskdef.load_template(env.template), taskdef.load_values(env.values), inputs, "taskdef.json"
        )
        taskdef.validate_request(request, "taskdef.json")
        assert request["taskRoleArn"] == "arn:aws:iam::123456789012:role/greeter-ecs-task-role"
        (container,) = request["containerDefinitions"]
        assert container["portMappings"][0]["containerPort"] == 9000
        assert container["user"] == "10001:10001"
        assert "http://127.0.0.1:9000/greet/healthz" in container["healthCheck"]["command"][-1]
        assert {"name": "DEPLOY_ENV", "value": name} in container["environment"]


def test_the_dockerfile_is_non_root_takes_the_base_image_and_copies_code_last(greeter: Path) -> None:
    dockerfile = greeter / "app" / "Dockerfile"
    lint = subprocess.run([str(BIN / "hadolint"), str(dockerfile)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    instructions = [
        line.split()[0] for line in dockerfile.read_text().splitlines() if line and line[0] not in "# "
    ]
    assert instructions[:2] == ["ARG", "FROM"] and instructions[-1] == "COPY"
    text = dockerfile.read_text()
    assert "ARG BASE_IMAGE=" in text and "FROM ${BASE_IMAGE}" in text
    assert "USER 10001:10001" in text and "EXPOSE 9000" in text and "PORT=9000" in text


def test_the_circleci_config_passes_the_schema(greeter: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.circle-ci", ".circleci/config.yml"],
        cwd=greeter,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_circleci_config_installs_the_pinned_package_not_the_repository(greeter: Path) -> None:
    cfg = yaml.safe_load((greeter / ".circleci" / "config.yml").read_text())
    installs = [
        s["run"]["command"] for s in cfg["commands"]["install"]["steps"] if isinstance(s, dict) and "run" in s
    ]
    assert installs == [f"python -m pip install --quiet 'ecs-pipeline=={version()}'"]
    assert "-e" not in installs[0].split()


@pytest.mark.parametrize(("kind", "ref"), REFS)
def test_the_circleci_config_runs_what_the_services_policy_plans(greeter: Path, kind: Any, ref: str) -> None:
    cfg = yaml.safe_load((greeter / ".circleci" / "config.yml").read_text())
    planned = plan.make(kind, ref, config.load_policy(greeter))
    expected = [step.argv for step in plan.step_commands(planned, plan.SHA_PLACEHOLDER)]
    jobs = circleci_jobs(cfg, kind, ref)
    ran = [tuple(shlex.split(c)) for job in jobs for c in job.commands if c.startswith("invoke ")]
    assert ran == expected, f"{kind} {ref}: CircleCI runs {ran}"


def test_the_circleci_jobs_run_only_invoke_tasks(greeter: Path) -> None:
    cfg = yaml.safe_load((greeter / ".circleci" / "config.yml").read_text())
    for job in workflow_jobs(cfg):
        assert all(c.startswith("invoke ") for c in job.own_commands), job.name


def test_init_in_process_returns_what_it_wrote(tmp_path: Path) -> None:
    out = io.StringIO()
    written = init.run(tmp_path, init.InitOptions(port=9000), "1.2.3", lambda line: print(line, file=out))
    assert tmp_path / "tasks.py" in written and tmp_path / "Dockerfile" in written
    assert "ecs-pipeline==1.2.3" in (tmp_path / ".circleci" / "config.yml").read_text()
    assert json.loads((tmp_path / "deploy" / "taskdef.json").read_text())["taskRoleArn"] == "${task_role_arn}"
    unreleased = tmp_path / "dev"
    unreleased.mkdir()
    init.run(unreleased, init.InitOptions(), "0+unknown", lambda line: print(line, file=out))
    assert "'ecs-pipeline'" in (unreleased / ".circleci" / "config.yml").read_text()
    assert "is not a release: pin one" in out.getvalue()
