"""The seed's build.sh / test.sh / dockerize.sh and the ECR upload, as verbs."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from . import ecr, image, local, selection, service_env, wheelhouse
from .context import Context
from .errors import ConfigError, PipelineError, StepFailed
from .git import Revision, commit_time


def run_command(ctx: Context, what: str, command: str, extra_env: Mapping[str, str] | None = None) -> None:
    """Run a project-configured command in the project root; its output streams through.

    It runs without the pipeline's credentials (service_env): the service's tests and
    their dependencies are code we do not control."""
    ctx.out.detail(f"$ {command}")
    env = service_env.for_service(ctx.environ, ctx.settings.pass_env)
    proc = subprocess.run(command, shell=True, cwd=ctx.settings.root, env={**env, **(extra_env or {})})
    if proc.returncode != 0:
        raise StepFailed(f"{what} failed (exit {proc.returncode}): {command}")


def build(ctx: Context) -> None:
    if not ctx.settings.build_command:
        ctx.out.skip("no build_command in [tool.pipeline]")
        return
    run_command(ctx, "build", ctx.settings.build_command)


def test(ctx: Context) -> None:
    if not ctx.settings.test_command:
        ctx.out.skip("no test_command in [tool.pipeline]")
        return
    run_command(ctx, "tests", ctx.settings.test_command)


def dockerize(ctx: Context, revision: Revision, cache_from: tuple[str, ...] = ()) -> str:
    """Build the service image tagged <repository>:<sha>; returns the local name."""
    if revision.dirty:
        ctx.out.warn(
            f"files that go into the image have uncommitted changes: tagging {revision.tag}, not {revision.sha}"
        )
    cached = next((ref for ref in cache_from if f":{wheelhouse.CACHE_PREFIX}" in ref), "")
    deps = wheelhouse.prepare(ctx.settings, ctx.clients, ctx.out, cached)
    # Created: the commit's time, so the same content built again is the same image (same
    # image ID): push then finds ECR's image is this one (a "now" label would differ each time).
    created = commit_time(ctx.settings.root, revision.sha) or datetime.now(UTC)
    own = _own_layers(ctx, image.local_name(ctx.settings, revision), deps)
    spec = image.build_spec(ctx.settings, revision, created, (*cache_from, *own), deps)
    image_id = image.build(spec, ctx.clients, ctx.out)
    if deps:
        # The dependency stage under its cache tag (all cached now: local layers only), for
        # `push` to send beside the image and --cache-from-ecr to take back.
        stage = replace(
            spec, target=deps.stage, tag=f"{ctx.settings.repository}:{deps.cache_tag}", cache_from=()
        )
        image.build(stage, ctx.clients, ctx.out)
    built = ctx.clients.docker().images.get(image_id)
    problem = image.exposed_port_problem(
        (built.attrs.get("Config") or {}).get("ExposedPorts"), ctx.settings.container_port, spec.tag
    )
    if problem:
        # Untagged, so no later push can ship an image that listens on the wrong port.
        ctx.clients.docker().images.remove(spec.tag)
        raise ConfigError(problem)
    ctx.out.detail(f"built {spec.tag} ({image_id[:19]})")
    return spec.tag


def _own_layers(ctx: Context, name: str, deps: wheelhouse.Deps | None) -> tuple[str, ...]:
    """A tag built again must be the same image: push compares image IDs, and ECR's tags are
    immutable. When `name` is already built on this engine, it (and its dependency stage)
    become the build's only cache. Otherwise the engine takes the newest copy of each cached
    step, and another build of the same steps meanwhile (a parallel job, a --no-cache build)
    would make this one a new image that ECR then refuses under the same tag."""
    from docker.errors import ImageNotFound

    names = [name, *([f"{ctx.settings.repository}:{deps.cache_tag}"] if deps else [])]
    found: list[str] = []
    for each in names:
        try:
            ctx.clients.docker().images.get(each)
        except ImageNotFound:
            if each == name:
                return ()  # a first build: the engine's whole cache, as always
            continue
        found.append(each)
    return tuple(found)


def cache_from_ecr(ctx: Context) -> tuple[str, ...]:
    """The newest image in ECR, pulled so its layers seed the build (`docker build
    --cache-from`): CI machines start with an empty layer cache. Without it the build
    just runs uncached, with a warning: a cache never fails a build."""
    settings = ctx.settings
    try:
        records = ecr.list_images(settings, ctx.clients)
        if not records:
            ctx.out.warn(f"no layer cache: ECR holds no image of {settings.repository} yet")
            return ()
        images = [r for r in records if not all(t.startswith(wheelhouse.CACHE_PREFIX) for t in r.tags)]
        newest = selection.select(images, selection.Selector(selection.LATEST), settings.repository)
        login = ecr.login(settings, ctx.clients)
        pulled = [local.pull(ctx.clients.docker(), login, settings.repository, newest, ctx.out)]
        planned = wheelhouse.plan(settings, ctx.clients)
        stage = ecr.find_image(settings, ctx.clients, wheelhouse.cache_tag(planned[3])) if planned else None
        if planned and stage is not None:
            chosen = selection.Selection(stage, wheelhouse.cache_tag(planned[3]), "the same requirements")
            pulled.append(local.pull(ctx.clients.docker(), login, settings.repository, chosen, ctx.out))
        elif planned:
            ctx.out.detail(
                "dependencies: no image of this dependency stage in ECR yet; they are installed anew"
            )
        return tuple(pulled)
    except PipelineError as exc:
        ctx.out.warn(f"no layer cache: {exc.message}")
        return ()


def push(ctx: Context, revision: Revision) -> ecr.ImageRecord:
    """Log in to ECR, push <registry>/<repository>:<tag>, and confirm ECR lists that digest.

    A tag is pushed once, as immutable tags require: when ECR already has it, it is left
    alone if it is this very image (the same image ID: a CI step run again, the same
    build pushed twice), and an error naming both digests otherwise — someone else's
    image under this commit's tag (a squatted tag), or another build of the commit.
    What was pushed is remembered in the context: a deploy in the same run checks it.
    """
    ecr.ensure_repository(ctx.settings, ctx.clients)
    existing = ecr.find_image(ctx.settings, ctx.clients, revision.tag)
    if existing is not None:
        _require_same_image(ctx, revision, existing)
        ctx.out.detail(
            f"{ctx.settings.repository}:{revision.tag} is already in ECR ({existing.digest}), "
            "the same image; not pushed again (build once, deploy many)"
        )
        ctx.pushed[revision.tag] = existing.digest
        return existing
    login = ecr.login(ctx.settings, ctx.clients)
    push_dependency_stage(ctx, revision, login)
    digest = image.push(ctx.settings, ctx.clients, revision, login, ctx.out)
    record = wait_for_record(ctx, revision.tag, digest)
    ctx.pushed[revision.tag] = digest
    ctx.out.detail(f"pushed {image.remote_name(login.registry, ctx.settings, revision.tag)}@{digest}")
    return record


def _require_same_image(ctx: Context, revision: Revision, existing: ecr.ImageRecord) -> None:
    from docker.errors import ImageNotFound

    name = image.local_name(ctx.settings, revision)
    try:
        local = str(ctx.clients.docker().images.get(name).id)
    except ImageNotFound:
        raise StepFailed(
            f"no local image {name}; build it first with `invoke dockerize --sha {revision.sha}`"
        ) from None
    remote = ecr.config_digest(ctx.settings, ctx.clients, existing)
    if remote != local:
        raise StepFailed(
            f"{ctx.settings.repository}:{revision.tag} is already in ECR as another image: ECR's "
            f"{existing.digest} (image {remote or 'unknown'}) is not the local image {local}; nothing was "
            "pushed. If an earlier run of this commit's pipeline pushed it, deploy that image as it is "
            f"(`invoke deploy --sha {revision.sha}`); if not, someone pushed under this commit's tag first: "
            "find out who (CloudTrail: PutImage) before deleting it"
        )


def push_dependency_stage(ctx: Context, revision: Revision, login: ecr.RegistryLogin) -> None:
    """The image's dependency stage, under its cache tag, before the image itself (so the
    image stays the repository's latest push); once per set of requirements. A cache:
    failing to send it never fails the push."""
    try:
        labels = ctx.clients.docker().images.get(image.local_name(ctx.settings, revision)).labels or {}
    except Exception:  # no local image: image.push names the problem
        return
    key = labels.get(wheelhouse.LABEL)
    if not key or ecr.find_image(ctx.settings, ctx.clients, wheelhouse.cache_tag(key)) is not None:
        return
    try:
        # Revision names a tag here, not a commit: image.push pushes <repository>:<tag>.
        image.push(ctx.settings, ctx.clients, Revision(wheelhouse.cache_tag(key)), login, ctx.out)
    except PipelineError as exc:
        ctx.out.warn(f"the dependency stage's cache was not pushed: {exc.message}")


def wait_for_record(ctx: Context, tag: str, digest: str, timeout: float = 30.0) -> ecr.ImageRecord:
    """ECR lists what was pushed; wait (bounded) until DescribeImages agrees on the digest."""
    from tenacity import retry, retry_if_result, stop_after_delay, wait_exponential

    @retry(
        retry=retry_if_result(lambda r: r is None or r.digest != digest),
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=0.1, max=2),
        retry_error_callback=lambda s: None,
    )
    def look() -> ecr.ImageRecord | None:
        return ecr.find_image(ctx.settings, ctx.clients, tag)

    record = look()
    if record is None:
        raise StepFailed(
            f"ECR does not list {ctx.settings.repository}:{tag} with digest {digest} after the push"
        )
    return record


def integration(ctx: Context, base_url: str) -> None:
    """The project's integration tests, told where the deployment answers via BASE_URL."""
    if not ctx.settings.integration_command:
        ctx.out.skip("no integration_command in [tool.pipeline]")
        return
    run_command(ctx, "integration tests", ctx.settings.integration_command, {"BASE_URL": base_url})
