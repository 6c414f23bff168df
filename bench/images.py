"""The image targets, on the local stack: a cold build, a code-only rebuild, a build seeded
by --cache-from-ecr on an empty layer cache, and the size of hello_world's own layers.

Each run works in a throwaway copy of the project under its own prefix (its own ECR
repository) and on its own base image: the stack's base re-tagged with one LABEL, a new
image id, so no layer any earlier build left in the engine can be reused — "cold" means
nothing above the base is cached, without pruning a Docker engine others may share.
Everything is done through the tasks as a user runs them (`invoke dockerize`, `push`).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _timed(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    took = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"error: {' '.join(argv)} failed: {(proc.stdout + proc.stderr)[-600:]}")
    return took


def _remove_images(client: Any, prefix: str) -> None:
    for image in client.images.list():
        if any(tag.startswith(f"{prefix}:") or f"/{prefix}:" in tag for tag in image.tags):
            client.images.remove(image.id, force=True)


def _own_layers(client: Any, name: str, base: str) -> int:
    """Bytes in the image's layers above its base (the project's own)."""
    history = client.images.get(name).history()
    below = len(client.images.get(base).history())
    return sum(int(entry.get("Size", 0)) for entry in history[: len(history) - below])


def fresh_run(client: Any, environ: dict[str, str], base: str, kind: str) -> tuple[str, str]:
    """A run's own prefix (with its ECR repository) and its own base image: the stack's
    base with one LABEL, a new image id, so no layer cached by an earlier build is reused."""
    import boto3

    prefix = f"{kind}{uuid.uuid4().hex[:8]}"
    boto3.client(
        "ecr",
        endpoint_url=environ["AWS_ENDPOINT_URL"],
        region_name=environ["AWS_DEFAULT_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_repository(repositoryName=prefix)
    fresh_base = f"bench-base:{prefix}"
    client.images.build(
        fileobj=io.BytesIO(f"FROM {base}\nLABEL bench-run={prefix}\n".encode()), tag=fresh_base, rm=True
    )
    return prefix, fresh_base


def one_run(client: Any, environ: dict[str, str], base: str) -> dict[str, float]:
    prefix, fresh_base = fresh_run(client, environ, base, "bimg")
    env = {**environ, "AWS_RESOURCE_NAME_PREFIX": prefix, "BASE_IMAGE": fresh_base}
    invoke = [sys.executable, "-m", "invoke"]
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        project = Path(tmp)
        shutil.copy(ROOT / "pyproject.toml", project)
        (project / "tasks.py").write_text("from pipeline.tasks import ns  # noqa: F401\n")
        shutil.copytree(
            ROOT / "hello_world",
            project / "hello_world",
            ignore=shutil.ignore_patterns("__pycache__", "site-packages"),
        )
        app = project / "hello_world" / "app.py"
        try:
            cold = _timed([*invoke, "dockerize", "--sha", "c0ffee1"], project, env)
            app.write_text(app.read_text() + "\n# a code-only change\n")
            code_only = _timed([*invoke, "dockerize", "--sha", "c0ffee2"], project, env)
            _timed([*invoke, "push", "--sha", "c0ffee2"], project, env)
            _remove_images(client, prefix)  # CI's empty cache: only the base is left
            app.write_text(app.read_text() + "# the next commit\n")
            seeded = _timed([*invoke, "dockerize", "--sha", "c0ffee3", "--cache-from-ecr"], project, env)
            own = _own_layers(client, f"{prefix}:c0ffee3", fresh_base)
        finally:
            _remove_images(client, prefix)
            client.images.remove(fresh_base, force=True)
    return {"cold": cold, "code_only": code_only, "cache_from_ecr": seeded, "own_layers_bytes": own}


def stack_environ() -> dict[str, str]:
    """The local stack, started if need be; this process's environment pointed at it."""
    from pipeline import stack

    cfg = stack.config_from(os.environ)
    stack.up(cfg, say=lambda _line: None)
    keep = ("CIRCLE_", "AWS_", "ECR_", "ECS_", "HONEYCOMB_", "OTEL_")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(keep)}
    environ.update(stack.env(cfg))
    environ["AWS_EC2_METADATA_DISABLED"] = "true"
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    return environ


def section_images(runs: int) -> dict[str, Any]:
    import docker

    environ = stack_environ()
    client = docker.from_env(timeout=300)
    rows = []
    for i in range(runs):
        row = one_run(client, environ, environ["BASE_IMAGE"])
        print(f"  images run {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
        rows.append(row)
    return {k: [r[k] for r in rows] for k in rows[0]}
