"""build / test / dockerize / push on the real local stack: Docker engine, registry, moto, aws CLI."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from pipeline import stack, verbs
from pipeline.errors import StepFailed
from pipeline.git import Revision
from tests.helpers import ROOT, engine, free_port, http_get, wait_until
from tests.registry_faults import Fault, FaultyRegistry


@pytest.fixture
def sha() -> str:
    return uuid.uuid4().hex[:12] + "0" * 28


@pytest.fixture
def built(run_task: Callable[..., Any], prefix: str, sha: str) -> Iterator[str]:
    proc = run_task("dockerize", "--sha", sha)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    name = f"{prefix}:{sha}"
    yield name
    _remove_local(prefix)


@pytest.fixture
def small_build(prefix: str, sha: str) -> Iterator[str]:
    """A few-byte image under the local name `dockerize` gives the commit's build. A push
    through a fault proxy goes to a registry address Docker has never pushed to, so it
    compresses and sends every layer: hello_world's 145-MB base would cost seconds of CPU
    and prove nothing more about how a dropped push is retried."""
    import io
    import tarfile

    files = {"Dockerfile": b"FROM scratch\nCOPY token /token\n", "token": uuid.uuid4().hex.encode()}
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for path, body in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    context.seek(0)
    name = f"{prefix}:{sha}"
    engine().images.build(fileobj=context, custom_context=True, tag=name, rm=True)
    yield name
    _remove_local(prefix)


def _remove_local(prefix: str) -> None:
    client = engine()
    for image in client.images.list(name=prefix):
        for tag in image.tags:
            client.images.remove(tag, force=True, noprune=True)


@pytest.fixture
def container(built: str) -> Iterator[tuple[Any, int]]:
    port = free_port()
    client = docker.from_env()
    run = client.containers.run(built, detach=True, network_mode="host", environment={"PORT": str(port)})
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/hello/health")[0] == 200)
    yield run, port
    run.remove(force=True)


def test_build_and_test_tasks_run_the_configured_commands(run_task: Callable[..., Any]) -> None:
    build = run_task("build")
    assert build.returncode == 0 and "$ python -m compileall -q hello_world" in build.stdout
    test = run_task("test")
    assert test.returncode == 0 and "passed" in test.stdout


def test_dockerized_image_says_hello_at_its_base_path(
    container: tuple[Any, int], built: str, sha: str
) -> None:
    _, port = container
    assert http_get(f"http://127.0.0.1:{port}/hello/") == (200, "Hello World!\n")
    status, body = http_get(f"http://127.0.0.1:{port}/hello/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    attrs = docker.from_env().images.get(built).attrs
    labels = attrs["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == sha
    assert labels["org.opencontainers.image.source"] == "https://github.com/example/ecs-pipeline"
    assert labels["org.opencontainers.image.created"].endswith("+00:00")
    assert attrs["Config"]["User"] == "10001:10001"


def test_one_log_line_per_request(container: tuple[Any, int]) -> None:
    run, port = container
    http_get(f"http://127.0.0.1:{port}/hello/")
    lines = wait_until(
        lambda: [json.loads(line) for line in run.logs().decode().splitlines() if '"path": "/hello/"' in line]
    )
    assert lines == [{"method": "GET", "path": "/hello/", "status": 200, "ms": lines[0]["ms"]}]


def test_sigterm_lets_the_in_flight_request_finish(container: tuple[Any, int]) -> None:
    run, port = container
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /hello/ HTTP/1.1\r\nHost: local\r\n")  # request not yet complete
        wait_until(lambda: True)
        run.kill(signal="SIGTERM")
        wait_until(lambda: "stopping" in run.logs().decode())
        conn.sendall(b"Connection: close\r\n\r\n")
        response = b""
        while chunk := conn.recv(4096):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"Hello World!\n")
    assert run.wait(timeout=15)["StatusCode"] == 0
    assert http_get(f"http://127.0.0.1:{port}/hello/")[0] == 0  # no longer listening


def test_a_code_only_change_rebuilds_only_the_last_layer(
    make_context: Callable[..., Any], tmp_path: Path, environ: dict[str, str]
) -> None:
    shutil.copytree(
        ROOT / "hello_world", tmp_path / "hello_world", ignore=shutil.ignore_patterns("__pycache__")
    )
    ctx = make_context(root=tmp_path)
    client = docker.from_env()
    first = verbs.dockerize(ctx, Revision("aaaaaaa"))
    (tmp_path / "hello_world" / "app.py").write_text(
        (tmp_path / "hello_world" / "app.py").read_text() + "\n# v2\n"
    )
    second = verbs.dockerize(ctx, Revision("bbbbbbb"))
    try:
        one, two = (client.images.get(n).attrs["RootFS"]["Layers"] for n in (first, second))
        assert len(one) == len(two) and one[:-1] == two[:-1] and one[-1] != two[-1]
    finally:
        for name in (first, second):
            client.images.remove(name, force=True, noprune=True)


def test_the_same_commit_built_again_is_the_same_image_after_another_build_made_newer_copies_of_its_steps(
    make_context: Callable[..., Any], tmp_path: Path
) -> None:
    # A service of this test's own (the token keeps its steps apart from every other build),
    # committed, so the image's created label is the commit's time.
    service = tmp_path / "hello_world"
    service.mkdir()
    (service / "Dockerfile").write_text(
        f"FROM {stack.LOCAL_BASE_IMAGE}\nLABEL test.token={uuid.uuid4().hex}\n"
        "RUN echo built > /built.txt\nCOPY app.txt /app.txt\n"
    )
    (service / "app.txt").write_text("v1\n")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "v1"]):
        subprocess.run([*git, *argv], check=True, capture_output=True)
    sha = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    ctx = make_context(root=tmp_path)
    client = docker.from_env()
    copy = f"copy-{uuid.uuid4().hex[:8]}:latest"
    name = verbs.dockerize(ctx, Revision(sha))
    try:
        first = client.images.get(name).id
        # Another build of the same steps without the cache (a parallel job, --no-cache):
        # newer copies of each step, which the engine's cache otherwise prefers.
        for chunk in client.api.build(path=str(service), tag=copy, nocache=True, rm=True, decode=True):
            assert "error" not in chunk, chunk
        assert client.images.get(copy).id != first
        assert verbs.dockerize(ctx, Revision(sha)) == name
        assert client.images.get(name).id == first
    finally:
        for each in (name, copy):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(each, force=True)


def test_a_failing_build_shows_the_failing_step(make_context: Callable[..., Any], tmp_path: Path) -> None:
    (tmp_path / "hello_world").mkdir()
    (tmp_path / "hello_world" / "Dockerfile").write_text(
        f"FROM {stack.LOCAL_BASE_IMAGE}\nRUN echo compiling-widgets && echo 'widget missing' >&2 && exit 3\n"
    )
    ctx = make_context(root=tmp_path)
    with pytest.raises(
        StepFailed, match=r"docker build failed at step 2/\d+ \(RUN echo compiling-widgets"
    ) as info:
        verbs.dockerize(ctx, Revision("ccccccc"))
    assert "returned a non-zero code: 3" in info.value.message
    shown = ctx.out.stream.getvalue()
    # The step's stderr (which Docker wraps in terminal colours) reads as plain text.
    assert "compiling-widgets" in shown and "widget missing" in shown
    assert "\x1b" not in shown + info.value.message and "[91m" not in shown, repr(shown)


class VanishingCache:
    """STAND-IN for the engine at the Docker seam: the first build fails as a real one did when
    a parallel job removed the cached layer it was reusing (the engine's own error text); the
    next builds succeed."""

    def __init__(self, failures: int) -> None:
        self.failures, self.builds = failures, 0
        self.api = self

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.builds += 1
        yield {"stream": "Step 19/21 : LABEL org.opencontainers.image.created=2026-12-03\n"}
        yield {"stream": " ---> Using cache\n"}
        if self.builds <= self.failures:
            yield {
                "error": 'unable to find image "sha256:04a660e951fbad864b287ca6699346a462030659a9d22a7785e0bb9882f983b0"'
            }
        else:
            yield {"aux": {"ID": "sha256:" + "b" * 64}}


def spec() -> Any:
    from pipeline.image import BuildSpec

    return BuildSpec(context=".", dockerfile="Dockerfile", tag="svc:abc", labels={}, buildargs={})


def test_a_build_whose_cached_layer_is_removed_meanwhile_is_built_again_once(
    make_context: Callable[..., Any],
) -> None:
    from pipeline import image
    from pipeline.clients import Clients

    ctx = make_context()
    engine = VanishingCache(failures=1)
    assert image.build(spec(), Clients(docker_factory=lambda: engine), ctx.out) == "sha256:" + "b" * 64
    assert engine.builds == 2
    assert "a cached layer this build was using was removed meanwhile" in ctx.out.stream.getvalue()


def test_a_build_whose_cached_layer_keeps_vanishing_fails_with_the_engines_message(
    make_context: Callable[..., Any],
) -> None:
    from pipeline import image
    from pipeline.clients import Clients

    engine = VanishingCache(failures=2)
    with pytest.raises(StepFailed, match=r'failed at step 19/21 .*unable to find image "sha256:04a6'):
        image.build(spec(), Clients(docker_factory=lambda: engine), make_context().out)
    assert engine.builds == 2


def registry_tags(environ: dict[str, str], repo: str) -> list[str]:
    request = urllib.request.Request(
        f"http://{environ['ECR_ENDPOINT']}/v2/{repo}/tags/list",
        headers={"Authorization": stack.registry_auth_header()},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return list(json.loads(resp.read())["tags"])


def test_push_logs_in_pushes_and_ecr_lists_the_digest(
    run_task: Callable[..., Any],
    built: str,
    repository: str,
    sha: str,
    environ: dict[str, str],
    aws_cli: Callable[..., Any],
) -> None:
    proc = run_task("push", "--sha", sha)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert registry_tags(environ, repository) == [sha]
    (line,) = [x for x in proc.stdout.splitlines() if "pushed " in x]
    digest = line.rsplit("@", 1)[1]
    images = aws_cli("ecr", "describe-images", "--repository-name", repository)["imageDetails"]
    assert [(i["imageTags"], i["imageDigest"]) for i in images] == [([sha], digest)]
    request = urllib.request.Request(
        f"http://{environ['ECR_ENDPOINT']}/v2/{repository}/manifests/{digest}",
        headers={
            "Authorization": stack.registry_auth_header(),
            "Accept": "application/vnd.docker.distribution.manifest.v2+json",
        },
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        layers = json.loads(resp.read())["layers"]
    assert images[0]["imageSizeInBytes"] == sum(layer["size"] for layer in layers) > 10_000_000


def test_the_registry_refuses_a_push_without_login(
    built: str, repository: str, environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client with no credentials: not even a `docker login` someone ran on this machine
    # (docker-py reads ~/.docker/config.json unless DOCKER_CONFIG names a config that exists).
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    client = docker.from_env()
    target = f"{environ['ECR_ENDPOINT']}/{repository}"
    client.images.get(built).tag(target, "nologin")
    output = client.api.push(target, tag="nologin", stream=True, decode=True)
    errors = [chunk["error"] for chunk in output if "error" in chunk]
    assert errors and "no basic auth credentials" in errors[0]


def test_push_to_a_missing_repository_says_how_to_create_it(
    run_task: Callable[..., Any], built: str, prefix: str, sha: str
) -> None:
    proc = run_task("push", "--sha", sha)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: ECR repository '{prefix}' does not exist in us-east-1; create it with "
        f"`invoke setup` or `aws ecr create-repository --repository-name {prefix}`"
    )


@pytest.fixture
def strict_registry(tmp_path: Path) -> Iterator[str]:
    """A second real registry that wants other credentials than ECR hands out."""
    port = free_port()
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", "AWS", "another-password"], capture_output=True, text=True
    ).stdout
    (tmp_path / "htpasswd").write_text(htpasswd)
    (tmp_path / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: r\n    path: {tmp_path / 'htpasswd'}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(tmp_path / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/v2/")[0] == 401)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_a_refused_login_is_one_line(
    run_task: Callable[..., Any],
    built: str,
    repository: str,
    sha: str,
    environ: dict[str, str],
    strict_registry: str,
) -> None:
    proc = run_task("push", "--sha", sha, env={**environ, "ECR_ENDPOINT": strict_registry})
    assert proc.returncode == 3
    assert proc.stderr.startswith(f"error: registry {strict_registry} refused the login")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_an_unreachable_registry_is_one_line(
    run_task: Callable[..., Any], built: str, repository: str, sha: str, environ: dict[str, str]
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    proc = run_task("push", "--sha", sha, env={**environ, "ECR_ENDPOINT": closed})
    assert proc.returncode == 3
    assert proc.stderr.startswith(f"error: registry {closed} unreachable")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["dockerize", "--sha", "nothex!"], {}, 2, "error: --sha 'nothex!': not a commit id"),
        (
            ["dockerize"],
            {"AWS_RESOURCE_NAME_PREFIX": ""},
            2,
            "error: [tool.pipeline] prefix: not set; add prefix =",
        ),
        (
            ["dockerize"],
            {"AWS_RESOURCE_NAME_PREFIX": "Bad Name"},
            2,
            "error: AWS_RESOURCE_NAME_PREFIX: 'Bad Name' is not a valid name",
        ),
        (
            ["dockerize", "--sha", "abcdef1"],
            {"DOCKER_HOST": "unix:///tmp/no-such-docker.sock"},
            3,
            "error: Docker engine is not running or not reachable",
        ),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(
    run_task: Callable[..., Any],
    environ: dict[str, str],
    args: list[str],
    env: dict[str, str],
    code: int,
    message: str,
) -> None:
    proc = run_task(*args, env={**environ, **env})
    assert proc.returncode == code
    assert proc.stderr.startswith(message) and len(proc.stderr.strip().splitlines()) == 1


def test_stack_env_can_be_evaluated_by_a_shell(environ: dict[str, str]) -> None:
    script = 'eval "$(python -m invoke stack.env)" && echo "$AWS_ENDPOINT_URL $ECR_ENDPOINT $AWS_ACCOUNT_ID"'
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env=environ, capture_output=True, text=True)
    # The stack's ports are configurable (STACK_*_PORT): compare with what it says it uses.
    assert proc.stdout.split() == [environ["AWS_ENDPOINT_URL"], environ["ECR_ENDPOINT"], "123456789012"]


def test_the_dockerfile_is_hadolint_clean() -> None:
    proc = subprocess.run(
        ["hadolint", str(ROOT / "hello_world" / "Dockerfile")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout


@pytest.mark.heavy
def test_a_commit_already_in_ecr_is_not_pushed_again(
    run_task: Callable[..., Any], built: str, repository: str, sha: str, aws_cli: Callable[..., Any]
) -> None:
    first = run_task("push", "--sha", sha)
    assert first.returncode == 0, first.stderr
    again = run_task("push", "--sha", sha)
    assert again.returncode == 0, again.stderr
    assert f"{repository}:{sha} is already in ECR (sha256:" in again.stdout
    assert "Pushed" not in again.stdout and "Preparing" not in again.stdout
    images = aws_cli("ecr", "describe-images", "--repository-name", repository)["imageDetails"]
    assert len(images) == 1


def test_cache_from_ecr_reuses_the_pushed_images_layers(
    make_context: Callable[..., Any], tmp_path: Path, repository: str, environ: dict[str, str]
) -> None:
    registry = environ["ECR_ENDPOINT"]  # the stack's registry port is configurable
    # A RUN step that no build on this engine has cached before.
    (tmp_path / "hello_world").mkdir()
    (tmp_path / "hello_world" / "Dockerfile").write_text(
        f"FROM {stack.LOCAL_BASE_IMAGE}\nRUN echo {uuid.uuid4().hex} > /marker\n"
    )
    ctx = make_context(root=tmp_path)
    client = docker.from_env()

    def build(sha: str, cached: bool) -> str:
        ctx.out.stream.truncate(0)
        ctx.out.stream.seek(0)
        revision = Revision(sha)
        verbs.dockerize(ctx, revision, verbs.cache_from_ecr(ctx) if cached else ())
        log = ctx.out.stream.getvalue()
        return log[log.index("RUN echo") :]

    def forget_local_images() -> None:  # as on a fresh CI machine: no image, no layer cache
        for image in client.images.list(name=repository) + client.images.list(
            name=f"{registry}/{repository}"
        ):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(image.id, force=True)

    build("a" * 40, cached=False)
    verbs.push(ctx, Revision("a" * 40))
    forget_local_images()
    assert "Using cache" not in build("b" * 40, cached=False)
    forget_local_images()
    assert "Using cache" in build("c" * 40, cached=True)
    assert f"{registry}/{repository}:{'a' * 40} is sha256:" in ctx.out.stream.getvalue()
    forget_local_images()


def test_cache_from_an_empty_repository_only_warns(
    make_context: Callable[..., Any], repository: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verbs.cache_from_ecr(make_context()) == ()
    assert f"warning: no layer cache: ECR holds no image of {repository} yet" in capsys.readouterr().err


# --- a registry that drops pushes -------------------------------------------------------


@pytest.mark.heavy
@pytest.mark.parametrize("fault", ["503", "drop"])
def test_a_push_the_registry_drops_is_retried_and_lands_once(
    run_task: Callable[..., Any],
    small_build: str,
    repository: str,
    sha: str,
    environ: dict[str, str],
    aws_cli: Callable[..., Any],
    fault: Fault,
) -> None:
    with FaultyRegistry(environ["ECR_ENDPOINT"], failures=2, fault=fault) as registry:
        proc = run_task("push", "--sha", sha, env={**environ, "ECR_ENDPOINT": registry.address})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert registry.failed == 2
    assert proc.stderr.count("(retrying)") == 2
    assert registry_tags(environ, repository) == [sha]
    images = aws_cli("ecr", "describe-images", "--repository-name", repository)["imageDetails"]
    assert [i["imageTags"] for i in images] == [[sha]]


@pytest.mark.heavy
def test_a_registry_that_keeps_dropping_the_push_is_one_line_and_exit_3(
    run_task: Callable[..., Any],
    small_build: str,
    repository: str,
    sha: str,
    environ: dict[str, str],
    aws_cli: Callable[..., Any],
) -> None:
    with FaultyRegistry(environ["ECR_ENDPOINT"], failures=99) as registry:
        proc = run_task("push", "--sha", sha, env={**environ, "ECR_ENDPOINT": registry.address})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert registry.failed == 4  # every attempt reached the registry; none more
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: push to {registry.address} failed after retries: ")
    assert "Traceback" not in proc.stderr
    assert aws_cli("ecr", "describe-images", "--repository-name", repository)["imageDetails"] == []
