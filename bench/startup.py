"""Start-up: `invoke --list` against the imports it must not pay for, and the peers' CLIs.

    python bench/startup.py [--runs 10]

Each command runs as its own process from the project root, --runs times after one
warm-up; the median wall time is quoted (min–max beside it: the machines are noisy).
Then the proof: importing tasks.py (what `invoke --list` loads) leaves boto3, botocore,
docker, tenacity and the rest out of sys.modules (invoke's own vendored yaml aside), and
`python -X importtime` names the costliest modules it does import. Exits 1 if tasks.py
pulls a heavy module into start-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("boto3", "botocore", "docker", "tenacity", "requests", "urllib3", "yaml", "dotenv", "moto")
PEER_ECS = Path("/tmp/ecs-deploy-venv/bin/ecs")  # where bench/deploy_peers.py installs it


def commands() -> dict[str, list[str]]:
    py = sys.executable
    found: dict[str, list[str]] = {
        "python -c pass": [py, "-c", "pass"],
        "invoke --list": [py, "-m", "invoke", "--list"],
        "python -c 'import invoke'": [py, "-c", "import invoke"],
        "python -c 'import tasks'": [py, "-c", "import tasks"],
        "python -c 'import boto3'": [py, "-c", "import boto3"],
        "python -c 'import docker'": [py, "-c", "import docker"],
        # what start-up would cost if tasks.py imported the seams' libraries at module top
        "python -c 'import tasks, boto3, docker'": [py, "-c", "import tasks, boto3, docker"],
    }
    ecs = shutil.which("ecs") or (str(PEER_ECS) if PEER_ECS.exists() else None)
    if ecs:
        found["ecs --help (fabfuel)"] = [ecs, "--help"]
    if aws := shutil.which("aws"):
        found["aws --version"] = [aws, "--version"]
    return found


def timed(argv: list[str], runs: int) -> list[float]:
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        if i:  # the first is the warm-up
            times.append(time.perf_counter() - start)
    return times


def loaded(module: str) -> set[str]:
    probe = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def costliest_imports(top: int = 6) -> list[tuple[int, str]]:
    """What `import tasks` itself imports, by cumulative import time (µs).

    -X importtime prints post-order, children indented two spaces deeper: tasks' own
    imports are the depth-1 lines just before the `tasks` line.
    """
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import tasks"], cwd=ROOT, capture_output=True, text=True
    ).stderr
    rows: list[tuple[int, str]] = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, raw = line.split(":", 1)[1].split("|")
        depth = (len(raw) - len(raw.lstrip()) - 1) // 2
        if depth == 0:
            if raw.strip() == "tasks":
                return sorted(rows, reverse=True)[:top]
            rows = []
        elif depth == 1:
            rows.append((int(cumulative), raw.strip()))
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command, after one warm-up")
    args = parser.parse_args()

    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {args.runs} runs each")
    print(f"{'command':<40} {'median':>8}  {'min–max':>13}")
    for name, argv in commands().items():
        times = timed(argv, args.runs)
        print(f"{name:<40} {statistics.median(times):>7.3f}s  {min(times):.3f}–{max(times):.3f}")

    print("\nimport tasks: its costliest imports (cumulative, one run):")
    for micros, name in costliest_imports():
        print(f"  {micros / 1000:7.1f} ms  {name}")
    ours = sorted(loaded("tasks") - loaded("invoke"))
    if ours:
        print(
            f"\nFAIL: importing tasks.py loads {' '.join(ours)}; import it inside the function that needs it"
        )
        sys.exit(1)
    print(f"\nOK: importing tasks.py loads none of {', '.join(HEAVY)} beyond what invoke itself loads")


if __name__ == "__main__":
    main()
