"""The smoke gate on real containers: `deploy` of a BLUE_GREEN service with a PAUSE hook at
POST_TEST_TRAFFIC_SHIFT, while pipeline/loadgen.py sends 20 requests a second to the production
URL through the local load balancer. A good revision passes the gate and takes production
with no failed request; a revision that is healthy but answers wrongly is sent back at the
gate, and not one production request reaches it. The local ECS runs the service deployment
(pipeline/stack/emulator/service_deployments.py); the aws CLI reads it back."""

from __future__ import annotations

import dataclasses
import io
import signal
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline import deploy
from pipeline.config import SmokeSettings
from pipeline.errors import DeployFailed
from pipeline.loadgen import Load
from tests.conftest import push_broken, push_image
from tests.helpers import HELLO, ROLLOUT_DEADLINE, wait_until
from tests.processes import start
from tests.test_failures import SERVE_FILES
from tests.test_local_ecs_strategies import PAUSE_AT_TEST_SHIFT, BlueGreen, blue_green_service, cleanup

RATE = 20.0
GATE = {**PAUSE_AT_TEST_SHIFT, "timeoutConfiguration": {"timeoutInMinutes": 10, "action": "ROLLBACK"}}
# Each strategy's configuration; bakes of a minute run in 6 s on the local stack (EMULATOR_SPEED 10).
STRATEGIES = {
    "BLUE_GREEN": {},
    "LINEAR": {"linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 1}},
    "CANARY": {"canaryConfiguration": {"canaryPercent": 50.0, "canaryBakeTimeInMinutes": 1}},
}


# ECS's lifecycle stages of a service deployment, in order (the ECS API reference).
ECS_STAGES = [
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
    "BAKE_TIME",
    "CLEAN_UP",
]


def new_sha() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


@pytest.fixture(params=list(STRATEGIES))
def blue_green(
    request: pytest.FixtureRequest,
    aws: Callable[[str], Any],
    environ: dict[str, str],
    prefix: str,
    hello_image: str,
    repository: str,
) -> Iterator[BlueGreen]:
    """A service of each native strategy with the gate (a PAUSE hook at POST_TEST_TRAFFIC_SHIFT,
    ROLLBACK on its timeout) running `blue` behind the local load balancer."""
    blue = push_image(environ, hello_image, repository, "blue")
    config = {"strategy": request.param, **STRATEGIES[request.param]}
    yield blue_green_service(aws, environ, prefix, blue, [GATE], **config)
    cleanup(aws, environ, prefix)


@pytest.fixture
def ctx(make_context: Callable[..., Any]) -> Any:
    context = make_context()
    context.settings = dataclasses.replace(
        context.settings, smoke=SmokeSettings(text="Hello World!", timeout=8.0)
    )
    context.out.stream = io.StringIO()
    return context


@dataclasses.dataclass
class UnderLoad:
    load: Load
    done: float  # when the deploy returned, on the load's clock
    result: Any  # what deploy returned, or the DeployFailed it raised


def deploy_under_load(ctx: Any, url: str, sha: str) -> UnderLoad:
    """Deploy `sha` to prod while RATE requests a second go to `url`: from a second of blue's
    answers until a second of answers after the deploy returned."""
    with Load(url, HELLO, rate=RATE) as load:
        load.wait_for("answers from blue", lambda a: sum(x.revision == "blue" for x in a) >= RATE, 60)
        try:
            result: Any = deploy.deploy(ctx, deploy.DeployOptions("prod", sha, timeout=180, smoke=True))
        except DeployFailed as exc:
            result = exc
        done = load.now()
        load.wait_for("answers after the deploy", lambda a: sum(x.sent > done + 1 for x in a) >= RATE, 60)
    return UnderLoad(load, done, result)


def service_deployments(aws_cli: Callable[..., Any], env: BlueGreen) -> list[dict[str, Any]]:
    listed = aws_cli("ecs", "list-service-deployments", "--cluster", env.cluster, "--service", env.service)
    arns = [d["serviceDeploymentArn"] for d in listed["serviceDeployments"]]
    found = aws_cli("ecs", "describe-service-deployments", "--service-deployment-arns", *arns)
    return sorted(found["serviceDeployments"], key=lambda d: d["createdAt"])


@pytest.mark.heavy
def test_a_native_deploy_under_load_passes_the_gate_fails_no_request_and_then_only_the_new_revision_answers(
    blue_green: BlueGreen,
    ctx: Any,
    environ: dict[str, str],
    hello_image: str,
    repository: str,
    aws_cli: Callable[..., Any],
) -> None:
    from tests.standins import honeycomb_markers

    sha = new_sha()
    push_image(environ, hello_image, repository, sha)
    with honeycomb_markers(None, None).running() as honeycomb:
        ctx.environ = {**ctx.environ, "HONEYCOMB_API_KEY": "k", "HONEYCOMB_API_HOST": honeycomb.url}
        run = deploy_under_load(ctx, blue_green.production_url, sha)
    load, done, released = run.load, run.done, run.result
    said = ctx.out.stream.getvalue()
    assert not isinstance(released, DeployFailed), released.message
    assert released is not None and released.probe is not None
    assert f"gate: smoke-testing the new revision through the test listener: {blue_green.test_url}" in said
    assert "gate: passed; CONTINUE to production traffic" in said
    answers = load.answers()
    assert load.failed() == [], f"{len(load.failed())} of {len(answers)} failed, e.g. {load.failed()[:3]}"
    assert load.revisions() == ["blue", sha]
    assert all(a.revision == sha for a in answers if a.sent > done)
    last = service_deployments(aws_cli, blue_green)[-1]
    strategy = last["deploymentConfiguration"]["strategy"]
    assert (
        last["status"] == "SUCCESSFUL"
        and strategy
        == aws_cli(
            "ecs", "describe-services", "--cluster", blue_green.cluster, "--services", blue_green.service
        )["services"][0]["deploymentConfiguration"]["strategy"]
    )
    # A marker per lifecycle stage the deploy saw, in ECS's order, each with the service
    # deployment's ARN; the gate's stage is always seen (the deployment waits there); then the deploy's.
    marked = [r.json() for r in honeycomb.requests]
    assert [m["type"] for m in marked][-1] == "deploy"
    stages = [m["message"].split(" at ", 1)[1].split(":")[0] for m in marked if m["type"] == "deploy-stage"]
    assert all(m["message"].endswith(last["serviceDeploymentArn"]) for m in marked[:-1]), marked
    assert "POST_TEST_TRAFFIC_SHIFT" in stages and stages == sorted(stages, key=ECS_STAGES.index), stages
    if strategy == "CANARY":  # while the canary bakes, about half of production reaches it
        first_new = next(a.sent for a in answers if a.revision == sha)
        last_blue = max(a.sent for a in answers if a.revision == "blue")
        mixed = [a for a in answers if first_new <= a.sent <= last_blue]
        share = sum(a.revision == sha for a in mixed) / len(mixed)
        assert len(mixed) >= RATE and 0.3 <= share <= 0.7, (len(mixed), share)


@pytest.mark.heavy
def test_a_healthy_revision_that_answers_wrongly_is_stopped_at_the_gate_and_no_production_request_reaches_it(
    blue_green: BlueGreen,
    ctx: Any,
    environ: dict[str, str],
    hello_image: str,
    repository: str,
    aws_cli: Callable[..., Any],
) -> None:
    # Healthy to ECS and to the load balancer (/hello/health is a file), wrong to users.
    site = "mkdir -p /site/hello && echo 'Goodbye World' > /site/hello/index.html && echo ok > /site/hello/health"
    sha = "9" * 40
    push_broken(
        environ,
        f"FROM {hello_image}\nUSER 0:0\nRUN {site}\nUSER 10001:10001\nWORKDIR /site\n"
        f'CMD ["sh", "-c", "{SERVE_FILES}"]\n',
        repository,
        sha,
    )
    run = deploy_under_load(ctx, blue_green.production_url, sha)
    load, failed = run.load, run.result
    assert isinstance(failed, DeployFailed), failed
    message = failed.message
    assert failed.exit_code == 1
    assert message.startswith(
        f"deploy of {blue_green.service}:3 to prod failed: the smoke test at the gate failed: "
    )
    assert "Goodbye World" in message and "production traffic never reached it" in message
    answers = load.answers()
    # Every production answer is blue's, before, during and after: green never served one.
    assert load.failed() == [], f"{len(load.failed())} of {len(answers)} failed, e.g. {load.failed()[:3]}"
    assert load.revisions() == ["blue"] and len(answers) >= 2 * RATE
    last = service_deployments(aws_cli, blue_green)[-1]
    assert last["status"] == "ROLLBACK_SUCCESSFUL"
    service = aws_cli(
        "ecs", "describe-services", "--cluster", blue_green.cluster, "--services", blue_green.service
    )
    assert service["services"][0]["taskDefinition"].endswith(f"{blue_green.service}:1")


@pytest.mark.heavy
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_a_canary_bake_stops_the_deployment_with_rollback_and_production_stays_whole(
    signum: int,
    code: int,
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
    environ: dict[str, str],
    prefix: str,
    hello_image: str,
    repository: str,
) -> None:
    blue = push_image(environ, hello_image, repository, "blue")
    canary = {"canaryPercent": 50.0, "canaryBakeTimeInMinutes": 60}  # 6 min here: the signal lands in it
    env = blue_green_service(
        aws, environ, prefix, blue, [GATE], strategy="CANARY", canaryConfiguration=canary
    )
    try:
        sha = new_sha()
        push_image(environ, hello_image, repository, sha)
        with Load(env.production_url, HELLO, rate=RATE) as load:
            run = start(environ, "deploy", "--env", "prod", "--sha", sha)
            # The canary takes its share of production: the bake has begun.
            wait_until(
                lambda: "production 50%" in run.text() or run.proc.poll() is not None, ROLLOUT_DEADLINE
            )
            load.wait_for("answers from the canary", lambda a: any(x.revision == sha for x in a), 60)
            run.proc.send_signal(signum)
            assert run.finish(timeout=ROLLOUT_DEADLINE) == code, run.text()
            done = load.now()
            load.wait_for("answers after the deploy", lambda a: sum(x.sent > done + 1 for x in a) >= RATE, 60)
        text = run.text()
        name = signal.Signals(signum).name
        assert f"interrupted by {name}: service deployment " in text
        assert "was stopped with ROLLBACK: ROLLBACK_SUCCESSFUL; the service runs " in text
        answers = load.answers()
        assert load.failed() == [], f"{len(load.failed())} of {len(answers)} failed, e.g. {load.failed()[:3]}"
        assert all(a.revision == "blue" for a in answers if a.sent > done)  # the canary is gone
        last = service_deployments(aws_cli, env)[-1]
        assert last["status"] == "ROLLBACK_SUCCESSFUL"
        service = aws_cli("ecs", "describe-services", "--cluster", env.cluster, "--services", env.service)
        assert service["services"][0]["taskDefinition"].endswith(f"{env.service}:1")
    finally:
        cleanup(aws, environ, prefix)


# A revision that answers right a few times, then wrongly (as one that breaks under real
# traffic): it passes the gate's smoke test, and only production's share shows it.
DEGRADING = """
import http.server, os, threading
count, lock, base = [0], threading.Lock(), os.environ.get("BASE_PATH", "/hello/")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok"
        if self.path != base + "health":
            with lock:
                count[0] += 1
                body = b"Hello World!\\n" if count[0] <= 3 else b"Goodbye\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.mark.heavy
def test_a_canary_that_answers_wrongly_once_it_takes_production_is_stopped_at_its_step_and_production_goes_back(
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
    ctx: Any,
    environ: dict[str, str],
    prefix: str,
    hello_image: str,
    repository: str,
) -> None:
    import base64

    blue = push_image(environ, hello_image, repository, "blue")
    canary = {"canaryPercent": 50.0, "canaryBakeTimeInMinutes": 10}  # 60 s here: the step's check lands in it
    env = blue_green_service(
        aws, environ, prefix, blue, [GATE], strategy="CANARY", canaryConfiguration=canary
    )
    try:
        sha = new_sha()
        script = base64.b64encode(DEGRADING.encode()).decode()
        push_broken(
            environ,
            f"FROM {hello_image}\nUSER 0:0\nRUN echo {script} | base64 -d > /srv/degrading.py\n"
            f'USER 10001:10001\nCMD ["python3", "/srv/degrading.py"]\n',
            repository,
            sha,
        )
        run = deploy_under_load(ctx, env.production_url, sha)
        load, done, failed = run.load, run.done, run.result
        assert isinstance(failed, DeployFailed), failed
        said = ctx.out.stream.getvalue()
        assert "gate: passed; CONTINUE to production traffic" in said  # it fooled the gate
        message = failed.message
        assert "the smoke test of production at 50% on the new revision failed: GET " in message, said
        assert "Goodbye" in message and "production went back to the previous revision" in message, said
        answers = load.answers()
        after = [a for a in answers if a.sent > done]
        assert after and all(a.error is None and a.revision == "blue" for a in after)
        assert service_deployments(aws_cli, env)[-1]["status"] == "ROLLBACK_SUCCESSFUL"
    finally:
        cleanup(aws, environ, prefix)
