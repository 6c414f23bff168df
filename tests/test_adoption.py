"""Adoption as a team meets it: a second service repository ("greeter") outside this
repository's layout, with the pipeline installed from a wheel built from this checkout
into the service's own venv (not -e), scaffolded by `ecs-pipeline init`, then carried
through the README's "Adopting it in your service" commands on the local stack, judged
with the real aws CLI and over HTTP.

greeter differs from hello_world wherever it can: port 9000, base path /greet/, a health
route at /greet/healthz, unittest instead of pytest, its own container name and values
for prod, and no integration tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from pipeline.cli import version
from tests.conftest import remove_services
from tests.helpers import GREETER_INIT, free_port, http_get

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = Path.home() / ".cache" / "ecs-pipeline" / "wheelhouse"
TEXT = "Hello from greeter"

APP = """\
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from app.greeting import greet

BASE = os.environ.get("BASE_PATH", "/greet/")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == BASE + "healthz":
            status, body = 200, "ok\\n"
        elif path == BASE:
            status, body = 200, greet() + "\\n"
        else:
            status, body = 404, "not found\\n"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer((os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "9000"))), Handler)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
server.serve_forever()
"""
GREETING = 'import os\n\n\ndef greet():\n    return os.environ.get("GREETING", "Hello from greeter")\n'
UNIT_TEST = """\
import unittest

from app.greeting import greet


class GreetingTest(unittest.TestCase):
    def test_greets(self):
        self.assertEqual(greet(), "Hello from greeter")
"""


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{' '.join(argv)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as a wheel, built from a copy of this checkout's files (tracked and new,
    not ignored) so the build leaves nothing in the work tree."""
    source = tmp_path_factory.mktemp("source")
    files = _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)])
    (built,) = out.glob("ecs_pipeline-*.whl")
    return built


def wheelhouse(wheel: Path) -> Path:
    """The dependencies of ecs-pipeline[local] as wheels, downloaded once per machine and
    dependency list: installing from them is offline and takes seconds, not a minute."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = json.dumps(
        [project["dependencies"], project["optional-dependencies"]["local"], sys.version_info[:2]]
    )
    house = WHEELHOUSE / hashlib.sha256(spec.encode()).hexdigest()[:16]
    if not house.is_dir():
        partial = WHEELHOUSE / f".partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        _run([sys.executable, "-m", "pip", "download", "-q", "-d", str(partial), f"{wheel}[local]"])
        for own in partial.glob("ecs_pipeline-*"):
            own.unlink()  # the checkout's wheel comes from the build, never from here
        try:
            partial.rename(house)
        except OSError:  # another run downloaded the same list first: use its copy
            shutil.rmtree(partial, ignore_errors=True)
            if not house.is_dir():
                raise
    return house


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service's own venv with ecs-pipeline[local] installed from the wheel."""
    path = tmp_path_factory.mktemp("greeter-venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(path / "bin" / "python"),
            "install",
            "-q",
            "--no-compile",
            "--no-index",
            "--find-links",
            str(wheelhouse(wheel)),
            "--find-links",
            str(wheel.parent),
            f"ecs-pipeline[local]=={version()}",
        ]
    )
    return path


@pytest.fixture
def greeter_env(environ: dict[str, str], venv: Path) -> dict[str, str]:
    """The local stack's variables under this test's prefix; the service venv first on
    PATH, and nothing that could import the pipeline from this checkout."""
    env = {k: v for k, v in environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{environ['PATH']}", "VIRTUAL_ENV": str(venv)}


@pytest.fixture
def greeter(tmp_path: Path, greeter_env: dict[str, str]) -> Path:
    """A fresh service repository: its code and tests, no pipeline files yet."""
    repo = tmp_path / "greeter"
    (repo / "app").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "app" / "__init__.py").write_text("")
    (repo / "app" / "__main__.py").write_text(APP)
    (repo / "app" / "greeting.py").write_text(GREETING)
    (repo / "tests" / "test_greeting.py").write_text(UNIT_TEST)
    (repo / "README.md").write_text("# greeter\n")
    (repo / ".gitignore").write_text("local.env\n__pycache__/\n")
    (repo / "pyproject.toml").write_text('[project]\nname = "greeter"\nversion = "1.0.0"\n')
    return repo


@pytest.fixture
def cleanup(prefix: str, environ: dict[str, str]) -> Iterator[None]:
    yield
    remove_services(environ, prefix)  # the prod service's task still runs greeter's image
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"name": prefix}, ignore_removed=True):
        container.remove(force=True)
    images = client.images.list(name=f"{environ['ECR_ENDPOINT']}/{prefix}") + client.images.list(name=prefix)
    for image_id in {image.id for image in images}:
        client.images.remove(image_id, force=True)


@pytest.mark.heavy
def test_a_second_service_goes_from_init_to_a_verified_deployment(
    greeter: Path,
    greeter_env: dict[str, str],
    venv: Path,
    prefix: str,
    aws_cli: Callable[..., Any],
    cleanup: None,
) -> None:
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return _run(list(argv), cwd=greeter, env=greeter_env)

    def invoke(*args: str) -> str:
        return run(str(venv / "bin" / "invoke"), *args).stdout

    # The installed package is the wheel's, not this checkout.
    where = run(str(venv / "bin" / "python"), "-c", "import pipeline; print(pipeline.__file__)").stdout
    assert where.startswith(str(venv)), where

    # Scaffold with the console script (no tasks.py yet), then commit: the image tag is the commit.
    run(
        str(venv / "bin" / "ecs-pipeline"),
        "init",
        *GREETER_INIT,
        "--smoke-text",
        TEXT,
        "--build-command",
        "python -m compileall -q app",
        "--test-command",
        "python -m unittest discover -s tests",
    )
    tasks_py = (greeter / "tasks.py").read_text().splitlines()
    assert len(tasks_py) == 2 and tasks_py[1].startswith("from pipeline.tasks import ns")
    # greeter's own environment: its container name and prod values.
    with (greeter / "pyproject.toml").open("a") as project:
        project.write('\n[tool.pipeline.environments.prod]\ncontainer = "greeter"\n')
    prod_values = json.loads((greeter / "app/deploy/prod.json").read_text())
    prod_values["environment"]["GREETING"] = TEXT
    (greeter / "app/deploy/prod.json").write_text(json.dumps(prod_values, indent=2))
    shutil.copy(greeter / "local.env.example", greeter / "local.env")
    git = ["git", "-c", "user.name=Greeter", "-c", "user.email=greeter@example.com"]
    run("git", "init", "-q", "-b", "main")
    run("git", "add", "-A")
    run(*git, "commit", "-q", "-m", "greeter, scaffolded by ecs-pipeline init")
    sha = run("git", "rev-parse", "HEAD").stdout.strip()

    plan = invoke("plan")
    assert "ref:         main (branch)" in plan and f"invoke deploy --env prod --sha {sha}" in plan
    assert "left out:    integration (no integration_command in [tool.pipeline])" in plan
    assert json.loads(invoke("plan", "--json"))["steps"] == ["test", "build", "dockerize", "push", "deploy"]

    tested = run(str(venv / "bin" / "invoke"), "test")
    assert "<== test: ok" in tested.stdout and "Ran 1 test" in tested.stderr
    assert "<== build: ok" in invoke("build")

    assert f"<== dockerize {sha}: ok" in invoke("dockerize")
    built = docker.from_env().images.get(f"{prefix}:{sha}").attrs["Config"]
    assert (built["ExposedPorts"], built["User"]) == ({"9000/tcp": {}}, "10001:10001")

    invoke("setup")
    repositories = aws_cli("ecr", "describe-repositories", "--repository-names", prefix)["repositories"]
    assert [r["repositoryName"] for r in repositories] == [prefix]
    task_role = aws_cli("iam", "get-role", "--role-name", f"{prefix}-ecs-task-role")["Role"]["Arn"]

    assert f"<== push {sha}: ok" in invoke("push")
    pushed = aws_cli("ecr", "describe-images", "--repository-name", prefix)["imageDetails"]
    assert [d["imageTags"] for d in pushed] == [[sha]]

    invoke("setup", "--env", "prod")
    cluster, service = f"{prefix}-cluster", f"{prefix}-service"
    assert aws_cli("ecs", "describe-services", "--cluster", cluster, "--services", service)["services"]

    # The newest image in ECR on this machine, as the README runs it (on a free port rather
    # than 9000: the machine's loopback is shared).
    port = free_port()
    ran = invoke("pull-and-run", "--latest", "--detach", "--port", str(port))
    assert "chose sha256:" in ran and f"tags: {sha}" in ran
    url = f"http://127.0.0.1:{port}/greet/"
    assert http_get(url) == (200, TEXT + "\n")
    assert http_get(url + "healthz") == (200, "ok\n")

    # No smoke flag: the URL is discovered through the service's load balancer, whose
    # DNS name on the local stack is a loopback address its data plane answers on.
    deployed = invoke("deploy", "--env", "prod")
    assert "<== smoke test: ok" in deployed and TEXT in deployed
    (through_alb,) = {
        w.rstrip(":")
        for w in deployed.split()
        if w.startswith("http://127.0.0.1:") and w.rstrip(":").endswith("/greet/")
    }
    assert through_alb != url and http_get(through_alb) == (200, TEXT + "\n")

    live = aws_cli("ecs", "describe-services", "--cluster", cluster, "--services", service)["services"][0]
    definition = aws_cli(
        "ecs", "describe-task-definition", "--task-definition", live["taskDefinition"], "--include", "TAGS"
    )
    (container,) = definition["taskDefinition"]["containerDefinitions"]
    assert container["name"] == "greeter"
    assert container["image"] == f"{greeter_env['ECR_ENDPOINT']}/{prefix}:{sha}"
    assert container["portMappings"][0]["containerPort"] == 9000
    assert {"name": "GREETING", "value": TEXT} in container["environment"]
    assert {"name": "BASE_PATH", "value": "/greet/"} in container["environment"]
    assert "http://127.0.0.1:9000/greet/healthz" in container["healthCheck"]["command"][-1]
    assert definition["taskDefinition"]["taskRoleArn"] == task_role
    assert {"key": "pipeline:git-sha", "value": sha} in definition["tags"]

    status = json.loads(invoke("status", "--env", "prod", "--json"))
    assert (status["sha"], status["rolloutState"]) == (sha, "COMPLETED")
    assert status["verifiedAt"]

    # Edits to what is not in the image leave the tag at the commit: the pushed image still
    # deploys (the pyproject.toml edit made it look for a -dirty image instead).
    (greeter / "README.md").write_text("# greeter\n\nDeployed with ecs-pipeline.\n")
    with (greeter / "pyproject.toml").open("a") as project:
        project.write("# reviewed\n")
    dry_run = invoke("deploy", "--env", "prod", "--dry-run")
    assert f"/{prefix}:{sha}" in dry_run and "-dirty-" not in dry_run
