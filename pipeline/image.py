"""Images: the build spec (pure), then build, push and pull through the Docker seam."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .clients import Clients
from .config import Settings
from .ecr import RegistryLogin, unavailable_login
from .errors import StepFailed, Unavailable
from .git import Revision
from .output import Output, plain
from .wheelhouse import ARG, LABEL, Deps


@dataclass(frozen=True)
class BuildSpec:
    """Everything `docker build` is given. Labels carry provenance; build args never
    carry secrets (only the base images: BASE_IMAGE, and DEPS_BASE for dependencies)."""

    context: str
    dockerfile: str
    tag: str
    labels: dict[str, str]
    buildargs: dict[str, str] = field(default_factory=dict)
    cache_from: tuple[str, ...] = ()
    target: str = ""  # a multi-stage build's stage ("" = the last)


def local_name(settings: Settings, revision: Revision) -> str:
    return f"{settings.repository}:{revision.tag}"


def remote_name(registry: str, settings: Settings, tag: str) -> str:
    return f"{registry}/{settings.repository}:{tag}"


def labels(settings: Settings, revision: Revision, created: datetime) -> dict[str, str]:
    result = {
        "org.opencontainers.image.revision": revision.tag,
        "org.opencontainers.image.created": created.isoformat(timespec="seconds"),
        "org.opencontainers.image.title": settings.repository,
    }
    if settings.source_url:
        result["org.opencontainers.image.source"] = settings.source_url
    return result


def build_spec(
    settings: Settings,
    revision: Revision,
    created: datetime,
    cache_from: Iterable[str] = (),
    deps: Deps | None = None,
) -> BuildSpec:
    """deps: the Dockerfile's dependency stage (pipeline/wheelhouse.py): DEPS_BASE, and a
    label naming the packages' key, which `push` and --cache-from-ecr go by."""
    dockerfile = settings.dockerfile.resolve()
    context = settings.service_dir.resolve()
    return BuildSpec(
        context=str(context),
        dockerfile=str(dockerfile.relative_to(context))
        if dockerfile.is_relative_to(context)
        else str(dockerfile),
        tag=local_name(settings, revision),
        labels={**labels(settings, revision, created), **({LABEL: deps.key} if deps else {})},
        buildargs={"BASE_IMAGE": settings.base_image, **({ARG: deps.base} if deps and deps.base else {})},
        cache_from=tuple(cache_from),
        target=settings.docker_target,
    )


def exposed_port_problem(exposed: dict[str, Any] | None, port: int, tag: str) -> str | None:
    """The image must listen where the task definition, the load balancer and pull-and-run
    send traffic (container_port). An image that exposes nothing is not judged."""
    ports = sorted(exposed or {})
    if not ports or f"{port}/tcp" in ports:
        return None
    return (
        f"image {tag} exposes {', '.join(ports)}, but container_port in [tool.pipeline] is {port}; "
        "make the Dockerfile's EXPOSE and container_port agree"
    )


_STEP_RE = re.compile(r"^Step (\d+/\d+) : (.*)$")


# A layer the build was reusing from the cache was removed meanwhile: another build's clean-up
# or a `docker image prune` on the same engine (a shared CI runner, parallel jobs).
_VANISHED_LAYER = re.compile(r'unable to find image "?sha256:[0-9a-f]+')


def build(spec: BuildSpec, clients: Clients, out: Output) -> str:
    """Build with the Docker SDK, streaming each step; returns the image id. A build whose
    cached layer vanished under it is built once more (the second finds the cache as it is)."""
    try:
        return _build_once(spec, clients, out)
    except StepFailed as exc:
        if not _VANISHED_LAYER.search(exc.message):
            raise
        out.say(
            "a cached layer this build was using was removed meanwhile (another build's clean-up "
            "or a prune on the same Docker engine); building again"
        )
        return _build_once(spec, clients, out)


def _build_once(spec: BuildSpec, clients: Clients, out: Output) -> str:
    from docker.errors import APIError

    client = clients.docker()
    current_step, image_id = "", ""
    step_output: list[str] = []
    try:
        stream = client.api.build(
            path=spec.context,
            dockerfile=spec.dockerfile,
            tag=spec.tag,
            labels=spec.labels,
            buildargs=spec.buildargs,
            cache_from=list(spec.cache_from) or None,
            target=spec.target or None,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                shown = "\n".join(step_output[-20:])
                if shown:
                    out.say(shown)
                message = plain(chunk["error"]).strip().splitlines()[-1]
                raise StepFailed(f"docker build failed at step {current_step or '?'}: {message}")
            text = plain(chunk.get("stream", ""))
            for line in text.splitlines():
                match = _STEP_RE.match(line)
                if match:
                    current_step, step_output = f"{match[1]} ({match[2][:60]})", []
                    out.detail(line)
                elif line.strip():
                    step_output.append(line)
                    if line.startswith((" ---> Using cache", "Successfully")):
                        out.detail(line.strip())
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
    except APIError as exc:
        raise StepFailed(f"docker build failed: {exc.explanation or exc}") from None
    if not image_id:
        image_id = client.images.get(spec.tag).id
    return str(image_id)


def layer_progress(chunks: Iterable[dict[str, Any]], out: Output) -> Iterator[dict[str, Any]]:
    """Print one line per layer state change (not every byte); pass chunks on."""
    seen: dict[str, str] = {}
    for chunk in chunks:
        layer, status = chunk.get("id"), chunk.get("status", "")
        if (
            layer
            and status
            and seen.get(layer) != status
            and not status.startswith(("Pushing", "Downloading", "Extracting"))
        ):
            seen[layer] = status
            out.detail(f"{layer}: {status}")
        yield chunk


class _Transient(Exception):
    """A registry error worth retrying (connection reset, 5xx...)."""


# What a registry says when the credentials are wrong (vs. unreachable or broken).
AUTH_WORDS = ("unauthorized", "authentication required", "no basic auth credentials", "denied")


# ECR's answers that no retry changes: another push took an immutable tag first, or the
# repository is gone. Reported at once, not retried as a dropped connection is.
_REFUSALS = ("tag invalid", "name unknown")


def push(settings: Settings, clients: Clients, revision: Revision, login: RegistryLogin, out: Output) -> str:
    """Tag the local image for the registry and push it; returns the pushed digest."""
    from docker.errors import APIError, ImageNotFound
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

    client = clients.docker()
    source = local_name(settings, revision)
    target_repo = f"{login.registry}/{settings.repository}"
    try:
        client.images.get(source).tag(target_repo, revision.tag)
    except ImageNotFound:
        raise StepFailed(
            f"no local image {source}; build it first with `invoke dockerize --sha {revision.sha}`"
        ) from None
    auth = {"username": login.username, "password": login.password}
    try:
        client.login(username=login.username, password=login.password, registry=login.registry, reauth=True)
    except APIError as exc:
        reason = str(exc.explanation or exc)
        if any(word in reason.lower() for word in AUTH_WORDS):
            raise unavailable_login(login.registry, reason) from None
        raise Unavailable(
            f"registry {login.registry} unreachable ({reason}); is it running? (`invoke stack.up`)"
        ) from None

    @retry(
        retry=retry_if_exception_type(_Transient),
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=0.5, max=8),
        reraise=True,
    )
    def attempt() -> str:
        digest = ""
        try:
            chunks = client.api.push(
                target_repo, tag=revision.tag, auth_config=auth, stream=True, decode=True
            )
            for chunk in layer_progress(chunks, out):
                if "error" in chunk:
                    error = chunk["error"]
                    if any(word in error.lower() for word in AUTH_WORDS):
                        raise unavailable_login(login.registry, error)
                    if error.lower().startswith(_REFUSALS):
                        raise StepFailed(
                            f"ECR refused the push of {settings.repository}:{revision.tag} ({error}); "
                            "nothing was overwritten: `invoke images` shows what ECR holds"
                        )
                    out.warn(f"push: {error} (retrying)")
                    raise _Transient(error)
                digest = chunk.get("aux", {}).get("Digest", digest)
        except RequestsConnectionError as exc:
            raise _Transient(str(exc)) from None
        except APIError as exc:
            if exc.is_server_error():
                raise _Transient(str(exc.explanation)) from None
            raise
        return digest

    try:
        digest = attempt()
    except _Transient as exc:
        raise Unavailable(f"push to {login.registry} failed after retries: {exc}") from None
    if not digest:
        raise StepFailed(f"push of {target_repo}:{revision.tag} reported no digest")
    return digest
