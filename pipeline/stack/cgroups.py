"""The task containers' share of the CPU on a shared machine.

Docker puts every container in one cgroup (the cgroupfs driver's `/docker`), and that
cgroup's CPU weight is by default the weight of ONE process outside it. The tests, the
emulator, dockerd and builds all run outside it, so on a busy 2-core machine all task
containers together got a sliver: a task's app took 6 s to print "listening", the
emulator's sped-up health-check grace period (60 s / 10) ended first, and the service
replaced its tasks over and over. On ECS a task has vCPUs of its own; here the containers'
cgroup weighs as much as CONTAINER_WEIGHT busy processes instead. Idle containers cost
nothing by it: a weight only matters while they want the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONTAINER_WEIGHT = 8  # in busy processes' worth
ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Weight:
    file: Path  # the containers' cgroup's weight file
    value: int


def container_weight(root: Path = ROOT, driver: str = "cgroupfs") -> Weight | None:
    """Where the containers' CPU weight is set on this machine, and to what. Pure but for
    reading which cgroup hierarchy is mounted; None where neither layout is found, or where
    the engine's cgroup driver is not cgroupfs (systemd gives each container a scope of its
    own, outside `/docker`)."""
    if driver != "cgroupfs":
        return None
    if (root / "cpu" / "cpu.shares").exists():  # v1: shares, 1024 a process
        return Weight(root / "cpu" / "docker" / "cpu.shares", 1024 * CONTAINER_WEIGHT)
    if (root / "cgroup.controllers").exists():  # v2, cgroupfs driver: weight, 100 a process
        return Weight(root / "docker" / "cpu.weight", 100 * CONTAINER_WEIGHT)
    return None


def favour_containers(root: Path = ROOT, driver: str = "cgroupfs") -> str:
    """Set the containers' cgroup weight (creating the cgroup dockerd will use); what was
    done, for the stack's output. Best effort: without the rights it says so."""
    weight = container_weight(root, driver)
    if weight is None:
        return f"no cgroupfs hierarchy for the containers (driver {driver}): they keep Docker's default CPU weight"
    try:
        weight.file.parent.mkdir(exist_ok=True)
        if weight.file.read_text().strip() != str(weight.value):
            weight.file.write_text(str(weight.value))
    except OSError as err:
        return f"the containers keep Docker's default CPU weight ({weight.file}: {err.strerror})"
    return f"containers weigh as {CONTAINER_WEIGHT} processes ({weight.file} = {weight.value})"
