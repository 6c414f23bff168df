"""Real `invoke deploy` processes on a real (local) ECS: two deploys at once, and
SIGINT/SIGTERM during the wait.

The first sha's image is gated: its app starts only once something listens on the
service's gate port (host networking shares loopback), so that rollout stays in progress
until the test opens the gate, however loaded the machine. The other shas roll out as
below.

The tests need rollouts long enough to start a second process or send a signal while
the first one waits. The local ECS runs each task's containers for real and counts a
new task only once its container health check passes: the deploy's task definition
(hello_world/deploy/taskdef.json) checks every 15 s, and the cluster's speed tag
(ecs-pipeline:emulator-speed) runs that SPEED times faster, so each rollout of ours takes
about 15/SPEED s (the first check) plus the old task's stop. The tests wait on what the
processes print and on the service's state, never on sleeps.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pipeline.stack.emulator.engine import SPEED_TAG
from tests.conftest import default_network, hello_task_definition, push_broken, push_image, wait_for_rollout
from tests.helpers import ROOT, free_port, wait_until

# The cluster's health-check speed-up: 15 s / 2 = a first health check 7.5 s after the
# new task starts, the rollout's length (ECS's real timings would be 15 s and more).
SPEED = 2.0


@dataclass
class Service:
    environ: dict[str, str]
    cluster: str
    service: str
    shas: list[str]
    client: Callable[[str], Any]
    gate_port: int

    def open_gate(self) -> socket.socket:
        """Let the gated image's app start; keep the socket until the test ends."""
        listener = socket.create_server(("127.0.0.1", self.gate_port))
        listener.listen(16)
        return listener

    def describe(self) -> dict[str, Any]:
        found = self.client("ecs").describe_services(cluster=self.cluster, services=[self.service])
        return dict(found["services"][0])

    def running(self) -> str:
        return str(self.describe()["taskDefinition"]).rsplit("/", 1)[-1]


@pytest.fixture
def service(aws: Callable[[str], Any], environ: dict[str, str], prefix: str, hello_image: str) -> Service:
    """A steady prod service on the local ECS running hello_world (revision 1), and three
    more pushes of hello_world's image under new shas for the deploys; as `invoke setup`
    leaves it, in a cluster whose health checks run SPEED times faster than ECS's."""
    aws("ecr").create_repository(repositoryName=prefix)
    aws("logs").create_log_group(logGroupName=f"/ecs/{prefix}")  # the task definition's awslogs group
    initial, *shas = [uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(4)]
    image = push_image(environ, hello_image, prefix, initial)
    gate_port = free_port()
    push_broken(environ, gated(hello_image, gate_port), prefix, shas[0])
    for sha in shas[1:]:
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
    return Service(environ, cluster, name, shas, aws, gate_port)


def gated(hello_image: str, port: int) -> str:
    """hello_world's image whose app starts once 127.0.0.1:port accepts a connection; it
    exits at once on SIGTERM meanwhile (PID 1 has no default handler)."""
    script = "\n".join(
        [
            "import os, signal, socket, time",
            "signal.signal(signal.SIGTERM, lambda *_: os._exit(0))",
            "while True:",
            "    try:",
            f"        socket.create_connection(('127.0.0.1', {port}), 1).close()",
            "        break",
            "    except OSError:",
            "        time.sleep(0.2)",
            "os.execvp('python3', ['python3', '-m', 'hello_world.app'])",
        ]
    )
    return f"FROM {hello_image}\nCMD {json.dumps(['python3', '-c', script])}\n"


@dataclass
class Running:
    """An `invoke` process whose output is collected as it comes."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.lines)

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def start_reading(self) -> None:
        assert self.proc.stdout is not None
        stream = self.proc.stdout
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True
        )
        self._reader.start()


def start(env: dict[str, str], *args: str) -> Running:
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = Running(proc)
    running.start_reading()
    return running


def deploy(svc: Service, sha: str, *flags: str, env: dict[str, str] | None = None) -> Running:
    return start(env or svc.environ, "deploy", "--env", "prod", "--sha", sha, "--no-smoke", *flags)


WAITING = "waiting for the stale deployments to drain"


@pytest.mark.heavy
def test_a_second_deploy_is_refused_then_forced_and_the_first_says_who_replaced_it(service: Service) -> None:
    family = service.service
    first = deploy(service, service.shas[0])
    wait_until(lambda: WAITING in first.text() or first.proc.poll() is not None, 30)
    ours = next(d for d in service.describe()["deployments"] if d["status"] == "PRIMARY")

    refused = deploy(service, service.shas[1])
    assert refused.finish() == 5, refused.text()
    assert (
        f"has a rollout in progress: deployment {ours['id']} of {family}:2 (sha {service.shas[0][:12]}, started "
        in refused.text()
    )
    assert "nothing was changed" in refused.text()

    forced = deploy(service, service.shas[1], "--force")
    assert forced.finish() == 0, forced.text()
    assert f"deploy of {family}:3 to prod succeeded" in forced.text()
    assert first.finish() == 6, first.text()
    text = first.text()
    assert f"deploy of {family}:2 to prod did not finish: it was replaced by deployment " in text
    assert f"of {family}:3 (sha {service.shas[1][:12]}" in text
    assert "not rolled back over that deploy" in text and "roll back to" not in text
    assert service.running() == f"{family}:3"


def test_two_deploys_at_once_exactly_one_wins(service: Service) -> None:
    family = service.service
    runs = [deploy(service, service.shas[1]), deploy(service, service.shas[2])]
    codes = [r.finish() for r in runs]
    assert sorted(codes) in ([0, 5], [0, 6]), [r.text() for r in runs]
    winner, loser = (runs[0], runs[1]) if codes[0] == 0 else (runs[1], runs[0])
    won = next(line for line in winner.text().splitlines() if "to prod succeeded" in line)
    revision = won.split("deploy of ", 1)[1].split(" ", 1)[0]
    assert service.running() == revision
    assert "has a rollout in progress" in loser.text() or "it was replaced by deployment" in loser.text()
    assert "roll back to" not in loser.text()  # nobody undid the other's deploy
    assert family in revision


def test_wait_goes_after_the_rollout_in_progress(service: Service) -> None:
    family = service.service
    first = deploy(service, service.shas[0])
    wait_until(lambda: WAITING in first.text() or first.proc.poll() is not None, 30)
    second = deploy(service, service.shas[1], "--wait")
    wait_until(lambda: "waiting for the rollout in progress to end" in second.text(), 60)
    with service.open_gate():
        assert first.finish(timeout=120) == 0, first.text()
        assert second.finish(timeout=120) == 0, second.text()
    assert "waiting for the rollout in progress to end: deployment" in second.text()
    assert service.running() == f"{family}:3"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_the_wait_stops_waiting_and_changes_nothing(
    service: Service, signum: int, code: int
) -> None:
    from tests.standins import honeycomb_markers

    family = service.service
    with honeycomb_markers(None, None).running() as api:
        env = {**service.environ, "HONEYCOMB_API_KEY": "k", "HONEYCOMB_API_HOST": api.url}
        run = deploy(service, service.shas[0], env=env)
        wait_until(lambda: WAITING in run.text() or run.proc.poll() is not None, 30)
        run.proc.send_signal(signum)
        assert run.finish(timeout=15) == code, run.text()
    text = run.text()
    name = signal.Signals(signum).name
    assert (
        f"deploy of {family}:2 to prod interrupted by {name}: stopped waiting and changed nothing more"
        in text
    )
    assert f"the service runs {family}:2; still rolling out: deployment " in text
    assert "roll back to" not in text and "succeeded" not in text
    assert api.requests == []  # no marker claims a deploy that was not verified
    # The rollout goes on without us; nothing rolled it back.
    deployments = service.describe()["deployments"]
    assert deployments[0]["taskDefinition"].endswith(f"{family}:2")
    tags = service.client("ecs").describe_task_definition(taskDefinition=f"{family}:2", include=["TAGS"])[
        "tags"
    ]
    assert "pipeline:verified-at" not in {t["key"] for t in tags}


def test_a_second_ctrl_c_exits_at_once() -> None:
    """The first interrupt's report may hang on AWS; the second one must not wait for it."""
    script = textwrap.dedent(
        """
        import time
        from pipeline import interrupts
        with interrupts.guard():
            try:
                print("waiting", flush=True)
                time.sleep(60)
            except interrupts.Interrupted:
                print("reporting", flush=True)
                time.sleep(60)  # a report stuck on a slow AWS call
        """
    )
    run = Running(
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    )
    run.start_reading()
    wait_until(lambda: "waiting" in run.text(), 15)
    run.proc.send_signal(signal.SIGINT)
    wait_until(lambda: "reporting" in run.text(), 15)
    run.proc.send_signal(signal.SIGINT)
    assert run.finish(timeout=5) == 130
