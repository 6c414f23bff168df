"""Images in ECR for local debugging: the `images` table, and `pull-and-run` (select, pull, check the digest, run)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import ecr, image, selection
from ..context import Context
from ..errors import ConfigError, PipelineError, StepFailed, Unavailable, first_line
from ..output import Output
from .envfile import ENV_EXAMPLE, env_file_path, read_env_file
from .running import (
    Running,
    RunSpec,
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


@dataclass(frozen=True)
class PullAndRun:
    """A checked pull-and-run, decided before anything is pulled or started."""

    chosen: selection.Selection
    ref: str  # what is pulled: repository:tag, or repository@digest for an untagged image
    spec: RunSpec
    env_path: Path
    env: dict[str, str]
    replace_local_copy: bool  # --latest: what runs is what ECR holds now

    def headline(self) -> str:
        record = self.chosen.record
        return (
            f"chose {record.digest[:19]} by {self.chosen.reason} (tags: {', '.join(record.tags) or 'none'})"
        )

    def details(self) -> list[str]:
        return describe(self.spec, self.env_path, self.env)


def plan_pull_and_run(
    ctx: Context, selector: selection.Selector, env_file: str | None, port: object
) -> PullAndRun:
    """Every check and choice: the port, the env file, the image in ECR, the container's name."""
    settings = ctx.settings
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
    return PullAndRun(chosen, ref, spec, env_path, env, selector.kind == selection.LATEST)


def run_planned(ctx: Context, plan: PullAndRun, detach: bool) -> Running:
    """Pull the chosen image, check its digest, and run it."""
    client, out = ctx.clients.docker(), ctx.out
    login = ecr.login(ctx.settings, ctx.clients)
    with out.step(f"pull {plan.ref}"):
        if plan.replace_local_copy:
            _remove_local_copy(client, plan.ref, out)
        pull(client, login, ctx.settings.repository, plan.chosen, out)
    return _launch(ctx, client, plan.spec, detach)


def pull_and_run(
    ctx: Context,
    selector: selection.Selector,
    env_file: str | None,
    port: object,
    detach: bool,
    dry_run: bool = False,
) -> Running | None:
    """Select an image in ECR, pull it, check its digest, and run it with the env file;
    a dry run shows the plan and stops."""
    plan = plan_pull_and_run(ctx, selector, env_file, port)
    ctx.out.say(plan.headline())
    for line in plan.details():
        ctx.out.detail(line)
    if dry_run:
        ctx.out.say("dry run: nothing pulled or started")
        return None
    return run_planned(ctx, plan, detach)


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
