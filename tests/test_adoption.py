"""Adoption as a team meets it: service repositories outside this repository's layout,
with the `ecs-pipeline` command installed as the README says — `uv tool install
--compile-bytecode` of a wheel built from this checkout (once per content of its files on a
machine), into the tool's own environment, never the service's (offline here: a
wheelhouse of its dependencies stands in for the index) — scaffolded by `ecs-pipeline
init`, then carried through the README's "Adopting it in your service" commands on the
local stack, judged with the real aws CLI and over HTTP.

greeter differs from hello_world wherever it can: port 9000, base path /greet/, a health
route at /greet/healthz, unittest instead of pytest, its own container name and values
for prod, and no integration tests. ledger and audit are the issue's "first hour": no
flags beyond their paths and texts, no AWS_RESOURCE_NAME_PREFIX, no generated file
edited; ledger starts as `python3 app.py` from the repository's root, audit as a package;
they are released together from a third directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import pytest

from pipeline.distribution import version
from tests.conftest import TestRun, local_tags, remove_services
from tests.helpers import GREETER_INIT, free_port, health_check_url, http_get

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


def package_files() -> list[str]:
    """This checkout's files as a wheel is built from them: tracked and new, not ignored."""
    listed = _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT).stdout.split("\0")
    return sorted(name for name in filter(None, listed) if (ROOT / name).is_file())


def build_wheel(files: list[str], directory: Path) -> Path:
    """The package as a wheel (`pip wheel`, the README's way), built from a copy of `files`
    so the build leaves nothing in the work tree."""
    source, out = directory / "wheel-source", directory / "dist"
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
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


UV = Path(sys.executable).parent / "uv"
TOOLS = WHEELHOUSE.parent / "adoption-tools"
KEEP_TOOLS = 2  # installs of other contents kept (other branches, checkouts): ~125 MB each


@pytest.fixture(scope="session")
def tool(test_run: TestRun) -> Path:
    """`uv tool install --compile-bytecode 'ecs_pipeline-<version>-py3-none-any.whl[local]'`,
    the README's install line for a wheel, into a tool directory of its own; returns its bin
    directory. Once per content of the package's files on this machine (the files, the
    interpreter and uv name the install): the install's bytecode compilation alone is ~22
    CPU-s, and the tests only run its command. A fresh machine, or any changed file, builds
    the wheel and installs it again; the workers of a run share one install."""

    def install() -> str:
        files = package_files()
        digest = hashlib.sha256()
        for part in [sys.version, str(Path(sys.executable).resolve()), _run([str(UV), "--version"]).stdout]:
            digest.update(part.encode() + b"\0")
        for name in files:
            digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes() + b"\0")
        home = TOOLS / digest.hexdigest()[:16]
        TOOLS.mkdir(parents=True, exist_ok=True)
        with open(TOOLS / f"{home.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another run's install of the same files: wait for it
            installed = home / "installed"
            if not installed.exists():
                shutil.rmtree(home, ignore_errors=True)  # a run stopped mid-install left it half-done
                wheel = build_wheel(files, test_run.directory)
                env = {
                    **os.environ,
                    "UV_TOOL_DIR": str(home / "tools"),
                    "UV_TOOL_BIN_DIR": str(home / "bin"),
                    "UV_CACHE_DIR": str(WHEELHOUSE.parent / "uv-cache"),
                }
                env.pop("VIRTUAL_ENV", None)
                _run(
                    [
                        str(UV),
                        "tool",
                        "install",
                        "--compile-bytecode",
                        "--offline",
                        "--find-links",
                        str(wheelhouse(wheel)),
                        f"{wheel}[local]",
                    ],
                    env=env,
                )
                installed.write_text(wheel.name + "\n")
            installed.touch()  # recently used: kept by the pruning below
        older = sorted(TOOLS.glob("*/installed"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in older[KEEP_TOOLS + 1 :]:
            shutil.rmtree(stale.parent, ignore_errors=True)
            (TOOLS / f"{stale.parent.name}.lock").unlink(missing_ok=True)
        return str(home / "bin")

    return Path(test_run.once("adoption-tool", install))


@pytest.fixture
def service_env(environ: dict[str, str], tool: Path) -> dict[str, str]:
    """The local stack's variables (`eval "$(ecs-pipeline stack.env)"`) for a person's shell:
    the tool's bin first on PATH, this checkout's venv off it, no AWS_RESOURCE_NAME_PREFIX
    (a repository's prefix setting names its resources) and nothing that could import the
    pipeline from this checkout."""
    checkout_venv = str(ROOT / ".venv")
    path = [p for p in environ["PATH"].split(os.pathsep) if not p.startswith(checkout_venv)]
    env = {
        k: v for k, v in environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "AWS_RESOURCE_NAME_PREFIX"}
    }
    return {**env, "PATH": os.pathsep.join([str(tool), *path])}


@pytest.fixture
def greeter_env(service_env: dict[str, str], prefix: str) -> dict[str, str]:
    """greeter's shell: its resources named by the test's prefix the seed's way."""
    return {**service_env, "AWS_RESOURCE_NAME_PREFIX": prefix}


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
    # The local ECS removes its task containers meanwhile: one already gone is not an error.
    for container in client.containers.list(all=True, filters={"name": prefix}, ignore_removed=True):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    for tag in local_tags(prefix, f"{environ['ECR_ENDPOINT']}/{prefix}"):  # every repository under it
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.images.remove(tag, force=True, noprune=True)


@pytest.mark.heavy
def test_a_second_service_goes_from_init_to_a_verified_deployment(
    greeter: Path,
    greeter_env: dict[str, str],
    tool: Path,
    prefix: str,
    aws_cli: Callable[..., Any],
    cleanup: None,
) -> None:
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return _run(list(argv), cwd=greeter, env=greeter_env)

    def invoke(*args: str) -> str:
        return run(str(tool / "ecs-pipeline"), *args).stdout

    # The command is the tool's, in its own environment: not this checkout, not the service's.
    where = run(str(tool / "ecs-pipeline"), "--version").stdout
    assert where.strip() == f"ecs-pipeline {version()}"
    assert (
        run("python3", "-c", "import importlib.util as u; print(u.find_spec('pipeline'))").stdout == "None\n"
    )

    # Scaffold (no tasks.py yet), then commit: the image tag is the commit.
    run(
        str(tool / "ecs-pipeline"),
        "init",
        *GREETER_INIT,
        "--smoke-text",
        TEXT,
        "--build-command",
        "python3 -m compileall -q app",
        "--test-command",
        "python3 -m unittest discover -s tests",
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
    assert "ref:         main (branch)" in plan and f"deploy --env prod --sha {sha}" in plan
    assert "left out:    integration (no integration_command in [tool.pipeline])" in plan
    assert json.loads(invoke("plan", "--json"))["steps"] == ["test", "build", "dockerize", "push", "deploy"]

    tested = run(str(tool / "ecs-pipeline"), "test")
    assert "<== test: ok" in tested.stdout and "Ran 1 test" in tested.stderr
    assert "<== build: ok" in invoke("build")

    assert f"<== dockerize {sha}: ok" in invoke("dockerize")
    built = docker.from_env().images.get(f"{prefix}:{sha}").attrs["Config"]
    assert (built["ExposedPorts"], built["User"]) == ({"9000/tcp": {}}, "10001:10001")

    invoke("setup")
    repositories = aws_cli("ecr", "describe-repositories", "--repository-names", prefix)["repositories"]
    assert [r["repositoryName"] for r in repositories] == [prefix]

    assert f"<== push {sha}: ok" in invoke("push")
    pushed = aws_cli("ecr", "describe-images", "--repository-name", prefix)["imageDetails"]
    assert [d["imageTags"] for d in pushed] == [[sha]]

    invoke("setup", "--env", "prod")
    task_role = aws_cli("iam", "get-role", "--role-name", f"{prefix}-prod-ecs-task-role")["Role"]["Arn"]
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
    assert health_check_url(container["healthCheck"]["command"]) == "http://127.0.0.1:9000/greet/healthz"
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


# --- the first hour: ledger and audit, released together ------------------------------

SERVER = """\
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from {module} import answer

BASE = os.environ["BASE_PATH"]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        status, body = (200, "ok\\n") if path == BASE + "health" else (200, answer() + "\\n") if path == BASE else (404, "")
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        print("served", self.path, flush=True)


def main():
    print("{name} listening on", os.environ["PORT"], flush=True)
    server = ThreadingHTTPServer((os.environ.get("HOST", "0.0.0.0"), int(os.environ["PORT"])), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()
"""


def _service(root: Path, name: str, project: str, files: dict[str, str]) -> Path:
    repo = root / name
    for path, text in {
        "pyproject.toml": f'[project]\nname = "{project}"\nversion = "1.0.0"\n',
        "README.md": f"# {name}\n",
        **files,
    }.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    return repo


def ledger_repo(root: Path, project: str) -> Path:
    """ledger: `python3 app.py` from the repository's root (init's default --service-dir .)."""
    return _service(
        root,
        "ledger",
        project,
        {
            "app.py": SERVER.format(module="balance", name="ledger")
            + '\n\nif __name__ == "__main__":\n    main()\n',
            "balance.py": 'def answer():\n    return "ledger balanced"\n',
            "tests/test_balance.py": (
                "import unittest\n\nfrom balance import answer\n\n\n"
                "class BalanceTest(unittest.TestCase):\n    def test_it_balances(self):\n"
                '        self.assertEqual(answer(), "ledger balanced")\n'
            ),
        },
    )


def audit_repo(root: Path, project: str) -> Path:
    """audit: a package started as `python3 -m audit`, in a repository of its own."""
    return _service(
        root,
        "audit",
        project,
        {
            "audit/__init__.py": "",
            "audit/trail.py": 'def answer():\n    return "audit trail kept"\n',
            "audit/server.py": SERVER.format(module="audit.trail", name="audit"),
            "audit/__main__.py": "from audit.server import main\n\nmain()\n",
        },
    )


class Shell:
    """A person's shell in one repository: git, and the installed `ecs-pipeline`."""

    def __init__(self, repo: Path, env: dict[str, str], tool: Path) -> None:
        self.repo, self.env, self.tool = repo, env, tool

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if check:
            return _run(list(argv), cwd=self.repo, env=self.env)
        return subprocess.run(
            list(argv), cwd=self.repo, env=self.env, capture_output=True, text=True, timeout=600
        )

    def pipeline(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.tool / "ecs-pipeline"), *args, check=check)

    def commit(self, message: str) -> str:
        git = ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
        if not (self.repo / ".git").exists():
            self.run("git", "init", "-q", "-b", "main")
        self.run("git", "add", "-A")
        self.run(*git, "commit", "-q", "-m", message)
        return self.run("git", "rev-parse", "HEAD").stdout.strip()

    def ship(self) -> str:
        """dockerize and push the commit; its sha."""
        sha = self.run("git", "rev-parse", "HEAD").stdout.strip()
        assert f"<== dockerize {sha}: ok" in self.pipeline("dockerize").stdout
        assert f"<== push {sha}: ok" in self.pipeline("push").stdout
        return sha


def first_hour(shell: Shell, *init_flags: str) -> str:
    """The README's adopter flow, as init's "next:" list orders it; the deployed sha."""
    said = shell.pipeline("init", *init_flags).stdout
    steps = [line.split("#")[0].strip() for line in said.split("next:\n")[1].splitlines()]
    assert steps[0] == "cp local.env.example local.env"
    shell.run("cp", "local.env.example", "local.env")
    sha = shell.commit("Deploy with ecs-pipeline")
    assert shell.run("git", "status", "--porcelain").stdout == ""  # local.env is ignored, not left out
    assert not shell.run("git", "ls-files", "local.env").stdout

    plan = json.loads(shell.pipeline("plan", "--json").stdout)
    assert plan["steps"][:2] == ["test", "build"] and "deploy" in plan["steps"]
    tested = shell.pipeline("test")
    assert "<== test: " in tested.stdout
    shell.pipeline("build")
    assert f"<== dockerize {sha}: ok" in shell.pipeline("dockerize").stdout
    shell.pipeline("setup")
    assert f"<== push {sha}: ok" in shell.pipeline("push").stdout
    shell.pipeline("setup", "--env", "prod")
    deployed = shell.pipeline("deploy", "--env", "prod").stdout  # no flags: smoke-tested through the ALB
    assert "<== smoke test: ok" in deployed, deployed
    return sha


def test_two_new_repositories_go_from_init_to_prod_and_release_together_from_a_third_directory(
    tmp_path: Path,
    service_env: dict[str, str],
    tool: Path,
    prefix: str,
    aws_cli: Callable[..., Any],
    cleanup: None,
) -> None:
    ledger = Shell(ledger_repo(tmp_path, prefix), service_env, tool)
    audit = Shell(audit_repo(tmp_path, f"{prefix}-audit"), service_env, tool)
    assert "AWS_RESOURCE_NAME_PREFIX" not in service_env

    # Two teams' first hours at once: ledger with init's defaults (service dir ".", port
    # 8080); audit, a second repository with its own start command, path and text.
    with ThreadPoolExecutor(2) as teams:
        ledger_hour = teams.submit(
            first_hour,
            ledger,
            "--base-path",
            "/ledger/",
            "--smoke-text",
            "ledger balanced",
            "--test-command",
            "python3 -m unittest discover -s tests",
        )
        audit_hour = teams.submit(
            first_hour, audit, "--base-path", "/audit/", "--smoke-text", "audit trail kept"
        )
        first = ledger_hour.result()
        audit_hour.result()
    settings = tomllib.loads((ledger.repo / "pyproject.toml").read_text())["tool"]["pipeline"]
    assert (settings["prefix"], settings["serve_command"]) == (prefix, "python3 app.py")
    dockerfile = (ledger.repo / "Dockerfile").read_text()
    assert 'CMD ["python3", "app.py"]' in dockerfile and "COPY --chown=10001:10001 . /srv/\n" in dockerfile
    config = check_ci_config(ledger.repo)
    assert config == []

    status = json.loads(ledger.pipeline("status", "--env", "prod", "--json").stdout)
    assert (status["sha"], status["rolloutState"]) == (first, "COMPLETED") and status["verifiedAt"]
    shown = ledger.pipeline("status", "--env", "prod").stdout
    assert f"prod: {prefix}-service in {prefix}-cluster runs {prefix}-service:" in shown
    logs = ledger.pipeline("logs", "--env", "prod", "--since", "1h").stdout
    assert "ledger listening on" in logs and "served /ledger/" in logs

    # New commits in both, pushed; then one release from a third directory.
    (ledger.repo / "balance.py").write_text('def answer():\n    return "ledger balanced, v2"\n')
    (audit.repo / "audit" / "trail.py").write_text('def answer():\n    return "audit trail kept, v2"\n')
    shas = dict(zip(("ledger", "audit"), both(ledger, audit, "v2"), strict=True))
    releases = tmp_path / "releases"
    releases.mkdir()
    release_file = releases / "v2.toml"
    release_file.write_text(
        f'[[service]]\nproject = "../ledger"\nsha = "{shas["ledger"][:7]}"\nsmoke_text = "ledger balanced, v2"\n'
        f'[[service]]\nproject = "../audit"\nsha = "{shas["audit"][:7]}"\nsmoke_text = "audit trail kept, v2"\n'
    )
    third = Shell(releases, service_env, tool)
    released = third.pipeline("release", "--env", "prod", "--file", "v2.toml")
    out = released.stdout
    ledger_url, audit_url = (
        next(
            w.rstrip(":")
            for w in out.split()
            if w.startswith("http://127.0.0.1:") and w.rstrip(":").endswith(path)
        )
        for path in ("/ledger/", "/audit/")
    )
    assert f"{prefix}-service: GET {ledger_url}: HTTP 200" in out and "'ledger balanced, v2" in out
    assert f"{prefix}-audit-service: GET {audit_url}: HTTP 200" in out and "'audit trail kept, v2" in out
    assert "<== smoke test 2 services: ok" in out
    assert http_get(ledger_url) == (200, "ledger balanced, v2\n")
    assert http_get(audit_url) == (200, "audit trail kept, v2\n")
    before = running_revisions(aws_cli, prefix)

    # One broken: its smoke text no longer matches. Both go back; the smoke step says failed.
    (audit.repo / "audit" / "trail.py").write_text('def answer():\n    return "audit trail lost"\n')
    (ledger.repo / "balance.py").write_text('def answer():\n    return "ledger balanced, v3"\n')
    fixed, broken = both(ledger, audit, "v3")
    release_file.write_text(
        f'[[service]]\nproject = "../ledger"\nsha = "{fixed[:7]}"\nsmoke_text = "ledger balanced, v3"\n'
        f'[[service]]\nproject = "../audit"\nsha = "{broken[:9]}"\nsmoke_text = "audit trail kept"\n'
    )
    failed = third.pipeline("release", "--env", "prod", "--file", "v2.toml", check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "<== smoke test 2 services: failed" in failed.stdout
    assert "why the tasks" not in failed.stdout  # a smoke failure stopped no task
    assert "all 2 changed services were rolled back" in failed.stderr
    assert running_revisions(aws_cli, prefix) == before
    assert http_get(ledger_url) == (200, "ledger balanced, v2\n")
    assert http_get(audit_url) == (200, "audit trail kept, v2\n")


def both(first: Shell, second: Shell, message: str) -> tuple[str, str]:
    """Commit and ship in two repositories at once, as two teams would; their shas."""

    def commit_and_ship(shell: Shell) -> str:
        shell.commit(message)
        return shell.ship()

    with ThreadPoolExecutor(2) as teams:
        shipped = [teams.submit(commit_and_ship, shell) for shell in (first, second)]
        return shipped[0].result(), shipped[1].result()


def running_revisions(aws_cli: Callable[..., Any], prefix: str) -> dict[str, str]:
    found = {}
    for name in (prefix, f"{prefix}-audit"):
        (service,) = aws_cli(
            "ecs", "describe-services", "--cluster", f"{name}-cluster", "--services", f"{name}-service"
        )["services"]
        found[name] = service["taskDefinition"].rsplit("/", 1)[-1]
    return found


def check_ci_config(repo: Path) -> list[str]:
    """init's CircleCI config for this repository: the schema, and the CI policy for every ref."""
    from tests.test_circleci import REFS, aws_access_problems

    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.circle-ci",
            ".circleci/config.yml",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import yaml

    cfg = yaml.safe_load((repo / ".circleci" / "config.yml").read_text())
    return [p for kind, ref in REFS for p in aws_access_problems(cfg, kind, ref, binary="ecs-pipeline")]


# --- a third-party dependency ------------------------------------------------------------

DEPENDENCY = "six==1.17.0"  # a real package from the index, pure Python, no dependencies of its own


def _installs_requirements() -> bool:
    """Whether init writes a Dockerfile that installs requirements.txt (issue 21, item 2):
    asked of init itself, in a scratch repository."""
    from pipeline import init

    probe = Path(tempfile.mkdtemp())
    try:
        (probe / "requirements.txt").write_text(DEPENDENCY + "\n")
        options = init.InitOptions(command="python3 app.py")
        init.run(probe, options, "0+unknown", say=lambda _line: None)
        return "requirements.txt" in (probe / "Dockerfile").read_text().split("COPY", 1)[-1]
    finally:
        shutil.rmtree(probe)


@pytest.mark.skipif(
    not _installs_requirements(),
    reason="waiting for init's requirements Dockerfile and the stack's builds from the host's "
    "index (issue 21 item 2, the deps work)",
)
def test_a_service_with_a_third_party_dependency_builds_from_the_index_and_answers(
    tmp_path: Path,
    service_env: dict[str, str],
    tool: Path,
    prefix: str,
    cleanup: None,
) -> None:
    ledger = Shell(
        _service(
            tmp_path,
            "ledger",
            prefix,
            {
                "requirements.txt": DEPENDENCY + "\n",
                "app.py": SERVER.format(module="balance", name="ledger")
                + '\n\nif __name__ == "__main__":\n    main()\n',
                "balance.py": 'import six\n\n\ndef answer():\n    return f"ledger on six {six.__version__}"\n',
            },
        ),
        service_env,
        tool,
    )
    first_hour(ledger, "--base-path", "/ledger/", "--smoke-text", "ledger on six 1.17.0")
    sha = ledger.run("git", "rev-parse", "HEAD").stdout.strip()
    image = docker.from_env().images.get(f"{prefix}:{sha}")
    # None of the host's index configuration in the image: config, history or any layer's files.
    shown = json.dumps(image.attrs["Config"]) + json.dumps(image.history())
    for word in ("PIP_", "pip.conf", "REQUESTS_CA_BUNDLE", "index-url", "find-links", "cert"):
        assert word not in shown, word
    listing = (
        docker.from_env()
        .containers.run(
            image.id,
            ["sh", "-c", "ls /etc/pip.conf ~/.pip ~/.config/pip 2>&1; env | grep -i pip || true"],
            remove=True,
            network_mode="none",
        )
        .decode()
    )
    assert "No such file" in listing and "PIP_" not in listing
