"""The base image: python:3.11-slim where it can be pulled, else a stand-in from Debian.

The stand-in is built once from Debian's packages and keeps the slim image's contract.
The contract a Dockerfile written for python:3.11-slim relies on, and that the stand-in
keeps: `python`, `python3`, `pip` and `pip3` on PATH (also as /usr/local/bin/...), pip
may install as root (no EXTERNALLY-MANAGED marker), `python -m venv` works, what pip
installs as root lands under /usr/local (console scripts in /usr/local/bin), packages
under /usr/local/lib/python3.11/site-packages are importable, `LANG=C.UTF-8`, and the
default command is `python3`. It is Debian bookworm's Python 3.11 (the slim image's own
Debian release), not python.org's build.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Unavailable, first_line

if TYPE_CHECKING:
    from . import StackConfig

# A new tag for each change of contract: stacks that still use an older stand-in keep it.
LOCAL_BASE_IMAGE = "ecs-pipeline/python-base:3.11-slim-bookworm"
PACKAGES = ("python3", "python3-pip", "python3-venv", "python-is-python3", "ca-certificates")
# What the official image's config says that a Dockerfile may lean on.
IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
_JUNK = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")
_LINKS = {
    "python": "/usr/bin/python3",
    "python3": "/usr/bin/python3",
    "python3.11": "/usr/bin/python3.11",
    "pip": "/usr/bin/pip3",
    "pip3": "/usr/bin/pip3",
    "pip3.11": "/usr/bin/pip3",
}

Say = Callable[[str], None]


def shape_rootfs(rootfs: Path) -> None:
    """Turn Debian's python3 into the slim image's contract (see the module's docstring)."""
    for junk in _JUNK:
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    for marker in (rootfs / "usr" / "lib").glob("python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    local_bin = rootfs / "usr" / "local" / "bin"
    local_bin.mkdir(parents=True, exist_ok=True)
    for name, target in _LINKS.items():
        link = local_bin / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    # Debian's Python reads /usr/local/lib/python3.11/dist-packages; the slim image's
    # reads site-packages. Both are on sys.path here.
    (rootfs / "usr" / "local" / "lib" / "python3.11" / "site-packages").mkdir(parents=True, exist_ok=True)
    (rootfs / "usr" / "lib" / "python3" / "dist-packages" / "usr-local-site-packages.pth").write_text(
        "/usr/local/lib/python3.11/site-packages\n"
    )


def ensure_base_image(cfg: StackConfig, say: Say) -> None:
    """Use the official base image when it can be had; otherwise build the stand-in."""
    import docker
    from docker.errors import DockerException, ImageNotFound

    from ..config import DEFAULT_BASE_IMAGE
    from . import _apt_install

    client = docker.from_env(timeout=600)
    marker = cfg.directory / "base_image"
    for image in (DEFAULT_BASE_IMAGE, LOCAL_BASE_IMAGE):
        try:
            client.images.get(image)
        except ImageNotFound:
            continue
        if image == LOCAL_BASE_IMAGE:
            marker.write_text(image)
        else:
            marker.unlink(missing_ok=True)
        say(f"base image: {image} (present)")
        return
    try:
        say(f"base image: pulling {DEFAULT_BASE_IMAGE}")
        client.images.pull(DEFAULT_BASE_IMAGE)
        marker.unlink(missing_ok=True)
        return
    except DockerException as exc:
        say(
            f"base image: cannot pull {DEFAULT_BASE_IMAGE} ({first_line(exc, 90)}); "
            f"building {LOCAL_BASE_IMAGE} from Debian packages (about a minute)"
        )
    if not shutil.which("debootstrap"):
        _apt_install(["debootstrap"], say)
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=cfg.directory) as rootfs:
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", "bookworm", rootfs],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise Unavailable(f"debootstrap failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        shape_rootfs(Path(rootfs))
        archive = Path(rootfs + ".tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", str(archive), "."], check=True)
        repository, tag = LOCAL_BASE_IMAGE.split(":")
        client.api.import_image_from_file(
            str(archive), repository=repository, tag=tag, changes=list(IMAGE_CHANGES)
        )
        archive.unlink()
    marker.write_text(LOCAL_BASE_IMAGE)
    say(f"base image: built {LOCAL_BASE_IMAGE}")
