"""Install the `otel` image target's packages into hello_world/otel/site-packages.

docker build's RUN steps have no network, so the wheels are chosen and unpacked here on
the host, for the image's platform and Python (not the host's); the Dockerfile's `otel`
stage copies the directory in. It runs pip again only when requirements.txt or the
target changes.

    python hello_world/otel/prepare.py [--python-version 3.11] [--platform manylinux2014_x86_64]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import platform
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
TARGET = HERE / "site-packages"
STAMP = TARGET / ".prepared"


def default_platform() -> str:
    machine = platform.machine().lower()
    return "manylinux2014_" + {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", default="3.11", help="the image's Python (default 3.11)")
    parser.add_argument(
        "--platform", default=default_platform(), help="wheel platform tag (default: this machine's)"
    )
    args = parser.parse_args(argv)
    with (HERE / ".prepare.lock").open("w") as lock:
        # A second run at once (two builds, parallel tests) waits here, then finds it done.
        fcntl.flock(lock, fcntl.LOCK_EX)
        return prepare(args.python_version, args.platform)


def prepare(python_version: str, wheel_platform: str) -> int:
    wanted = hashlib.sha256(
        REQUIREMENTS.read_bytes() + f"{python_version} {wheel_platform}".encode()
    ).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        print(f"otel packages: up to date in {TARGET}")
        return 0
    staging = TARGET.with_name("site-packages.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-compile",  # the image compiles for its own Python
        "--root-user-action=ignore",
        "--only-binary=:all:", "--implementation", "cp",
        "--python-version", python_version, "--platform", wheel_platform,
        "--target", str(staging), "-r", str(REQUIREMENTS),
    ]  # fmt: skip
    print(f"otel packages: installing for Python {python_version} on {wheel_platform}", flush=True)
    if subprocess.run(command).returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        print(
            "error: pip could not install the otel packages (see above); it needs PyPI once", file=sys.stderr
        )
        return 1
    shutil.rmtree(TARGET, ignore_errors=True)
    staging.rename(TARGET)
    STAMP.write_text(wanted + "\n")
    size = sum(path.stat().st_size for path in TARGET.rglob("*") if path.is_file())
    print(f"otel packages: {size / 1e6:.1f} MB in {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
