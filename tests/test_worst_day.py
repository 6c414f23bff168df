"""Real `invoke deploy` processes on a real (local) ECS: two deploys at once, and
SIGINT/SIGTERM during the wait (tests/processes.py: the service and the processes)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import ROOT, wait_until
from tests.processes import WAITING, Running, Service, deploy, service

__all__ = ["service"]  # the fixture


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
    runs = [deploy(service, service.shas[0]), deploy(service, service.shas[1])]
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
    assert first.finish() == 0, first.text()
    assert second.finish() == 0, second.text()
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
