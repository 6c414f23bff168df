"""The suite's own scheduling and upkeep. Tests that must not overlap (the release fleets, the local
flow) carry an `xdist_group` and count on `--dist loadgroup` to run them on one worker, one
after another. pytest 9.2 with pytest-xdist 3.8 ignores every group without a word
(pytest-xdist#1386): the fleets then start at once on 2 cores and time out. This proves,
with the installed pytest and xdist, that a group still stays on one worker."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import wait_until

GROUPED = """
import os, pathlib, pytest

pytestmark = pytest.mark.xdist_group("together")


@pytest.mark.parametrize("i", range(8))
def test_grouped(i):
    pathlib.Path("workers", f"{i}").write_text(os.environ["PYTEST_XDIST_WORKER"])
"""


def test_an_xdist_group_runs_all_its_tests_on_one_worker_under_loadgroup(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not this repository's settings or conftest
    (tmp_path / "workers").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "3", "--dist", "loadgroup", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    workers = {f.read_text() for f in (tmp_path / "workers").iterdir()}
    ran = len(list((tmp_path / "workers").iterdir()))
    assert ran == 8 and len(workers) == 1, (
        f"the group's 8 tests ran on {sorted(workers)}: this pytest and pytest-xdist do not honour "
        "xdist_group; install pyproject.toml's pins (pip install -e '.[test]')"
    )


def test_the_sweep_removes_a_runs_suite_tags_and_dangling_images_and_nothing_older(
    stack_environ: dict[str, str], prefix: str
) -> None:
    """What a run leaves on the engine slows every later image listing: the end of a run
    removes its images under suite prefixes and those it left dangling, not older ones."""
    import io

    import docker

    from pipeline.stack import LOCAL_BASE_IMAGE
    from tests.conftest import engine, sweep_images

    def build(tag: str, label: str) -> str:
        dockerfile = f"FROM {LOCAL_BASE_IMAGE}\nLABEL {prefix}={label}\n".encode()
        image, _ = engine().images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
        return str(image.id)

    older = build(f"{prefix}:older", "older")  # made before the run began: not the sweep's
    # The engine lists creation times in whole seconds: the run begins on the next one.
    (listed,) = [i for i in engine().api.images() if i["Id"] == older]
    since = listed["Created"] + 1
    wait_until(lambda: time.time() >= since, timeout=5)
    first = build(f"{prefix}:v", "first")
    second = build(f"{prefix}:v", "second")  # the tag moves on: `first` is left dangling
    sweep_images(since=since, label=prefix)  # other workers' images are not this test's

    def exists(image_id: str) -> bool:
        try:
            engine().images.get(image_id)
            return True
        except docker.errors.ImageNotFound:
            return False

    try:
        assert not exists(first) and not exists(second)
        assert exists(older)
    finally:
        engine().images.remove(older, force=True)
