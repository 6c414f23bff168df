"""Dependencies for builds that have no network: a wheelhouse resolved by the host's pip.

On an engine without a bridge (the local stack, CI here) a build's RUN steps have no
network, and a build given the host's network meets an intercepting proxy the image
does not trust. The host's own pip is already configured for all of that (index, extra
indexes, find-links, CA bundle, constraints), so it resolves the packages, as wheels for
the base image's own Python and platform. `dockerize` puts them in a local image, the
base plus /wheelhouse (the wheels and a pip.conf that says only "no index, find links
here"), and passes it as the DEPS_BASE build argument. The Dockerfile's dependency stage
builds from it and installs; the final image copies the installed packages, never the
wheels, and no pip setting of the host reaches a layer, the image config or its history.
On a laptop nothing is passed: DEPS_BASE names the Dockerfile's own base stage, the
pip.conf path is absent (pip ignores it) and pip installs from the index.

    ARG DEPS_BASE=base
    FROM ${BASE_IMAGE} AS base
    ...
    FROM ${DEPS_BASE} AS deps
    COPY requirements.txt ./
    RUN PIP_CONFIG_FILE=/wheelhouse/pip.conf pip install ... -r requirements.txt

What the dependency stage copies from the context is what is resolved: a requirements
file as is (`-r`), a `pyproject.toml` by its `[project] dependencies`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clients import Clients
from .config import Settings
from .errors import ConfigError, StepFailed, first_line
from .output import Output

ARG = "DEPS_BASE"  # the build argument naming the dependency stage's base
DIRECTORY = "/wheelhouse"  # in the DEPS_BASE image
# Only "no index, find links here": the host's settings stay on the host.
PIP_CONF = f"[global]\nno-index = true\nfind-links = {DIRECTORY}\n"
IMAGE = "ecs-pipeline/wheelhouse"  # local only, tagged by content; never pushed
CACHE_PREFIX = "deps-"  # the dependency stage's image in the service's repository
LABEL = "ecs-pipeline.dependencies"  # on the image: the key of the packages it was built with
_IMAGE_DOCKERFILE = f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nCOPY wheelhouse/ {DIRECTORY}/\n"
MODES = ("auto", "always", "never")  # PIPELINE_WHEELHOUSE; auto: when the engine has no bridge
_KEEP = 5  # wheelhouses kept in the cache, newest first

# Run in the base image: the wheel tags its Python accepts (pip's vendored packaging).
_PROBE = (
    "import json, sys; from pip._vendor.packaging.tags import sys_tags; "
    "print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
    "'implementation': sys.implementation.name, 'tags': [str(t) for t in sys_tags()]}))"
)


@dataclass(frozen=True)
class DepsStage:
    """The Dockerfile's dependency stage (FROM ${DEPS_BASE}): its name and the files it
    copies from the context (what the wheelhouse resolves)."""

    stage: str
    files: tuple[str, ...]  # context-relative


@dataclass(frozen=True)
class Target:
    """The base image's Python, as pip's download options say it."""

    version: str  # "3.11"
    implementation: str  # "cp"
    abis: tuple[str, ...]
    platforms: tuple[str, ...]


# --- deciding (pure) ------------------------------------------------------------


def _instructions(text: str) -> Iterable[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole, pending = pending + line, ""
        word, _, rest = whole.partition(" ")
        yield word.upper(), rest.strip()


def _copy_words(args: str) -> list[str]:
    if args.startswith("["):
        try:
            return [str(word) for word in json.loads(args)]
        except json.JSONDecodeError:
            pass
    return shlex.split(args)


def deps_stage(dockerfile: str) -> DepsStage | None:
    """The stage built FROM ${DEPS_BASE}, when the Dockerfile declares that argument."""
    declared, stage, files = False, None, []
    index = -1
    for word, args in _instructions(dockerfile):
        if word == "ARG" and index < 0 and args.split("=", 1)[0].strip() == ARG:
            declared = True
        elif word == "FROM":
            index += 1
            if stage is not None:
                break
            parts = args.split()
            if declared and parts and parts[0] in (f"${{{ARG}}}", f"${ARG}"):
                stage = parts[2] if len(parts) >= 3 and parts[1].lower() == "as" else str(index)
        elif word in ("COPY", "ADD") and stage is not None:
            words = _copy_words(args)
            if not any(w.startswith("--from") for w in words):
                files += [w for w in words if not w.startswith("--")][:-1]
    return DepsStage(stage, tuple(files)) if stage is not None else None


def target_of(probe: Mapping[str, Any]) -> Target:
    """pip download's options for the tags the base image's Python accepts."""
    version = str(probe["version"])
    implementation = {"cpython": "cp"}.get(str(probe["implementation"]), str(probe["implementation"]))
    own = f"{implementation}{version.replace('.', '')}"
    abis: list[str] = []
    platforms: list[str] = []
    for tag in probe["tags"]:
        interpreter, abi, platform = str(tag).split("-")
        if interpreter == own and abi not in abis:
            abis.append(abi)
        if platform != "any" and platform not in platforms:
            platforms.append(platform)
    return Target(version, implementation, tuple(abis), tuple(platforms))


def requirement_lines(path: Path, text: str) -> list[str]:
    """What pip resolves for one file named beside the wheelhouse."""
    name = path.name
    if name == "pyproject.toml":
        try:
            project = tomllib.loads(text).get("project", {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{name}: not valid TOML ({exc})") from None
        return [str(d) for d in project.get("dependencies", [])]
    return [f"-r {path}"]


def download_command(python: str, target: Target, requirements: str, dest: str) -> list[str]:
    command = [python, "-m", "pip", "download", "--disable-pip-version-check", "--progress-bar", "off"]
    command += ["--only-binary=:all:", "--implementation", target.implementation]
    command += ["--python-version", target.version, "-d", dest, "-r", requirements]
    for abi in target.abis:
        command += ["--abi", abi]
    for platform in target.platforms:
        command += ["--platform", platform]
    return command


def cache_key(files: Mapping[str, bytes], target: Target) -> str:
    digest = hashlib.sha256(json.dumps(target.__dict__, sort_keys=True).encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()[:24]


def wanted(mode: str, engine_has_bridge: bool) -> bool:
    """auto: only where builds have no network (an engine without a bridge)."""
    return mode == "always" or (mode == "auto" and not engine_has_bridge)


# --- doing ------------------------------------------------------------------------


def cache_root(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ecs-pipeline" / "dependency-wheels"


def probe(client: Any, base_image: str, cache: Path) -> Target:
    """The base image's wheel tags (one short container per base image id, then cached)."""
    from docker.errors import ContainerError, ImageNotFound

    try:
        image_id = client.images.get(base_image).id
    except ImageNotFound:
        raise StepFailed(
            f"base image {base_image} is not here; pull it or run `invoke stack.up` (it builds one)"
        ) from None
    saved = cache / "targets" / f"{image_id.split(':')[-1]}.json"
    if saved.exists():
        return target_of(json.loads(saved.read_text()))
    try:
        output = client.containers.run(
            base_image, ["python3", "-c", _PROBE], network_mode="none", remove=True, stderr=False
        )
    except ContainerError as exc:
        raise StepFailed(
            f"base image {base_image} has no working pip ({first_line(exc.stderr or exc)}); "
            "a Dockerfile that installs packages needs a base with python and pip, as python:3.11-slim has"
        ) from None
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(output)
    return target_of(json.loads(output))


def _host_python() -> str:
    """A Python with pip, which reads the host's pip configuration (files and PIP_*)."""
    for python in (sys.executable, shutil.which("python3") or ""):
        if python and subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0:
            return python
    raise StepFailed(
        "no pip on this machine to resolve the image's packages; install pip (python3 -m ensurepip)"
    )


def read_files(context: Path, names: Iterable[str]) -> dict[str, bytes]:
    """The requirement files the dependency stage copies, by context-relative name."""
    files: dict[str, bytes] = {}
    for name in sorted(set(names)):
        path = context / name
        if not path.is_file():
            raise ConfigError(
                f"the Dockerfile's dependency stage copies {name}, but {path} is not a file "
                "(it copies requirement files only: the code comes later)"
            )
        files[name] = path.read_bytes()
    return files


def resolve(context: Path, files: Mapping[str, bytes], target: Target, cache: Path, out: Output) -> Path:
    """The wheelhouse for these requirement files (made once per content and target)."""
    names = sorted(files)
    house = cache / cache_key(files, target)
    if (house / "pip.conf").exists():
        os.utime(house)
        out.detail(f"dependencies: wheelhouse {house.name} (cached)")
        return house
    lines = [line for name in names for line in requirement_lines(context / name, files[name].decode())]
    staging = Path(tempfile.mkdtemp(prefix="wheels-", dir=cache))
    requirements = staging / "requirements.txt"
    requirements.write_text("\n".join(lines) + "\n")
    out.detail(
        f"dependencies: resolving {', '.join(names)} with the host's pip for Python {target.version} "
        f"({target.platforms[0] if target.platforms else 'any'}); builds here have no network"
    )
    wheels = staging / "wheels"
    proc = subprocess.run(
        download_command(_host_python(), target, str(requirements), str(wheels)),
        cwd=context,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        errors = [
            line for line in proc.stderr.splitlines() if line.startswith("ERROR")
        ] or proc.stderr.splitlines()
        raise StepFailed(
            f"pip could not resolve the image's packages: {(errors or ['(no output)'])[-1]} "
            f"(wheels only, for Python {target.version} on {target.platforms[:1] or ['any']}: a package with "
            "no wheel needs one built, e.g. `pip wheel` into a find-links directory)"
        )
    wheels.mkdir(exist_ok=True)
    (wheels / "pip.conf").write_text(PIP_CONF)
    try:
        wheels.rename(house)
    except OSError:  # another build made it meanwhile: the same wheels
        if not (house / "pip.conf").exists():
            raise
    shutil.rmtree(staging, ignore_errors=True)
    _prune(cache)
    size = sum(p.stat().st_size for p in house.iterdir())
    out.detail(f"dependencies: {len(list(house.glob('*.whl')))} wheels, {size / 1e6:.1f} MB")
    return house


def _prune(cache: Path) -> None:
    houses = sorted(
        (p for p in cache.iterdir() if p.is_dir() and (p / "pip.conf").exists()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in houses[_KEEP:]:
        shutil.rmtree(old, ignore_errors=True)


def wheelhouse_image(client: Any, base_image: str, house: Path, out: Output) -> str:
    """The base plus /wheelhouse, as a local image (built once per wheelhouse and base)."""
    from docker.errors import APIError, ImageNotFound

    base_id = client.images.get(base_image).id.split(":")[-1]
    tag = f"{IMAGE}:{house.name}-{base_id[:12]}"
    try:
        client.images.get(tag)
        return tag
    except ImageNotFound:
        pass
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        dockerfile = _IMAGE_DOCKERFILE.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        for path in sorted(house.iterdir()):
            tar.add(path, arcname=f"wheelhouse/{path.name}")
    archive.seek(0)
    try:
        for chunk in client.api.build(
            fileobj=archive,
            custom_context=True,
            tag=tag,
            buildargs={"BASE_IMAGE": base_image},
            rm=True,
            forcerm=True,
            decode=True,
        ):
            if "error" in chunk:
                raise StepFailed(f"could not build the wheelhouse image: {first_line(chunk['error'])}")
    except APIError as exc:
        raise StepFailed(f"could not build the wheelhouse image: {exc.explanation or exc}") from None
    out.detail(f"dependencies: {tag} (the base plus the wheels; {ARG} of the dependency stage)")
    return tag


@dataclass(frozen=True)
class Deps:
    """What a build with a dependency stage is given."""

    stage: str  # the Dockerfile's dependency stage
    key: str  # the requirement files and the base's Python: names the stage's cache image
    base: str  # DEPS_BASE ("": the Dockerfile's own default)

    @property
    def cache_tag(self) -> str:
        return cache_tag(self.key)


def cache_tag(key: str) -> str:
    """The tag of a dependency stage's image in the service's repository: pushed beside the
    image so that `dockerize --cache-from-ecr` on an empty machine reuses the installed
    packages (the classic builder cannot take a discarded stage from the image itself)."""
    return f"{CACHE_PREFIX}{key}"


def plan(settings: Settings, clients: Clients) -> tuple[DepsStage, dict[str, bytes], Target, str] | None:
    """The dependency stage, its files, the base's Python and their key; None without one."""
    stage = deps_stage(settings.dockerfile.read_text()) if settings.dockerfile.is_file() else None
    if stage is None:
        return None
    cache = cache_root(os.environ)
    cache.mkdir(parents=True, exist_ok=True)
    target = probe(clients.docker(), settings.base_image, cache)
    files = read_files(settings.service_dir.resolve(), stage.files)
    return stage, files, target, cache_key(files, target)


def prepare(settings: Settings, clients: Clients, out: Output, cached: str = "") -> Deps | None:
    """What the build's dependency stage needs, or None when the Dockerfile has none.

    cached: that stage's image from an earlier build of the same requirements (pulled by
    --cache-from-ecr), which becomes DEPS_BASE: its packages are installed already, so
    nothing is resolved and pip finds everything satisfied. Otherwise, where builds have
    no network, a wheelhouse image (auto: an engine without a bridge)."""
    from .local.running import has_bridge

    planned = plan(settings, clients)
    if planned is None:
        return None
    stage, files, target, key = planned
    if cached:
        out.detail(f"dependencies: installed already in {cached}")
        return Deps(stage.stage, key, cached)
    client = clients.docker()
    if not wanted(settings.wheelhouse, has_bridge(client)):
        return Deps(stage.stage, key, "")
    house = resolve(settings.service_dir.resolve(), files, target, cache_root(os.environ), out)
    return Deps(stage.stage, key, wheelhouse_image(client, settings.base_image, house, out))
