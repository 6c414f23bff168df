"""pull-and-run, images and serve end to end on the real local stack (their pure parts: tests/test_local_*.py).

Three images of hello_world, built and pushed by the pipeline itself under this
module's own prefix (so their ECR records come from the registry bridge, as after a
real push):

    A  abc1234aaaa...  v1.9.2                      pushed first
    B  abc1234bbbb...  v1.10.0                     pushed second  <- highest version
    C  c0ffee1cccc...  v1.10.0-rc.1, nightly       pushed last    <- latest

`abc1234` is an ambiguous prefix (A and B). Which image runs is read from the
container's org.opencontainers.image.revision label.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from pipeline import ecr, local, verbs
from pipeline.context import Context
from pipeline.git import Revision
from pipeline.selection import HIGHEST_VERSION, LATEST, SHA, Selector
from tests.conftest import local_tags
from tests.helpers import INVOKE, ROOT, context, free_port, held_port, http_get, wait_until

# One worker runs them all: `published` (four builds and pushes) is made once per module.
pytestmark = pytest.mark.xdist_group("local_flow")

A = "abc1234" + "a" * 33
B = "abc1234" + "b" * 33
C = "c0ffee1" + "c" * 33
VERSION_TAGS = {A: ("v1.9.2",), B: ("v1.10.0",), C: ("v1.10.0-rc.1", "nightly")}
REVISION = "org.opencontainers.image.revision"
EXAMPLE = ROOT / "local.env.example"


@dataclass(frozen=True)
class Published:
    prefix: str
    env: dict[str, str]
    registry: str
    digests: dict[str, str]  # sha -> digest

    def container(self, sha: str) -> str:
        return f"{self.prefix}-{sha[:12]}"

    def context(self) -> Context:
        return context(self.env)


def containers_of(prefix: str) -> list[Any]:
    # Filtered by the engine: listing every container races with other tests' (and the local
    # ECS's) containers going away between the list and docker-py's inspect of each.
    found = docker.from_env().containers.list(all=True, filters={"name": f"{prefix}-"})
    return [c for c in found if c.name.startswith(f"{prefix}-")]


@pytest.fixture(scope="module")
def published(stack_environ: dict[str, str]) -> Iterator[Published]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = {**stack_environ, "AWS_RESOURCE_NAME_PREFIX": prefix}
    ctx = context(env)
    settings = ctx.settings
    ctx.clients.aws("ecr").create_repository(repositoryName=prefix)
    login = ecr.login(settings, ctx.clients)
    auth = {"username": login.username, "password": login.password}
    client = ctx.clients.docker()
    digests = {}
    try:
        for sha, tags in VERSION_TAGS.items():
            name = verbs.dockerize(ctx, Revision(sha))
            record = verbs.push(ctx, Revision(sha))
            digests[sha] = record.digest
            for tag in tags:
                client.images.get(name).tag(f"{login.registry}/{prefix}", tag)
                for chunk in client.api.push(
                    f"{login.registry}/{prefix}", tag=tag, auth_config=auth, stream=True, decode=True
                ):
                    assert "error" not in chunk, chunk
                verbs.wait_for_record(ctx, tag, record.digest)
            # ECR here records push times in whole seconds: the next push starts a new one.
            assert record.pushed_at is not None
            wait_until(lambda at=record.pushed_at: time.time() >= at.timestamp() + 1, timeout=3)
        yield Published(prefix, env, login.registry, digests)
    finally:
        for container in containers_of(prefix):
            container.remove(force=True)
        for tag in local_tags(f"{prefix}:", f"{login.registry}/{prefix}:"):
            client.images.remove(tag, force=True, noprune=True)


@pytest.fixture
def env_file(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / f"{uuid.uuid4().hex[:6]}.env"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def pull_and_run(
    published: Published, run_task: Callable[..., Any], tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`invoke pull-and-run <args>` on the published images, with an env file holding
    `env_text` (None: no file there) and a free --port unless `port` names one."""

    def run(
        *args: str, env_text: str | None = "", port: int | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        path = tmp_path / f"{uuid.uuid4().hex[:6]}.env"
        if env_text is not None:
            path.write_text(env_text)
        ports = [] if "--port" in args else ["--port", str(port or free_port())]
        return run_task("pull-and-run", *args, "--env-file", str(path), *ports, env=env or published.env)

    return run


def revision_of(name: str) -> str:
    return str(docker.from_env().containers.get(name).labels[REVISION])


def is_gone(name: str) -> bool:
    try:
        docker.from_env().containers.get(name)
    except docker.errors.NotFound:
        return True
    return False


class Interruptible:
    """`invoke <args>` in its own process group, with SIGINT acting as a terminal's Ctrl-C;
    its output is collected as it comes, so a test can wait for a line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*INVOKE, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout or ()), daemon=True)
        self.reader.start()

    def wait_for(self, text: str, timeout: float = 30) -> None:
        wait_until(lambda: any(text in line for line in self.lines) or self.proc.poll() is not None, timeout)
        assert any(text in line for line in self.lines), "".join(self.lines)

    def stop(self, sig: signal.Signals = signal.SIGINT) -> tuple[int, str]:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        code = self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        return code, "".join(self.lines)


# --- pull-and-run on the stack ---------------------------------------------------------


def test_sha_runs_that_commit_with_the_env_file_and_prints_how_to_stop_it(
    published: Published, pull_and_run: Callable[..., Any]
) -> None:
    secret = uuid.uuid4().hex
    port = free_port()
    proc = pull_and_run(
        "--sha",
        A,
        "--detach",
        env_text=f"BASE_PATH=/custom/\nAPI_TOKEN={secret}\nFROM_SHELL\n",
        port=port,
        env={**published.env, "FROM_SHELL": "passed-through"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    name = published.container(A)
    url = f"http://127.0.0.1:{port}/custom/"
    assert f"{name} answers at {url}" in proc.stdout
    assert "API_TOKEN" in proc.stdout and secret not in proc.stdout + proc.stderr
    assert revision_of(name) == A
    assert http_get(url) == (200, "Hello World!\n")
    assert http_get(f"http://127.0.0.1:{port}/hello/")[0] == 404  # BASE_PATH reached the process
    environment = docker.from_env().containers.get(name).attrs["Config"]["Env"]
    assert {f"API_TOKEN={secret}", "FROM_SHELL=passed-through", f"PORT={port}", "HOST=127.0.0.1"} <= set(
        environment
    )

    stop = next(line for line in proc.stdout.splitlines() if "stop it with:" in line).split("stop it with: ")[
        1
    ]
    assert subprocess.run(stop, shell=True, capture_output=True).returncode == 0
    assert is_gone(name) and http_get(url)[0] == 0


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (Selector(SHA, "abc1234a"), A),
        (Selector(SHA, C[:7]), C),
        (Selector(LATEST), C),
        (Selector(HIGHEST_VERSION), B),
    ],
    ids=["unique-prefix", "short-sha", "latest", "highest-version"],
)
def test_each_selector_runs_its_image_until_stopped(
    published: Published, env_file: Callable[[str], Path], selector: Selector, expected: str
) -> None:
    ctx = published.context()
    running = local.pull_and_run(ctx, selector, str(env_file("")), free_port(), detach=True)
    assert running is not None
    try:
        assert running.container_name == published.container(expected)
        assert revision_of(running.container_name) == expected
        assert http_get(running.url) == (200, "Hello World!\n")
        image = docker.from_env().images.get(running.container.image.id)
        assert (
            f"{published.registry}/{published.prefix}@{published.digests[expected]}"
            in image.attrs["RepoDigests"]
        )
    finally:
        running.stop()
    assert is_gone(running.container_name) and http_get(running.url)[0] == 0


def test_latest_replaces_a_stale_local_copy(published: Published, env_file: Callable[[str], Path]) -> None:
    client = docker.from_env()
    latest_ref = f"{published.registry}/{published.prefix}:{C}"
    client.images.get(f"{published.prefix}:{A}").tag(latest_ref)  # a local copy that is not ECR's
    ctx = published.context()
    running = local.pull_and_run(ctx, Selector(LATEST), str(env_file("")), free_port(), detach=True)
    assert running is not None
    try:
        assert revision_of(running.container_name) == C
        assert client.images.get(latest_ref).labels[REVISION] == C
        assert f"removed the local copy of {latest_ref}" in ctx.out.stream.getvalue()  # type: ignore[attr-defined]
    finally:
        running.stop()


def test_foreground_streams_the_logs_and_ctrl_c_stops_and_removes_it(
    published: Published, env_file: Callable[[str], Path]
) -> None:
    port = free_port()
    args = ["pull-and-run", "--highest-version", "--env-file", str(env_file("")), "--port", str(port)]
    run = Interruptible(args, published.env)
    try:
        run.wait_for("Ctrl-C stops and removes it")
        assert http_get(f"http://127.0.0.1:{port}/hello/")[0] == 200
        assert revision_of(published.container(B)) == B
        run.wait_for('"path": "/hello/", "status": 200')  # its logs stream
    finally:
        code, out = run.stop()
    assert code == 0, out
    assert '"event": "listening"' in out and '"path": "/hello/", "status": 200' in out  # its logs
    assert f"stopped and removed {published.container(B)}" in out
    assert containers_of(published.prefix) == []


def test_a_run_in_the_foreground_is_removed_when_the_task_is_killed(
    published: Published, env_file: Callable[[str], Path]
) -> None:
    port = free_port()
    run = Interruptible(
        ["pull-and-run", "--sha", C, "--env-file", str(env_file("")), "--port", str(port)], published.env
    )
    try:
        run.wait_for("Ctrl-C stops and removes it")
    finally:
        _, out = run.stop(signal.SIGTERM)
    assert f"stopped and removed {published.container(C)}" in out
    assert containers_of(published.prefix) == []


def test_dry_run_pulls_and_starts_nothing(published: Published, pull_and_run: Callable[..., Any]) -> None:
    latest_ref = f"{published.registry}/{published.prefix}:{C}"
    before = docker.from_env().images.get(latest_ref).id
    port = free_port()
    proc = pull_and_run("--latest", "--dry-run", env_text="X=1", port=port)
    assert proc.returncode == 0, proc.stderr
    assert f"container: {published.container(C)}" in proc.stdout
    assert f"url:       http://127.0.0.1:{port}/hello/" in proc.stdout
    assert "dry run: nothing pulled or started" in proc.stdout
    assert docker.from_env().images.get(latest_ref).id == before  # the local copy was not removed
    assert containers_of(published.prefix) == []


def test_run_image_runs_a_local_image_for_the_demo(
    published: Published, env_file: Callable[[str], Path]
) -> None:
    ctx = published.context()
    path = env_file("BASE_PATH=/demo/\n")
    running = local.run_image(ctx, f"{published.prefix}:{B}", path, free_port(), detach=True)
    try:
        assert running.container_name == published.container(B) and running.url.endswith("/demo/")
        assert http_get(running.url) == (200, "Hello World!\n")
    finally:
        running.stop()
    assert is_gone(running.container_name)


# --- images ---------------------------------------------------------------------------


def test_images_lists_what_ecr_holds_newest_first(
    published: Published, run_task: Callable[..., Any], aws_cli: Callable[..., Any]
) -> None:
    proc = run_task("images", "--json", env=published.env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [row["digest"] for row in rows] == [published.digests[sha] for sha in (C, B, A)]
    assert [row["tags"] for row in rows] == [sorted((sha, *VERSION_TAGS[sha])) for sha in (C, B, A)]
    listed = aws_cli("ecr", "describe-images", "--repository-name", published.prefix)["imageDetails"]
    assert {(d["imageDigest"], d["imageSizeInBytes"]) for d in listed} == {
        (r["digest"], r["size"]) for r in rows
    }
    assert rows[0]["pushed_at"] > rows[1]["pushed_at"] > rows[2]["pushed_at"]

    table = run_task("images", env=published.env).stdout.splitlines()
    assert table[0].split() == ["PUSHED", "DIGEST", "SIZE", "TAGS"]
    assert [line.split()[1] for line in table[1:]] == [published.digests[sha][:19] for sha in (C, B, A)]


# --- bad input: one line, the exit code, nothing left running ---------------------------


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


NO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask the metadata address: loopback only
}


@pytest.mark.parametrize(
    ("args", "env_text", "extra_env", "code", "words"),
    [
        ([], "", {}, 2, ["choose one of --sha SHA, --latest or --highest-version"]),
        (["--sha", A, "--latest"], "", {}, 2, ["--sha and --latest were given together"]),
        (["--sha", "deadbee"], "", {}, 2, ["has a sha tag starting with 'deadbee'", "invoke images"]),
        (["--sha", "abc1234"], "", {}, 2, ["matches 2 images", A, B, "give more of the sha"]),
        (["--latest", "--port", "http"], "", {}, 2, ["--port 'http': give a port number 1-65535"]),
        (
            ["--latest"],
            "A=1\nB=2\nthis is not an assignment\n",
            {},
            2,
            ["line 3 is not KEY=VALUE", "local.env.example shows the format"],
        ),
        (["--latest"], None, {}, 2, ["not found; start from the example", f"(`cp {EXAMPLE} "]),
        (
            ["--latest"],
            "",
            {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
            3,
            ["Docker engine is not running"],
        ),
        (["--latest"], "", NO_CREDENTIALS, 3, ["no AWS credentials found", "AWS_ACCESS_KEY_ID"]),
    ],
    ids=[
        "no-selector",
        "two-selectors",
        "unknown-prefix",
        "ambiguous-prefix",
        "bad-port",
        "malformed-env-file",
        "missing-env-file",
        "no-docker",
        "no-credentials",
    ],
)
def test_bad_input(
    published: Published,
    pull_and_run: Callable[..., Any],
    args: list[str],
    env_text: str | None,
    extra_env: dict[str, str],
    code: int,
    words: list[str],
) -> None:
    env = {k: v for k, v in {**published.env, **extra_env}.items() if v}
    proc = pull_and_run(*args, env_text=env_text, env=env)
    one_line_error(proc, code, *words)
    assert containers_of(published.prefix) == []


def test_an_empty_repository_says_how_to_fill_it(
    repository: str, run_task: Callable[..., Any], env_file: Callable[[str], Path]
) -> None:
    proc = run_task("pull-and-run", "--latest", "--env-file", str(env_file("")), "--port", str(free_port()))
    one_line_error(proc, 2, f"no images in ECR repository '{repository}'", "invoke dockerize && invoke push")
    empty = run_task("images")
    assert empty.returncode == 0 and f"no images in ECR repository {repository}" in empty.stdout


def test_a_port_in_use_names_its_holder_before_anything_is_pulled(
    published: Published, pull_and_run: Callable[..., Any]
) -> None:
    client = docker.from_env()
    latest_ref = f"{published.registry}/{published.prefix}:{C}"
    before = client.images.get(latest_ref).id
    with held_port() as port:
        proc = pull_and_run("--latest", port=port)
    one_line_error(proc, 2, f"port {port} on 127.0.0.1 is in use by", f"(pid {os.getpid()})", "--port N")
    assert client.images.get(latest_ref).id == before  # --latest did not even remove the local copy
    assert containers_of(published.prefix) == []


def test_a_name_already_taken_is_refused_before_pulling(
    published: Published, pull_and_run: Callable[..., Any], env_file: Callable[[str], Path]
) -> None:
    ctx = published.context()
    first = local.pull_and_run(ctx, Selector(SHA, A), str(env_file("")), free_port(), detach=True)
    assert first is not None
    try:
        proc = pull_and_run("--sha", A)
        one_line_error(proc, 2, f"a container named {first.container_name} already exists", "docker stop")
        assert http_get(first.url)[0] == 200  # the running one was left alone
    finally:
        first.stop()


# --- serve ---------------------------------------------------------------------------


def test_serve_runs_the_service_without_docker_with_the_env_file(
    environ: dict[str, str], env_file: Callable[[str], Path]
) -> None:
    port, secret = free_port(), uuid.uuid4().hex
    path = env_file(f"PORT={port}\nBASE_PATH=/custom/\nAPI_TOKEN={secret}\n")
    run = Interruptible(["serve", "--env-file", str(path)], environ)
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/custom/")[0] == 200, timeout=20)
        assert http_get(f"http://127.0.0.1:{port}/hello/")[0] == 404
    finally:
        code, out = run.stop()
    assert code == 0, out
    listening = json.loads(next(line for line in out.splitlines() if '"event": "listening"' in line))
    assert (listening["host"], listening["port"]) == ("127.0.0.1", port)
    assert "API_TOKEN" in out and secret not in out
    assert f"at http://127.0.0.1:{port}/custom/" in out and '"event": "stopped"' in out


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("PORT=eighty\nAPI_TOKEN=hunter2\n", ["PORT must be a port number 1-65535"]),
        ("A=1\n'unterminated\n", ["line 2 is not KEY=VALUE"]),
    ],
)
def test_serve_bad_input(
    run_task: Callable[..., Any], env_file: Callable[[str], Path], text: str, words: list[str]
) -> None:
    proc = run_task("serve", "--env-file", str(env_file(text)))
    line = one_line_error(proc, 2, *words)
    assert "eighty" not in line and "hunter2" not in proc.stdout + proc.stderr


def test_serve_refuses_a_port_in_use(run_task: Callable[..., Any], env_file: Callable[[str], Path]) -> None:
    with held_port() as port:
        proc = run_task("serve", "--env-file", str(env_file(f"PORT={port}\n")))
    one_line_error(
        proc, 2, f"port {port} on 127.0.0.1 is in use by", f"(pid {os.getpid()})", "set another PORT"
    )


# --- local.env ------------------------------------------------------------------------


def test_local_env_is_git_ignored_and_docker_ignored(tmp_path: Path) -> None:
    from docker.utils.build import exclude_paths

    paths = ["local.env", "hello_world/local.env"]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.split() == paths
    context = tmp_path / "context"
    context.mkdir()
    for name in ("app.py", "local.env"):
        (context / name).write_text("")
    patterns = (ROOT / "hello_world" / ".dockerignore").read_text().splitlines()
    assert exclude_paths(str(context), patterns) == {"app.py"}  # what docker build would send
