"""Build and push of a dependency-heavy service (bench/heavy: numpy, pandas, pydantic,
SQLAlchemy, Flask, gunicorn), side by side in one run, on the local stack:

    cold build                  nothing above the base cached: no layer, no wheelhouse
    code-only rebuild           one line of app code changed
    requirements change         one package added to requirements.txt
    push, first                 the whole image to an empty repository
    push, code-only change      what moves when only the code changed (bytes and time)
    --cache-from-ecr            CI's empty cache: local images and wheelhouse gone, the
                                newest image in ECR pulled to seed the build

The service is scaffolded the way a team's is: `ecs-pipeline init` writes its Dockerfile
(the dependency stage) in a throwaway repository, and every step is a task run as a
user runs it (`invoke dockerize`, `invoke push`). Each run has its own prefix (its own
ECR repository), its own base image (the stack's base with one LABEL: a new image id, so
no layer from an earlier build is reused, without pruning an engine others share) and
its own wheelhouse cache (XDG_CACHE_HOME). pip's own download cache stays the host's,
as on a developer's machine.

    python bench/deps_build.py [--runs 1]      # ~5 min a run on a quiet machine
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from images import _remove_images, _timed, fresh_run, stack_environ  # bench/ is on the path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = Path(__file__).resolve().parent / "heavy"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _layers(registry: str, repository: str, tag: str) -> dict[str, int]:
    """The pushed image's layers as the registry holds them: digest -> compressed bytes."""
    from pipeline import stack

    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        headers={"Accept": MANIFEST, "Authorization": stack.registry_auth_header()},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        manifest = json.load(resp)
    return {layer["digest"]: int(layer["size"]) for layer in manifest["layers"]}


def _remove_wheelhouse_images(client: Any, base_id: str) -> None:
    """The run's wheelhouse images; one that intermediate images of a build still hang
    from stays (it is never used again: every run has its own base)."""
    from docker.errors import APIError

    from pipeline import wheelhouse

    for image in client.images.list(name=wheelhouse.IMAGE):
        if any(tag.endswith(base_id[:12]) for tag in image.tags):
            for tag in image.tags:
                with contextlib.suppress(APIError):
                    client.images.remove(tag)


def _commit(repo: Path, message: str) -> str:
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", message], cwd=repo, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()


class _Row(dict[str, Any]):
    """A run's figures, each printed as it is taken (a long run that fails keeps them)."""

    def __setitem__(self, key: str, value: Any) -> None:
        print(f"    {key}: {value} (load {Path('/proc/loadavg').read_text().split()[0]})", flush=True)
        super().__setitem__(key, value)


def one_run(client: Any, environ: dict[str, str], base: str) -> dict[str, Any]:
    prefix, fresh_base = fresh_run(client, environ, base, "bdeps")
    base_id = client.images.get(fresh_base).id.split(":")[-1]
    invoke = [sys.executable, "-m", "invoke"]
    with tempfile.TemporaryDirectory(prefix="bench-deps-") as tmp:
        repo, cache = Path(tmp) / "heavy", Path(tmp) / "cache"
        env = {
            **environ,
            "AWS_RESOURCE_NAME_PREFIX": prefix,
            "BASE_IMAGE": fresh_base,
            "XDG_CACHE_HOME": str(cache),
            "PIP_CACHE_DIR": environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip"),
        }
        shutil.copytree(HEAVY, repo, ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        init = [sys.executable, "-c", "from pipeline.cli import main; main()", "init"]
        subprocess.run(
            [*init, "--service-dir", "app", "--base-path", "/heavy/", "--command", "python3 -m app"],
            cwd=repo,
            env=env,
            check=True,
            capture_output=True,
        )
        app, requirements = repo / "app" / "__main__.py", repo / "app" / "requirements.txt"
        row: dict[str, Any] = _Row()
        try:
            first = _commit(repo, "heavy")
            row["cold"] = _timed([*invoke, "dockerize"], repo, env, 3600)
            app.write_text(app.read_text() + "\n# a code-only change\n")
            code_only = _commit(repo, "code only")
            row["code_only"] = _timed([*invoke, "dockerize"], repo, env, 3600)
            row["push_first"] = _timed([*invoke, "push", "--sha", first], repo, env, 3600)
            row["push_code_only"] = _timed([*invoke, "push", "--sha", code_only], repo, env, 3600)
            before = _layers(env["ECR_ENDPOINT"], prefix, first)
            after = _layers(env["ECR_ENDPOINT"], prefix, code_only)
            row["image_bytes"] = sum(after.values())
            row["moved_bytes"] = sum(size for digest, size in after.items() if digest not in before)
            row["moved_layers"] = len(set(after) - set(before))
            pinned = requirements.read_text()
            requirements.write_text(pinned + "humanize==4.17.0\n")
            _commit(repo, "one more package")
            row["requirements_change"] = _timed([*invoke, "dockerize"], repo, env, 3600)
            # CI's empty cache: no local image of the service, no wheelhouse; the code
            # changed since the pushed image, the requirements did not.
            requirements.write_text(pinned)
            app.write_text(app.read_text() + "# the next commit\n")
            _commit(repo, "next")
            _remove_images(client, prefix)
            _remove_wheelhouse_images(client, base_id)
            shutil.rmtree(cache, ignore_errors=True)
            row["cache_from_ecr"] = _timed([*invoke, "dockerize", "--cache-from-ecr"], repo, env, 3600)
        finally:
            _remove_images(client, prefix)
            _remove_wheelhouse_images(client, base_id)
            with contextlib.suppress(Exception):
                client.images.remove(fresh_base, force=True)
    row["load"] = Path("/proc/loadavg").read_text().split()[:3]
    return row


def section_deps(runs: int) -> dict[str, Any]:
    import docker

    environ = {**stack_environ(), "PYTHONPATH": str(ROOT)}
    client = docker.from_env(timeout=600)
    rows = []
    for i in range(runs):
        row = one_run(client, environ, environ["BASE_IMAGE"])
        print(f"  deps run {i + 1}: " + ", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
        rows.append(row)
    return {k: [r[k] for r in rows] for k in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    result = section_deps(args.runs)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
