"""Failed deploys on real containers: the local ECS runs each broken image, its circuit
breaker trips and rolls back — or, without one, our time-out does; a revision that runs
but answers wrong fails the smoke test and we roll it back — and the deploy says why, as
it would against ECS.

Each test sets the service up as `invoke setup --env prod` does (CloudFormation: load
balancer, circuit breaker with rollback), lets its first revision COMPLETE, deploys a
broken revision, then checks the exit code, the reasons printed, the revision the
service runs (with the aws CLI) and that the load balancer still answers.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline import deploy, infra
from pipeline.config import SmokeSettings
from pipeline.errors import DeployFailed
from tests.conftest import push_broken, push_image, set_circuit_breaker, wait_for_rollout
from tests.helpers import ROLLOUT_DEADLINE, ROOT, http_get, put_image_record, wait_until

# Each test sets up a service and deploys a broken revision on real containers.
pytestmark = pytest.mark.heavy


@dataclass
class Live:
    ctx: Any
    url: str
    cluster: str
    service: str
    repository: str


def short_health_checks(project: Path) -> None:
    """ECS's shortest health-check interval and fewest retries, so a never-healthy task
    fails in seconds; ECS's default timeout and a short start period, so a healthy one
    starting or answering slowly on a loaded machine is not failed (a never-healthy one
    answers 404 at once)."""
    path = project / "hello_world/deploy/taskdef.json"
    template = json.loads(path.read_text())
    template["containerDefinitions"][0]["healthCheck"].update(
        interval=5, retries=2, startPeriod=20, timeout=5
    )
    path.write_text(json.dumps(template))


@pytest.fixture
def live(tmp_path: Path, make_context: Callable[..., Any], environ: dict[str, str], hello_image: str) -> Live:
    shutil.copytree(
        ROOT / "hello_world", tmp_path / "hello_world", ignore=shutil.ignore_patterns("__pycache__")
    )
    short_health_checks(tmp_path)
    ctx = make_context(root=tmp_path)
    infra.setup(ctx)
    good = "a" * 40
    push_image(environ, hello_image, ctx.settings.repository, good)
    infra.setup(ctx, "prod", image_tag=good)
    env = ctx.settings.environment("prod")
    wait_for_rollout(lambda name: ctx.clients.aws(name), env.cluster, env.service)
    url = f"http://{_dns_name(ctx, env.cluster, env.service)}/hello/"
    assert wait_until(lambda: http_get(url) == (200, "Hello World!\n"), timeout=30)
    ctx.out.stream = io.StringIO()
    return Live(ctx, url, env.cluster, env.service, ctx.settings.repository)


def _dns_name(ctx: Any, cluster: str, service: str) -> str:
    found = ctx.clients.aws("ecs").describe_services(cluster=cluster, services=[service])["services"][0]
    elbv2 = ctx.clients.aws("elbv2")
    group = elbv2.describe_target_groups(TargetGroupArns=[found["loadBalancers"][0]["targetGroupArn"]])
    balancer = elbv2.describe_load_balancers(LoadBalancerArns=group["TargetGroups"][0]["LoadBalancerArns"])
    return str(balancer["LoadBalancers"][0]["DNSName"])


def deploy_fails(live: Live, sha: str) -> str:
    with pytest.raises(DeployFailed) as info:
        deploy.deploy(live.ctx, deploy.DeployOptions("prod", sha, timeout=ROLLOUT_DEADLINE, smoke=True))
    assert info.value.exit_code == 1
    return str(info.value) + "\n" + live.ctx.out.stream.getvalue()


def assert_previous_revision_serves(live: Live, aws_cli: Callable[..., Any]) -> None:
    service = aws_cli("ecs", "describe-services", "--cluster", live.cluster, "--services", live.service)[
        "services"
    ][0]
    assert service["taskDefinition"].endswith(f"{live.service}:1")
    primary = next(d for d in service["deployments"] if d["status"] == "PRIMARY")
    assert primary["taskDefinition"].endswith(f"{live.service}:1")
    assert http_get(live.url) == (200, "Hello World!\n")


def test_an_image_that_exits_3_is_caught_and_rolled_back(
    live: Live, environ: dict[str, str], hello_image: str, aws_cli: Callable[..., Any]
) -> None:
    push_broken(
        environ,
        f'FROM {hello_image}\nCMD ["python3", "-c", "import sys; sys.exit(3)"]\n',
        live.repository,
        "b" * 40,
    )
    output = deploy_fails(live, "b" * 40)
    assert output.startswith(f"deploy of {live.service}:2 to prod failed: ")
    first = output.splitlines()[0]
    assert first.endswith(f"; ECS rolled back to {live.service}:1, which runs now"), first
    assert first.lower().count("circuit breaker") == 1, first  # said once
    assert ".;" not in first
    assert "stopped: task " in output and "Essential container in task exited" in output
    assert f"{live.service}: exit 3" in output
    # ECS's own rollback was waited on, not repeated: no third revision, no second update.
    assert f"==> wait for ECS's rollback to {live.service}:1" in output
    assert f"{live.service}:3" not in output
    assert "deployment failed: tasks failed to start." in output  # the circuit breaker's event
    assert "rolling back to deployment" in output
    assert_previous_revision_serves(live, aws_cli)


def test_an_image_that_never_becomes_healthy_is_caught_and_rolled_back(
    live: Live, environ: dict[str, str], hello_image: str, aws_cli: Callable[..., Any]
) -> None:
    push_broken(environ, never_healthy(hello_image), live.repository, "c" * 40)
    output = deploy_fails(live, "c" * 40)
    assert "Task failed container health checks" in output
    assert_previous_revision_serves(live, aws_cli)


def never_healthy(hello_image: str) -> str:
    """A Dockerfile that serves files instead of the app, so /hello/health answers 404; it
    stops on SIGTERM at once (a server that ignored it would be killed after stopTimeout)."""
    return f'FROM {hello_image}\nCMD ["sh", "-c", "{SERVE_FILES}"]\n'


SERVE_FILES = "trap 'exit 0' TERM; python3 -m http.server --bind 127.0.0.1 $PORT & wait"


def test_a_rollout_that_never_ends_is_rolled_back_when_the_deploy_times_out(
    live: Live,
    environ: dict[str, str],
    hello_image: str,
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
) -> None:
    # Without a circuit breaker ECS replaces unhealthy tasks forever: only our timeout ends it.
    set_circuit_breaker(aws, live.cluster, live.service, on=False)
    push_broken(environ, never_healthy(hello_image), live.repository, "f" * 40)
    with pytest.raises(DeployFailed) as info:
        # Failing after 20 s; the rollback that follows gets its own, longer wait.
        options = deploy.DeployOptions("prod", "f" * 40, timeout=20, rollback_timeout=180, smoke=True)
        deploy.deploy(live.ctx, options)
    message = info.value.message
    assert message.startswith(f"deploy of {live.service}:2 to prod failed: timed out after 20s waiting for ")
    assert message.endswith(f"rolled back to {live.service}:1, which runs now")
    assert "Task failed container health checks" in live.ctx.out.stream.getvalue()
    tags = aws_cli(
        "ecs", "describe-task-definition", "--task-definition", f"{live.service}:2", "--include", "TAGS"
    )["tags"]
    assert "pipeline:verified-at" not in {t["key"] for t in tags}
    assert_previous_revision_serves(live, aws_cli)


def test_no_rollback_leaves_the_new_revision_and_says_what_runs(
    live: Live,
    environ: dict[str, str],
    hello_image: str,
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
) -> None:
    set_circuit_breaker(aws, live.cluster, live.service, on=False)
    push_broken(environ, never_healthy(hello_image), live.repository, "a1" * 20)
    with pytest.raises(DeployFailed) as info:
        deploy.deploy(
            live.ctx, deploy.DeployOptions("prod", "a1" * 20, timeout=15, rollback=False, smoke=True)
        )
    assert info.value.exit_code == 6  # changed, and left changed
    message = info.value.message
    assert (
        f"not rolled back (--no-rollback); the service now runs {live.service}:2; still rolling out:"
        in message
    )
    # ECS goes on trying :2 while :1's task, never replaced by a healthy one, still serves.
    service = aws_cli("ecs", "describe-services", "--cluster", live.cluster, "--services", live.service)[
        "services"
    ][0]
    assert service["taskDefinition"].endswith(f"{live.service}:2")
    rollouts = {d["taskDefinition"].rsplit("/", 1)[-1]: d for d in service["deployments"]}
    assert rollouts[f"{live.service}:2"]["rolloutState"] == "IN_PROGRESS"
    assert rollouts[f"{live.service}:1"]["runningCount"] == 1
    assert http_get(live.url) == (200, "Hello World!\n")


def test_a_rollout_that_completes_but_answers_wrong_fails_the_smoke_test_and_is_rolled_back(
    live: Live, environ: dict[str, str], hello_image: str, aws_cli: Callable[..., Any]
) -> None:
    # Healthy to ECS and to the load balancer (/hello/health is a file), wrong to users.
    site = "mkdir -p /site/hello && echo 'Goodbye World' > /site/hello/index.html && echo ok > /site/hello/health"
    push_broken(
        environ,
        f"FROM {hello_image}\nUSER 0:0\nRUN {site}\nUSER 10001:10001\nWORKDIR /site\n"
        f'CMD ["sh", "-c", "{SERVE_FILES}"]\n',
        live.repository,
        "9" * 40,
    )
    live.ctx.settings = dataclasses.replace(
        live.ctx.settings, smoke=SmokeSettings(text="Hello World!", timeout=5.0)
    )
    output = deploy_fails(live, "9" * 40)
    first = output.splitlines()[0]
    assert first.startswith(f"deploy of {live.service}:2 to prod failed: smoke test failed: GET {live.url}")
    assert "Goodbye World" in first
    assert first.endswith(f"rolled back to {live.service}:1, which runs now")
    assert_previous_revision_serves(live, aws_cli)


def test_a_secret_that_does_not_exist_is_caught_and_rolled_back(
    live: Live, environ: dict[str, str], hello_image: str, aws_cli: Callable[..., Any]
) -> None:
    prod = live.ctx.settings.root / "hello_world/deploy/prod.json"
    settings = json.loads(prod.read_text())
    settings["secrets"] = {"DB_PASSWORD": f"/{live.repository}/prod/missing"}
    prod.write_text(json.dumps(settings))
    push_image(environ, hello_image, live.repository, "d" * 40)
    output = deploy_fails(live, "d" * 40)
    assert "ResourceInitializationError: unable to pull secrets or registry auth" in output
    assert f"invalid ssm parameters: /{live.repository}/prod/missing" in output
    assert_previous_revision_serves(live, aws_cli)


def test_a_tag_in_ecr_but_not_in_the_registry_is_caught_and_rolled_back(
    live: Live, aws: Callable[[str], Any], aws_cli: Callable[..., Any]
) -> None:
    put_image_record(aws, live.repository, "e" * 40)  # ECR lists it; the registry has no such tag
    output = deploy_fails(live, "e" * 40)
    assert "CannotPullContainerError: pull image manifest has been retried" in output
    assert f"/{live.repository}:{'e' * 40}: not found" in output
    assert_previous_revision_serves(live, aws_cli)
