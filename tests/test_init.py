"""`ecs-pipeline init`: what it writes, what it refuses, and that what it writes works:
the settings load, the template renders to a valid request, the Dockerfile lints, and
the CircleCI config passes the same schema and policy checks as this repository's."""

from __future__ import annotations

import ast
import io
import json
import os
import shlex
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import config, init, plan, start_command, taskdef
from pipeline.distribution import source, version
from pipeline.errors import ConfigError
from tests.helpers import ECS_PIPELINE, GREETER_INIT, health_check_url
from tests.test_circleci import REFS, aws_access_problems, circleci_jobs, workflow_jobs

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
    """`ecs-pipeline init ARGS` in `root`, a process of its own (forked: tests/forks.py)."""
    return ECS_PIPELINE.run(["init", *args], os.environ, cwd=root, timeout=60)


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def greeter(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__main__.py").write_text("print('greeter')\n")
    (tmp_path / "pyproject.toml").write_text(OTHER_SECTIONS)
    proc = scaffold(tmp_path, *GREETER)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return tmp_path


def test_init_writes_the_files_and_says_what_next(tmp_path: Path) -> None:
    greeter = tmp_path
    (greeter / "app").mkdir()
    (greeter / "app" / "__main__.py").write_text("")
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
        ".gitignore",
    ]:
        assert f"  {name}\n" in written and (greeter / name).is_file()
    steps = [line.split("#")[0].strip() for line in proc.stdout.split("next:\n")[1].splitlines()]
    # An order that works: local.env before the commit (it is ignored, so never committed),
    # the commit before anything tags an image, the stack's variables before AWS is touched.
    order = ["cp local.env.example local.env", "git add -A", "ecs-pipeline test", "stack.env", "dockerize"]
    positions = [next(i for i, step in enumerate(steps) if word in step) for word in order]
    assert positions == sorted(positions), steps
    assert "ecs-pipeline deploy --env prod" in steps[positions[-1] + 1]
    assert not any("AWS_RESOURCE_NAME_PREFIX" in step for step in steps)  # prefix is a setting now


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
        "prefix": "greeter",  # from [project] name
        "service_dir": "app",
        "container_port": 9000,
        "base_path": "/greet/",
        "serve_command": "python3 -m app",
        "smoke": {"text": "Hello, greeter"},
        "infra": {"health_check_path": "/greet/healthz"},
    }


def test_the_settings_load_as_the_flags_said(greeter: Path) -> None:
    s = config.load({}, greeter)  # no AWS_RESOURCE_NAME_PREFIX: the prefix setting names things
    assert (s.prefix, s.repository, s.environment("prod").service) == (
        "greeter",
        "greeter",
        "greeter-service",
    )
    assert (s.service_dir, s.container_port, s.base_path) == (greeter / "app", 9000, "/greet/")
    assert (s.build_command, s.test_command, s.integration_command) == ("", "", "")
    assert s.smoke.text == "Hello, greeter"
    assert s.infra.environment("prod").health_check_path == "/greet/healthz"
    assert "integration" not in plan.make("branch", "main", s.ci).steps


def test_a_missing_pyproject_is_created(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("if __name__ == '__main__':\n    pass\n")
    proc = scaffold(tmp_path, "--container-port", "9000")
    assert proc.returncode == 0, proc.stderr
    data = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    assert set(data) == {"tool"} and data["tool"]["pipeline"]["service_dir"] == "."
    assert data["tool"]["pipeline"]["prefix"] == config.name_from_project(tmp_path)  # the directory's name
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
    assert "app/deploy/prod.json" in proc.stderr and "pass --overwrite" in proc.stderr
    assert snapshot(greeter) == before


def test_force_replaces_the_section_and_the_files_but_not_other_tables(greeter: Path) -> None:
    (greeter / "tasks.py").write_text("# a hand-made one\n")
    proc = scaffold(
        greeter, "--service-dir", "app", "--container-port", "9100", "--base-path", "/g/", "--overwrite"
    )
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
    proc = scaffold(
        tmp_path, "--service-dir", "svc", "--container-port", "9000", "--command", "python -m svc"
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "svc" / "Dockerfile").read_text() == "FROM scratch\n"
    assert (
        'note: kept svc/Dockerfile (check it EXPOSEs 9000 and starts with CMD ["python", "-m", "svc"]'
        in proc.stdout
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--container-port", "0"], "--container-port '0': must be a port number 1-65535"),
        (["--container-port", "http"], "--container-port 'http': must be a port number 1-65535"),
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
        section = init.pipeline_section(init.check_options(init.InitOptions()), "shop", ("python3", "app.py"))
        init.project_file_text(original, section, True)


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
            execution_role_arn=s.execution_role_arn("123456789012", name),
            log_group=s.log_group,
            port=s.container_port,
            base_path=s.base_path,
            created_at=datetime.now(UTC),
            task_role_arn=s.task_role_arn("123456789012", name),
        )
        request = taskdef.render(
            taskdef.load_template(env.template), taskdef.load_values(env.values), inputs, "taskdef.json"
        )
        taskdef.validate_request(request, "taskdef.json")
        assert request["taskRoleArn"] == f"arn:aws:iam::123456789012:role/greeter-{name}-ecs-task-role"
        (container,) = request["containerDefinitions"]
        assert container["portMappings"][0]["containerPort"] == 9000
        assert container["user"] == "10001:10001"
        assert health_check_url(container["healthCheck"]["command"]) == "http://127.0.0.1:9000/greet/healthz"
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
    (install,) = [
        s["run"]["command"] for s in cfg["commands"]["install"]["steps"] if isinstance(s, dict) and "run" in s
    ]
    # As the README's install line: a tag of the source repository, in pipx's own environment.
    tool = f"ecs-pipeline @ git+{source()}@v{version()}" if source() else f"ecs-pipeline=={version()}"
    assert f"python -m pipx install --quiet '{tool}'" in install.splitlines()
    assert "-e" not in install.split() and "[local]" not in install


@pytest.mark.parametrize(("kind", "ref"), REFS)
def test_the_circleci_config_runs_what_the_services_policy_plans(greeter: Path, kind: Any, ref: str) -> None:
    cfg = yaml.safe_load((greeter / ".circleci" / "config.yml").read_text())
    planned = plan.make(kind, ref, config.load_policy(greeter))
    expected = [step.argv for step in plan.step_commands(planned, plan.SHA_PLACEHOLDER)]
    jobs = circleci_jobs(cfg, kind, ref)
    ran = [
        ("invoke", *shlex.split(c)[1:]) for job in jobs for c in job.commands if c.startswith("ecs-pipeline ")
    ]
    assert ran == expected, f"{kind} {ref}: CircleCI runs {ran}"


@pytest.mark.parametrize(("kind", "ref"), REFS)
def test_the_circleci_config_follows_the_ci_identity_policy(greeter: Path, kind: Any, ref: str) -> None:
    """Per-environment deploy contexts, the push role's `aws` only for push, the V2 token."""
    cfg = yaml.safe_load((greeter / ".circleci" / "config.yml").read_text())
    assert aws_access_problems(cfg, kind, ref, binary="ecs-pipeline") == []


def test_the_circleci_config_installs_the_aws_cli_before_it_calls_sts(greeter: Path) -> None:
    cfg = yaml.safe_load((greeter / ".circleci" / "config.yml").read_text())
    commands = [s["run"]["command"] for s in cfg["commands"]["aws-credentials"]["steps"]]
    assert commands[0] == "python -m pipx install --quiet awscli" and "aws sts" in commands[1]


def test_the_circleci_jobs_run_only_ecs_pipeline_tasks(greeter: Path) -> None:
    cfg = yaml.safe_load((greeter / ".circleci" / "config.yml").read_text())
    for job in workflow_jobs(cfg):
        assert all(c.startswith("ecs-pipeline ") for c in job.own_commands), job.name


def test_init_in_process_returns_what_it_wrote(tmp_path: Path) -> None:
    out = io.StringIO()
    (tmp_path / "main.py").write_text('if __name__ == "__main__":\n    main()\n')
    written = init.run(tmp_path, init.InitOptions(port=9000), "1.2.3", lambda line: print(line, file=out))
    assert tmp_path / "tasks.py" in written and tmp_path / "Dockerfile" in written
    assert "ecs-pipeline==1.2.3" in (tmp_path / ".circleci" / "config.yml").read_text()  # no source known
    assert json.loads((tmp_path / "deploy" / "taskdef.json").read_text())["taskRoleArn"] == "${task_role_arn}"
    unreleased = tmp_path / "dev"
    unreleased.mkdir()
    options = init.InitOptions(command="python -m dev")
    init.run(
        unreleased, options, "0+unknown", lambda line: print(line, file=out), source="https://git.example/p"
    )
    assert (
        "'ecs-pipeline @ git+https://git.example/p'" in (unreleased / ".circleci" / "config.yml").read_text()
    )
    assert "is not a release: pin a tag" in out.getvalue()


# --- the start command: --command, or what init finds ---------------------------------

MAIN_GUARD = 'import os\n\n\nif __name__ == "__main__":\n    print(os.environ["PORT"])\n'


@pytest.mark.parametrize(
    ("files", "service_dir", "expected"),
    [
        ({"app/__main__.py": ""}, "app", ("python3", "-m", "app")),
        ({"services/web/__main__.py": ""}, "services/web", ("python3", "-m", "services.web")),
        ({"ledger/__main__.py": "", "README.md": ""}, ".", ("python3", "-m", "ledger")),
        ({"app.py": MAIN_GUARD}, ".", ("python3", "app.py")),
        ({"svc/server.py": MAIN_GUARD, "svc/util.py": ""}, "svc", ("python3", "svc/server.py")),
        # __main__.py comes first; a script without a guard is not a start command.
        ({"app/__main__.py": "", "app/main.py": MAIN_GUARD}, "app", ("python3", "-m", "app")),
        ({"main.py": MAIN_GUARD, "app.py": "x = 1\n"}, ".", ("python3", "main.py")),
    ],
)
def test_init_finds_how_the_service_starts(
    tmp_path: Path, files: dict[str, str], service_dir: str, expected: tuple[str, ...]
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert start_command.detect(tmp_path, service_dir) == expected


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {
                "requirements.txt": "flask==3.0\ngunicorn>=22\n",
                "app.py": "from flask import Flask\napp = Flask(__name__)\n",
            },
            "looks like a gunicorn service (gunicorn in its requirements, an app object `app` in "
            "app.py); init does not guess how to run it: pass --command, e.g. --command 'gunicorn app:app'",
        ),
        (
            {
                "pyproject.toml": '[project]\ndependencies = ["uvicorn[standard]"]\n',
                "main.py": "api = FastAPI()\n",
            },
            "pass --command, e.g. --command 'uvicorn main:api --host 0.0.0.0'",
        ),
        ({"worker.py": MAIN_GUARD}, "init cannot tell how ./ starts (no __main__.py; no app.py"),
        ({"app.py": "print(1)\n"}, 'app.py without an `if __name__ == "__main__":` guard); pass --command'),
        (
            {"app.py": MAIN_GUARD, "server.py": MAIN_GUARD},
            "several start scripts (python3 app.py, python3 server.py)",
        ),
        (
            {"a/__main__.py": "", "b/__main__.py": ""},
            "several packages with __main__.py (python3 -m a, python3 -m b)",
        ),
    ],
)
def test_init_refuses_to_guess_and_names_the_command_flag(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    before = snapshot(tmp_path)
    proc = scaffold(tmp_path)
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr and "--command" in proc.stderr, proc.stderr
    assert snapshot(tmp_path) == before


def test_the_command_flag_is_the_images_cmd_in_exec_form_and_the_serve_command(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("gunicorn\nflask\n")
    proc = scaffold(tmp_path, "--command", "gunicorn --workers 2 'app:create_app()'")
    assert proc.returncode == 0, proc.stderr
    dockerfile = (tmp_path / "Dockerfile").read_text()
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    assert json.loads(cmd[4:]) == ["gunicorn", "--workers", "2", "app:create_app()"]
    serve = tomllib.loads((tmp_path / "pyproject.toml").read_text())["tool"]["pipeline"]["serve_command"]
    assert shlex.split(serve) == json.loads(cmd[4:])  # the same words, run the same way
    # The repository is the context: it lands in /srv as it sits, so both run from its root.
    assert "COPY --chown=10001:10001 . /srv/\n" in dockerfile and "WORKDIR /srv\n" in dockerfile
    # The CI test job installs the service's requirements.
    assert (
        "python -m pip install --quiet -r requirements.txt" in (tmp_path / ".circleci/config.yml").read_text()
    )


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            "gunicorn -b 0.0.0.0:$PORT app:app",
            "without a shell (exec form), so $VARIABLES would stay as written",
        ),
        ("python 'app.py", "does not split into words"),
        ("  ", "empty"),
    ],
)
def test_a_command_the_image_could_not_run_is_refused(tmp_path: Path, command: str, message: str) -> None:
    proc = scaffold(tmp_path, "--command", command)
    assert proc.returncode == 2 and message in proc.stderr and snapshot(tmp_path) == {}, proc.stderr


def test_the_dockerfile_for_a_service_directory_keeps_the_repositorys_layout(greeter: Path) -> None:
    text = (greeter / "app" / "Dockerfile").read_text()
    assert "COPY --chown=10001:10001 . /srv/app/\n" in text and 'CMD ["python3", "-m", "app"]\n' in text


def test_gitignore_is_written_or_extended_never_replaced(tmp_path: Path, greeter: Path) -> None:
    assert (greeter / ".gitignore").read_text().splitlines()[-2:] == ["local.env", ".venv/"]
    own = tmp_path / "own"
    own.mkdir()
    (own / "app.py").write_text(MAIN_GUARD)
    (own / ".gitignore").write_text("dist/\n.venv\n")
    assert scaffold(own).returncode == 0
    lines = (own / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["dist/", ".venv"] and lines[-1] == "local.env" and ".venv/" not in lines
    # What git ignores: local.env (and so it is never committed).
    subprocess.run(["git", "init", "-q"], cwd=own, check=True)
    (own / "local.env").write_text("SECRET=x\n")
    ignored = subprocess.run(["git", "check-ignore", "local.env"], cwd=own, capture_output=True, text=True)
    assert ignored.stdout.strip() == "local.env"
