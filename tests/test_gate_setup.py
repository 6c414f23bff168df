"""The whole native flow as a team meets it: `strategy` in [tool.pipeline.infra], `invoke
setup --env prod` makes the test listener, the alternate target group, the role and the
service's gate; `invoke deploy` then finds the test listener by itself, smoke-tests each new
revision there before production traffic, and promotes a good one or sends a wrong one
back — under 20 requests a second on the production URL, none failing. Real containers
behind the local load balancer; the aws CLI reads the service deployments back."""

from __future__ import annotations

import dataclasses
import io
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from pipeline import deploy, infra
from pipeline.config import SmokeSettings
from pipeline.errors import DeployFailed
from pipeline.loadgen import Load
from tests.conftest import push_broken, push_image
from tests.helpers import HELLO, ROLLOUT_DEADLINE, http_get, wait_until
from tests.test_failures import SERVE_FILES

RATE = 20.0


def sha() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


@pytest.mark.heavy
@pytest.mark.parametrize(
    "strategy",
    [
        {"strategy": "BLUE_GREEN", "bake_time_minutes": 0},
        {"strategy": "CANARY", "canary_percent": 50.0, "canary_bake_time_minutes": 1, "bake_time_minutes": 0},
    ],
    ids=["BLUE_GREEN", "CANARY"],
)
def test_setup_makes_the_gate_and_deploy_promotes_a_good_revision_and_stops_a_wrong_one_under_load(
    strategy: dict[str, Any],
    infra_ctx: Callable[..., Any],
    environ: dict[str, str],
    hello_image: str,
    aws_cli: Callable[..., Any],
) -> None:
    ctx = infra_ctx(strategy)
    ctx.settings = dataclasses.replace(ctx.settings, smoke=SmokeSettings(text="Hello World!", timeout=8.0))
    infra.setup(ctx)
    first, good, wrong = sha(), sha(), sha()
    push_image(environ, hello_image, ctx.settings.repository, first)
    infra.setup(ctx, "prod", image_tag=first)
    env = ctx.settings.environment("prod")
    live = aws_cli("ecs", "describe-services", "--cluster", env.cluster, "--services", env.service)[
        "services"
    ][0]
    assert live["deploymentConfiguration"]["strategy"] == strategy["strategy"]
    ctx.out.stream = io.StringIO()
    released = deploy.deploy(ctx, deploy.DeployOptions("prod", first, timeout=ROLLOUT_DEADLINE, smoke=True))
    assert released is not None and released.url is not None
    url = released.url
    assert wait_until(lambda: http_get(url)[0] == 200, timeout=30)
    ctx.out.stream = io.StringIO()

    push_image(environ, hello_image, ctx.settings.repository, good)
    site = "mkdir -p /site/hello && echo 'Goodbye World' > /site/hello/index.html && echo ok > /site/hello/health"
    dockerfile = (
        f"FROM {hello_image}\nUSER 0:0\nRUN {site}\nUSER 10001:10001\nWORKDIR /site\n"
        f'CMD ["sh", "-c", "{SERVE_FILES}"]\n'
    )
    push_broken(environ, dockerfile, ctx.settings.repository, wrong)
    with Load(url, HELLO, rate=RATE) as load:
        load.wait_for("answers", lambda a: len(a) >= RATE, 60)
        deploy.deploy(ctx, deploy.DeployOptions("prod", good, timeout=ROLLOUT_DEADLINE, smoke=True))
        with pytest.raises(DeployFailed) as info:
            deploy.deploy(ctx, deploy.DeployOptions("prod", wrong, timeout=ROLLOUT_DEADLINE, smoke=True))
        done = load.now()
        load.wait_for("answers after", lambda a: sum(x.sent > done + 1 for x in a) >= RATE, 60)
    said = ctx.out.stream.getvalue()
    assert said.count("gate: passed; CONTINUE to production traffic") == 1  # the good one
    assert "the smoke test at the gate failed" in info.value.message
    answers = load.answers()
    assert load.failed() == [], f"{len(load.failed())} of {len(answers)} failed, e.g. {load.failed()[:3]}"
    assert load.revisions() == [first, good]  # the wrong one never answered production
    listed = aws_cli("ecs", "list-service-deployments", "--cluster", env.cluster, "--service", env.service)
    arns = [d["serviceDeploymentArn"] for d in listed["serviceDeployments"]]
    found = aws_cli("ecs", "describe-service-deployments", "--service-deployment-arns", *arns)
    statuses = [d["status"] for d in sorted(found["serviceDeployments"], key=lambda d: d["createdAt"])]
    assert statuses[-2:] == ["SUCCESSFUL", "ROLLBACK_SUCCESSFUL"]
