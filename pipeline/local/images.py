"""Images in ECR for local debugging: the `images` table, and `pull-and-run` (select, pull, check the digest, run)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .. import ecr, image, selection
from ..context import Context
from ..errors import ConfigError, PipelineError, StepFailed, Unavailable, first_line
from ..output import Output
from .envfile import ENV_EXAMPLE, env_file_path, read_env_file
from .running import (
    Running,
    _launch,
    container_name,
    describe,
    ensure_name_free,
    ensure_port_free,
    has_bridge,
    parse_port,
    run_spec,
)


def _registry_error(registry: str, reason: str) -> PipelineError:
    if any(word in reason.lower() for word in image.AUTH_WORDS):
        return ecr.unavailable_login(registry, reason)
    return Unavailable(f"pull from {registry} failed: {first_line(reason)}")


def pull(
    client: Any, login: ecr.RegistryLogin, repository: str, chosen: selection.Selection, out: Output
) -> str:
    """Pull with per-layer progress, then confirm the local image has the digest ECR lists."""
    from docker.errors import APIError
    from requests.exceptions import ConnectionError as RequestsConnectionError

    repo = f"{login.registry}/{repository}"
    digest = chosen.record.digest
    ref = f"{repo}:{chosen.tag}" if chosen.tag else f"{repo}@{digest}"
    auth = {"username": login.username, "password": login.password}
    try:
        chunks = client.api.pull(repo, tag=chosen.tag or digest, auth_config=auth, stream=True, decode=True)
        for chunk in image.layer_progress(chunks, out):
            if "error" in chunk:
                raise _registry_error(login.registry, chunk["error"])
    except APIError as exc:
        raise _registry_error(login.registry, str(exc.explanation or exc)) from None
    except RequestsConnectionError as exc:
        raise Unavailable(f"pull from {login.registry} failed: {first_line(exc)}") from None
    if f"{repo}@{digest}" not in (client.images.get(ref).attrs.get("RepoDigests") or []):
        raise StepFailed(
            f"pulled {ref}, but it is not {digest} as ECR lists it (was the tag pushed again meanwhile?); "
            "run again"
        )
    out.detail(f"{ref} is {digest}, as ECR lists it")
    return ref


def _remove_local_copy(client: Any, ref: str, out: Output) -> None:
    """--latest: drop the local tag first, so what runs is what ECR holds now."""
    from docker.errors import APIError, ImageNotFound

    try:
        client.images.remove(ref)
    except ImageNotFound:
        return
    except APIError as exc:  # a container (even a stopped one) still uses it
        out.warn(f"kept the local copy of {ref} ({exc.explanation}); the pull still fetches ECR's")
        return
    out.detail(f"removed the local copy of {ref}")


def pull_and_run(
    ctx: Context,
    selector: selection.Selector,
    env_file: str | None,
    port: object,
    detach: bool,
    dry_run: bool = False,
) -> Running | None:
    """Select an image in ECR, pull it, check its digest, and run it with the env file."""
    settings, out = ctx.settings, ctx.out
    chosen_port = parse_port(settings.container_port if port is None else port)
    if chosen_port is None:
        raise ConfigError(f"--port {port!r}: give a port number 1-65535")
    env_path = env_file_path(settings, env_file)
    env = read_env_file(env_path, ctx.environ, settings.root / ENV_EXAMPLE)
    ensure_port_free(chosen_port, "choose another with --port N")
    client = ctx.clients.docker()

    records = ecr.list_images(settings, ctx.clients)
    chosen = selection.select(records, selector, settings.repository)
    registry = ecr.registry(settings, ctx.clients)
    ref = (
        image.remote_name(registry, settings, chosen.tag)
        if chosen.tag
        else f"{registry}/{settings.repository}@{chosen.record.digest}"
    )
    revision = chosen.sha or chosen.record.digest.split(":")[-1]
    spec = run_spec(
        settings, ref, container_name(settings.repository, revision), env, chosen_port, has_bridge(client)
    )
    ensure_name_free(client, spec.name)

    out.say(
        f"chose {chosen.record.digest[:19]} by {chosen.reason} (tags: {', '.join(chosen.record.tags) or 'none'})"
    )
    for line in describe(spec, env_path, env):
        out.detail(line)
    if dry_run:
        out.say("dry run: nothing pulled or started")
        return None

    login = ecr.login(settings, ctx.clients)
    with out.step(f"pull {ref}"):
        if selector.kind == selection.LATEST:
            _remove_local_copy(client, ref, out)
        pull(client, login, settings.repository, chosen, out)
    return _launch(ctx, client, spec, detach)


def image_rows(records: Iterable[ecr.ImageRecord]) -> list[dict[str, Any]]:
    """Newest first, as plain data (the --json output)."""
    return [
        {
            "tags": sorted(record.tags),
            "digest": record.digest,
            "pushed_at": record.pushed_at.isoformat(timespec="seconds") if record.pushed_at else None,
            "size": record.size,
        }
        for record in selection.newest_first(records)
    ]


def _human_size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def images_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'PUSHED':<25}  {'DIGEST':<19}  {'SIZE':>9}  TAGS"]
    for row in rows:
        size = _human_size(row["size"]) if row["size"] is not None else "?"
        tags = ", ".join(row["tags"]) or "(untagged)"
        lines.append(f"{row['pushed_at'] or '?':<25}  {row['digest'][:19]:<19}  {size:>9}  {tags}")
    return lines


def show_images(ctx: Context, as_json: bool) -> None:
    """What ECR holds for the repository: tags, digest, push time, size; newest first."""
    rows = image_rows(ecr.list_images(ctx.settings, ctx.clients))
    if as_json:
        ctx.out.say(json.dumps(rows, indent=2))
    elif not rows:
        ctx.out.say(f"no images in ECR repository {ctx.settings.repository}")
    else:
        for line in images_table(rows):
            ctx.out.say(line)
