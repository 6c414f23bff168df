"""Real `invoke` processes against a real (local) ECS service whose rollouts take seconds:
what the worst-day tests (two pipelines at once, signals, locks, faults) share.

The local ECS runs each task's containers for real and counts a new task only once its
container health check passes: the deploy's task definition (hello_world/deploy/taskdef.json)
checks every 15 s, and the cluster's speed tag (ecs-pipeline:emulator-speed) runs that SPEED
times faster, so each rollout takes about 15/SPEED s (the first check) plus the old task's
stop. Tests wait on what the processes print and on the service's state, never on sleeps.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.stack.emulator.engine import SPEED_TAG
from tests.conftest import default_network, hello_task_definition, push_image, wait_for_rollout
from tests.helpers import ROOT

# The cluster's health-check speed-up: 15 s / 2 = a first health check 7.5 s after the
# new task starts, the rollout's length (ECS's real timings would be 15 s and more).
SPEED = 2.0
WAITING = "waiting for the stale deployments to drain"


@dataclass
class Service:
    environ: dict[str, str]
    cluster: str
    service: str
    shas: list[str]
    client: Callable[[str], Any]

    def describe(self) -> dict[str, Any]:
        found = self.client("ecs").describe_services(cluster=self.cluster, services=[self.service])
        return dict(found["services"][0])

    def running(self) -> str:
        return str(self.describe()["taskDefinition"]).rsplit("/", 1)[-1]

    def revisions(self) -> list[str]:
        arns = self.client("ecs").list_task_definitions(familyPrefix=self.service)["taskDefinitionArns"]
        return sorted((a.rsplit("/", 1)[-1] for a in arns), key=lambda r: int(r.rsplit(":", 1)[1]))


@pytest.fixture
def service(aws: Callable[[str], Any], environ: dict[str, str], prefix: str, hello_image: str) -> Service:
    """A steady prod service on the local ECS running hello_world (revision 1), and three
    more pushes of hello_world's image under new shas for the deploys; as `invoke setup`
    leaves it, in a cluster whose health checks run SPEED times faster than ECS's."""
    aws("ecr").create_repository(repositoryName=prefix)
    aws("logs").create_log_group(logGroupName=f"/ecs/{prefix}")  # the task definition's awslogs group
    initial, *shas = [uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(4)]
    image = push_image(environ, hello_image, prefix, initial)
    for sha in shas:
        push_image(environ, hello_image, prefix, sha)
    ecs = aws("ecs")
    cluster, name = f"{prefix}-cluster", f"{prefix}-service"
    ecs.create_cluster(clusterName=cluster, tags=[{"key": SPEED_TAG, "value": f"{SPEED:g}"}])
    first = ecs.register_task_definition(**hello_task_definition(name, image))["taskDefinition"]
    ecs.create_service(
        cluster=cluster,
        serviceName=name,
        taskDefinition=first["taskDefinitionArn"],
        desiredCount=1,
        launchType="FARGATE",
        networkConfiguration=default_network(aws),
    )
    wait_for_rollout(aws, cluster, name)
    return Service(environ, cluster, name, shas, aws)


@dataclass
class Running:
    """A process whose output (stdout and stderr) is collected line by line as it comes,
    each line with the moment it arrived."""

    proc: subprocess.Popen[str]
    timed: list[tuple[float, str]] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return [line for _, line in self.timed]

    def text(self) -> str:
        return "".join(self.lines)

    def when(self, starts: str) -> float:
        """When the first line starting with `starts` arrived."""
        return next(at for at, line in self.timed if line.startswith(starts))

    def finish(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def start_reading(self) -> None:
        assert self.proc.stdout is not None
        stream = self.proc.stdout

        def read() -> None:
            for line in iter(stream.readline, ""):
                self.timed.append((time.monotonic(), line))

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()


def start(env: dict[str, str], *args: str, cwd: Path = ROOT) -> Running:
    """`invoke ARGS` as its own process (its own process group, as CI runs a step)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = Running(proc)
    running.start_reading()
    return running


def deploy(
    svc: Service, sha: str, *flags: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> Running:
    return start(env or svc.environ, "deploy", "--env", "prod", "--sha", sha, "--no-smoke", *flags, cwd=cwd)


def project_with(tmp: Path, settings: str) -> Path:
    """A copy of this repository's project (hello_world, tasks.py, pyproject.toml) whose
    [tool.pipeline] starts with the TOML lines `settings`."""
    shutil.copytree(ROOT / "hello_world", tmp / "hello_world", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "tasks.py", tmp / "tasks.py")
    text = (ROOT / "pyproject.toml").read_text()
    (tmp / "pyproject.toml").write_text(
        text.replace("[tool.pipeline]\n", f"[tool.pipeline]\n{settings}\n", 1)
    )
    return tmp
