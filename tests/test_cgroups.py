"""The task containers' CPU weight (pipeline/stack/cgroups.py): where it is set on each
cgroup layout, and that the engine's containers run under it on this machine."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from pipeline.stack import cgroups


def v1(root: Path) -> Path:
    (root / "cpu").mkdir(parents=True)
    (root / "cpu" / "cpu.shares").write_text("1024\n")
    return root


def v2(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu io memory pids\n")
    return root


@pytest.mark.parametrize(
    ("layout", "file", "value"),
    [
        (v1, "cpu/docker/cpu.shares", 1024 * cgroups.CONTAINER_WEIGHT),
        (v2, "docker/cpu.weight", 100 * cgroups.CONTAINER_WEIGHT),
        (lambda root: root, None, None),
    ],
)
def test_the_containers_weight_is_set_where_each_cgroup_layout_keeps_it(
    layout: object, file: str | None, value: int | None, tmp_path: Path
) -> None:
    root = layout(tmp_path / "cgroup")  # type: ignore[operator]
    weight = cgroups.container_weight(root)
    if file is None:
        assert weight is None
        assert "default CPU weight" in cgroups.favour_containers(root)
        return
    assert weight == cgroups.Weight(root / file, value)  # type: ignore[arg-type]
    (root / file).parent.mkdir(parents=True, exist_ok=True)
    (root / file).write_text("1024\n" if "shares" in file else "100\n")  # as the kernel makes it
    said = cgroups.favour_containers(root)
    assert (root / file).read_text() == str(value)
    assert f"= {value}" in said


def test_an_engine_with_the_systemd_driver_is_left_alone(tmp_path: Path) -> None:
    root = v1(tmp_path / "cgroup")
    assert cgroups.container_weight(root, driver="systemd") is None
    said = cgroups.favour_containers(root, driver="systemd")
    assert "(driver systemd)" in said and "default CPU weight" in said
    assert not (root / "cpu" / "docker").exists()  # nothing made where no container goes


def test_a_weight_that_cannot_be_written_is_reported_not_raised(tmp_path: Path) -> None:
    root = v1(tmp_path / "cgroup")
    (root / "cpu" / "docker").write_text("a file where the cgroup would be")
    said = cgroups.favour_containers(root)
    assert said.startswith("the containers keep Docker's default CPU weight (")


def test_after_stack_up_the_engines_containers_run_in_the_weighted_cgroup(hello_image: str) -> None:
    client = docker.from_env()
    weight = cgroups.container_weight(driver=client.info()["CgroupDriver"])
    if weight is None:
        pytest.skip("no cgroupfs hierarchy for the engine's containers on this machine")
    assert weight.file.read_text().strip() == str(weight.value)
    container = client.containers.run(hello_image, ["sleep", "30"], detach=True, network_mode="host")
    try:
        pid = client.api.inspect_container(container.id)["State"]["Pid"]
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        cpu = next(
            line.split(":", 2)[2] for line in lines if line.split(":")[1] in ("cpu", "cpu,cpuacct", "")
        )
        group = weight.file.parent.name  # "docker"
        assert cpu.startswith(f"/{group}/"), cpu
    finally:
        container.remove(force=True)
