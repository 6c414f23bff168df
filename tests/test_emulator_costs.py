"""The emulator's patches of moto: its shortcuts around fixed per-request work change no
answer, and each request runs under the lock the scheduler holds."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

from tests.helpers import ROOT


def test_cached_template_parsing_builds_moto_s_own_documents_and_hands_out_copies() -> None:
    # In a process of its own: install() patches moto's modules for the rest of the process.
    script = textwrap.dedent(
        """
        import yaml
        from importlib import resources
        from moto import backends
        from moto.cloudformation import models, responses
        from moto.cloudformation.utils import yaml_tag_constructor

        texts = [(resources.files("pipeline") / "templates" / n).read_text()
                 for n in ("project.yaml", "environment.yaml")]
        yaml.add_multi_constructor("", yaml_tag_constructor)
        expected = [yaml.load(t, Loader=yaml.Loader) for t in texts]  # moto's own way
        modules = list(backends.list_of_moto_modules())

        from pipeline.stack.emulator import moto_costs
        moto_costs.install()
        assert [models.Stack.parse_template(t) for t in texts] == expected
        assert [responses.yaml.load(t, Loader=yaml.Loader) for t in texts] == expected
        assert any("Fn::Sub" in str(d) or "Ref" in str(d) for d in expected)  # tags were parsed
        first = models.Stack.parse_template(texts[0])
        first["Resources"].clear()
        assert models.Stack.parse_template(texts[0]) == expected[0]  # a copy each time
        assert list(backends.list_of_moto_modules()) == modules
        print("same")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "same", proc.stdout + proc.stderr


def _agent_run(phase: str, status: str, exit_code: int | None) -> SimpleNamespace:
    state = SimpleNamespace(status=status, health="UNKNOWN", exit_code=exit_code, reason="")
    return SimpleNamespace(
        containers={"web": state},
        port=0,
        phase=phase,
        stopping=False,
        healthy=False,
        unhealthy=False,
        stop_code="EssentialContainerExited",
        stopped_reason="Essential container in task exited",
    )


def _moto_task(run: SimpleNamespace) -> SimpleNamespace:
    return SimpleNamespace(
        _run=run,
        containers=[SimpleNamespace(name="web", last_status="PENDING")],
        last_status="RUNNING",
        desired_status="RUNNING",
        stopped_reason="",
        health_status="UNKNOWN",
    )


def test_a_task_that_stops_while_its_state_is_copied_is_copied_again_then_left_as_it_ended() -> None:
    from pipeline.stack.emulator import scheduler

    run = _agent_run("RUNNING", "RUNNING", None)
    task = _moto_task(run)

    class StopsWhileRead(dict):  # the agent finishing between the scheduler's reads
        def get(self, key: str, default: object = None) -> object:
            state = super().get(key, default)
            run.phase = "STOPPED"
            return state

    run.containers = StopsWhileRead(run.containers)
    scheduler.sync_task(task)
    assert task.last_status == "STOPPED" and task.containers[0].last_status == "RUNNING"  # copied mid-stop

    run.containers = {"web": SimpleNamespace(status="STOPPED", health="UNKNOWN", exit_code=3, reason="")}
    scheduler.sync_task(task)  # not skipped: the last copy was made before the task had stopped
    assert (task.containers[0].last_status, task.containers[0].exitCode) == ("STOPPED", 3)

    run.containers["web"].exit_code = 99  # after its final state, a stopped task is never read again
    scheduler.sync_task(task)
    assert task.containers[0].exitCode == 3


def test_each_api_request_runs_under_the_lock_the_scheduler_holds() -> None:
    # moto's server answers on a thread per request over shared dicts; a DescribeStacks
    # iterating while a CreateStack added a stack failed with a 500 botocore cannot parse.
    script = textwrap.dedent(
        """
        from moto.core import responses
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.test import Client
        from pipeline.stack.emulator import engine

        engine.one_request_at_a_time()
        owned = []
        call_action = responses.BaseResponse.call_action

        def record(self):
            owned.append(engine.LOCK._is_owned())
            return call_action(self)

        responses.BaseResponse.call_action = record
        auth = ("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sts/aws4_request, "
                "SignedHeaders=host, Signature=x")
        answer = Client(DomainDispatcherApplication(create_backend_app)).post(
            "/", data={"Action": "GetCallerIdentity", "Version": "2011-06-15"},
            headers={"Host": "sts.amazonaws.com", "Authorization": auth},
        )
        print(answer.status_code, owned, engine.LOCK._is_owned())
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.split() == ["200", "[True]", "False"], (
        proc.stdout + proc.stderr
    )
