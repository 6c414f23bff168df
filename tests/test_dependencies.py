"""Services with third-party dependencies: the base image's contract, the wheelhouse's
decisions as tables, and a service whose requirements.txt names a real package from the
index, built by the pipeline on this engine (no bridge, so no network in RUN steps),
deployed on the local stack and answering through its load balancer, its image then
searched for the host's pip configuration (layers, config, history)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from pipeline import init, wheelhouse
from pipeline.stack import LOCAL_BASE_IMAGE
from tests.conftest import remove_services
from tests.helpers import INVOKE, ROOT, http_get

SCAFFOLD = ROOT / "pipeline" / "scaffold"
VALUES = {
    "port": 9000,
    "base_path": "/x/",
    "service_dir": "app",
    "copy_to": "/srv/app/",
    "cmd": '["python3", "-m", "app"]',
    "command_text": "python3 -m app",
}

# --- deciding (pure) ------------------------------------------------------------


def test_the_scaffold_with_requirements_has_a_dependency_stage_before_the_code(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("humanize\n")
    text = init.dockerfile_text(tmp_path, VALUES)
    assert wheelhouse.deps_stage(text) == wheelhouse.DepsStage("deps", ("requirements.txt",))
    # The venv's layer comes before the code's, so a code-only change reuses it.
    assert text.index("COPY --from=deps /opt/venv /opt/venv") < text.index(
        "COPY --chown=10001:10001 . /srv/app/"
    )


def test_the_scaffold_with_pyproject_dependencies_installs_them_and_without_any_has_no_stage(
    tmp_path: Path,
) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["humanize>=4"]\n')
    text = init.dockerfile_text(tmp_path, VALUES)
    assert wheelhouse.deps_stage(text) == wheelhouse.DepsStage("deps", ("pyproject.toml",))
    assert "tomllib" in text
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert wheelhouse.deps_stage(init.dockerfile_text(tmp_path, VALUES)) is None


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("requirements.txt", "humanize\n"),
        ("pyproject.toml", '[project]\nname = "x"\ndependencies = ["six"]\n'),
    ],
)
def test_the_scaffolds_with_a_dependency_stage_lint_clean(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    (tmp_path / "Dockerfile").write_text(init.dockerfile_text(tmp_path, VALUES))
    hadolint = Path(sys.executable).parent / "hadolint"
    lint = subprocess.run([str(hadolint), str(tmp_path / "Dockerfile")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        ("FROM python:3.11-slim\nCOPY requirements.txt ./\n", None),  # no DEPS_BASE: nothing to resolve
        (
            "ARG DEPS_BASE=base\nFROM x AS base\nFROM ${DEPS_BASE} AS deps\n"
            "COPY --chown=0:0 req/a.txt req/b.txt /tmp/\nCOPY --from=base /x /y\nRUN pip install\n"
            "FROM base\nCOPY . /srv/\n",
            wheelhouse.DepsStage("deps", ("req/a.txt", "req/b.txt")),
        ),
        (
            'ARG DEPS_BASE\nFROM x\nFROM $DEPS_BASE\nCOPY ["requirements.txt", \\\n  "/d/"]\n',
            wheelhouse.DepsStage("1", ("requirements.txt",)),
        ),
        ("FROM x AS base\nARG DEPS_BASE=base\nFROM ${DEPS_BASE}\nCOPY r.txt /\n", None),  # a stage's ARG
    ],
)
def test_the_dependency_stage_is_the_one_built_from_deps_base(
    dockerfile: str, expected: wheelhouse.DepsStage | None
) -> None:
    assert wheelhouse.deps_stage(dockerfile) == expected


def test_the_target_is_the_base_images_python_and_platforms() -> None:
    probe = {
        "version": "3.11",
        "implementation": "cpython",
        "tags": [
            "cp311-cp311-manylinux_2_36_x86_64",
            "cp311-abi3-manylinux_2_36_x86_64",
            "cp311-none-manylinux_2_36_x86_64",
            "cp310-abi3-manylinux_2_17_x86_64",
            "py3-none-any",
        ],
    }
    target = wheelhouse.target_of(probe)
    assert target == wheelhouse.Target(
        "3.11", "cp", ("cp311", "abi3", "none"), ("manylinux_2_36_x86_64", "manylinux_2_17_x86_64")
    )
    command = wheelhouse.download_command("py", target, "req.txt", "out")
    assert command[:4] == ["py", "-m", "pip", "download"] and "--only-binary=:all:" in command
    assert command.count("--platform") == 2 and command.count("--abi") == 3


@pytest.mark.parametrize(
    ("mode", "bridge", "expected"),
    [("auto", False, True), ("auto", True, False), ("always", True, True), ("never", False, False)],
)
def test_a_wheelhouse_is_made_only_where_builds_have_no_network_unless_told(
    mode: str, bridge: bool, expected: bool
) -> None:
    assert wheelhouse.wanted(mode, bridge) is expected


def test_the_wheelhouse_pip_conf_says_only_no_index_and_where_the_wheels_are() -> None:
    assert wheelhouse.PIP_CONF == "[global]\nno-index = true\nfind-links = /wheelhouse\n"


# --- the base image's contract ---------------------------------------------------


def test_the_local_base_image_keeps_the_slim_images_contract(stack_environ: dict[str, str]) -> None:
    base = stack_environ.get("BASE_IMAGE", LOCAL_BASE_IMAGE)
    script = (
        "set -e; command -v python python3 pip pip3; /usr/local/bin/python -V; pip --version;"
        " test ! -e /usr/lib/python3.11/EXTERNALLY-MANAGED;"
        " python -c 'import sys; assert \"/usr/local/lib/python3.11/site-packages\" in sys.path, sys.path';"
        " python -m venv /tmp/v && /tmp/v/bin/python -c 'import ssl, http.client, sqlite3'; echo LANG=$LANG"
    )
    out = docker.from_env().containers.run(base, ["sh", "-c", script], network_mode="none", remove=True)
    text = out.decode()
    assert "/usr/local/bin/python" in text or "/usr/bin/python" in text
    assert "pip " in text and "LANG=C.UTF-8" in text


# --- a real service with a real package, on the local stack ----------------------

APP = """\
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import humanize

BASE = os.environ.get("BASE_PATH", "/sizes/")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == BASE + "health":
            body = "ok"
        elif path == BASE:
            body = "sizes: " + humanize.naturalsize(1_500_000)
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("", int(os.environ.get("PORT", "9000"))), Handler).serve_forever()
"""
TEXT = "sizes: 1.5 MB"


def host_pip_settings() -> list[str]:
    """The values of the host's pip configuration (files and PIP_*): what must stay out."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout.splitlines()
    values = [line.split("=", 1)[1].strip("'\"") for line in listed if "=" in line]
    values += [v for k, v in os.environ.items() if k.startswith("PIP_")]
    words = {word for value in values for word in value.split() if "/" in word}  # paths and URLs
    return sorted(words)


def added_layers(client: Any, image: str, base: str) -> Iterator[tarfile.TarFile]:
    """The layers the service's Dockerfile added on top of the base, as tar files."""
    base_layers = len(client.images.get(base).attrs["RootFS"]["Layers"])
    saved = io.BytesIO(b"".join(client.images.get(image).save()))
    with tarfile.open(fileobj=saved) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"][base_layers:]:
            data = archive.extractfile(layer)
            assert data is not None
            with tarfile.open(fileobj=io.BytesIO(data.read())) as layer_tar:
                yield layer_tar


@pytest.fixture
def service(tmp_path: Path, environ: dict[str, str]) -> Iterator[tuple[Path, dict[str, str]]]:
    repo = tmp_path / "sizes"
    (repo / "app").mkdir(parents=True)
    (repo / "app" / "__main__.py").write_text(APP)
    (repo / "app" / "requirements.txt").write_text("humanize==4.17.0\n")
    env = {**environ, "PYTHONPATH": str(ROOT)}
    yield repo, env
    invoke_in(repo, env, "teardown", "--yes", check=False)


def invoke_in(repo: Path, env: dict[str, str], *args: str, check: bool = True) -> str:
    proc = subprocess.run([*INVOKE, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, f"invoke {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def commit(repo: Path, message: str) -> str:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", message], cwd=repo, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()


def test_a_service_with_a_real_package_builds_deploys_holds_no_host_pip_settings_and_ci_reuses_its_packages(
    service: tuple[Path, dict[str, str]], prefix: str, aws_cli: Callable[..., Any]
) -> None:
    repo, env = service
    cli = [sys.executable, "-c", "from pipeline.cli import main; main()"]
    init_flags = [
        "--service-dir",
        "app",
        "--container-port",
        "9000",
        "--base-path",
        "/sizes/",
        "--smoke-text",
        TEXT,
    ]
    subprocess.run([*cli, "init", *init_flags], cwd=repo, env=env, check=True, capture_output=True)
    assert "FROM ${DEPS_BASE} AS deps" in (repo / "app" / "Dockerfile").read_text()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    sha = commit(repo, "sizes")

    built = invoke_in(repo, env, "dockerize")
    assert "dependencies:" in built  # the wheelhouse was made (or taken from the cache)
    for step in (("setup",), ("push",), ("setup", "--env", "prod")):
        invoke_in(repo, env, *step)
    # The dependency stage went to ECR beside the image, under its packages' key, first.
    key = docker.from_env().images.get(f"{prefix}:{sha}").labels[wheelhouse.LABEL]
    listed = aws_cli("ecr", "describe-images", "--repository-name", prefix)["imageDetails"]
    by_tag = {tag: d["imagePushedAt"] for d in listed for tag in d.get("imageTags", [])}
    assert set(by_tag) == {sha, wheelhouse.cache_tag(key)}
    assert by_tag[wheelhouse.cache_tag(key)] <= by_tag[sha]
    deployed = invoke_in(repo, env, "deploy", "--env", "prod")
    assert "smoke" in deployed

    # It answers through the load balancer, with the package's own output.
    dns = aws_cli("elbv2", "describe-load-balancers")["LoadBalancers"]
    mine = [lb["DNSName"] for lb in dns if lb["LoadBalancerName"].startswith(prefix)]
    assert len(mine) == 1, dns
    status, body = http_get(f"http://{mine[0]}/sizes/")
    assert (status, body.strip()) == (200, TEXT)

    # None of the host's pip configuration anywhere in the image.
    client = docker.from_env()
    image = f"{prefix}:{sha}"
    attrs = client.images.get(image).attrs
    history = "\n".join(h.get("CreatedBy", "") for h in client.api.history(image))
    config = json.dumps(attrs["Config"])
    forbidden = host_pip_settings()
    assert forbidden, "the host's pip has no configuration to look for"
    for value in forbidden:
        assert value not in history and value not in config, value
    for text in (history, config):
        assert "wheelhouse" not in text and "PIP_" not in text.replace("PIP_CONFIG_FILE", "")
    host_ca = Path(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"))
    host_ca_digest = hashlib.sha256(host_ca.read_bytes()).hexdigest() if host_ca.is_file() else ""
    base = env.get("BASE_IMAGE", LOCAL_BASE_IMAGE)
    names: list[str] = []
    for layer in added_layers(client, image, base):
        for member in layer.getmembers():
            names.append(member.name)
            if not member.isfile():
                continue
            data = layer.extractfile(member).read()  # type: ignore[union-attr]
            assert hashlib.sha256(data).hexdigest() != host_ca_digest, member.name
            if member.name.endswith((".conf", ".cfg", ".ini", ".txt", ".pth", ".json", ".toml")):
                content = data.decode(errors="replace")
                for value in forbidden:
                    assert value not in content, f"{value} in {member.name}"
    assert any(n.startswith("opt/venv/") and "humanize" in n for n in names)
    assert not [n for n in names if n.endswith(".whl") or n.rsplit("/", 1)[-1] in ("pip.conf", "pip.ini")]
    assert not [n for n in names if n.startswith(("wheelhouse", "tmp/deps"))]

    # CI's empty machine: no local image of the service, no wheelhouse cache. The next
    # commit's build takes the dependency stage from ECR: nothing resolved, and the
    # packages' layer is the pushed one, byte for byte.
    packages = list(attrs["RootFS"]["Layers"])
    remove_services(env, prefix)  # its task's container, and the image the local ECS pulled
    for tag in (image, f"{prefix}:{wheelhouse.cache_tag(key)}"):
        client.images.remove(tag)
    (repo / "app" / "__main__.py").write_text(APP + "# the next commit\n")
    next_sha = commit(repo, "next")
    empty = {**env, "XDG_CACHE_HOME": str(repo.parent / "empty-cache")}
    seeded = invoke_in(repo, empty, "dockerize", "--cache-from-ecr")
    assert "installed already in" in seeded and "resolving" not in seeded, seeded
    rebuilt = client.images.get(f"{prefix}:{next_sha}").attrs["RootFS"]["Layers"]
    assert rebuilt[:-1] == packages[:-1] and rebuilt[-1] != packages[-1]  # only the code's layer differs
