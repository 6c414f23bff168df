"""`invoke demo`: the whole mainline flow for this service on the local stack.

test → build → dockerize → setup (the project's stack: ECR repository, cluster, roles)
→ push → setup --env prod (the service, first time only) → deploy → wait → run the
deployed image locally → smoke-test it. With --failure it also deploys a broken image
between the deploy and the local run: the local ECS's circuit breaker rolls it back. With
--strategy (BLUE_GREEN, LINEAR, CANARY) prod deploys with that ECS strategy and the smoke
gate, and the demo then deploys a revision that is healthy but answers wrongly, while a
load generator watches production: the gate stops it, and production keeps answering.
The same verbs CI and a person run, against the local stack instead of an AWS account;
re-running deploys a new revision.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import deploy, ecs, image, infra, local, smoke, verbs
from .config import Settings
from .context import Context
from .errors import ConfigError, DeployFailed, PipelineError
from .git import Revision

ENVIRONMENT = "prod"
TITLE_LABEL = "org.opencontainers.image.title"
NATIVE = ("BLUE_GREEN", "LINEAR", "CANARY")


def strategy_named(given: str) -> str:
    """--strategy's value, checked before anything runs."""
    name = given.strip().upper().replace("-", "_")
    if name not in NATIVE:
        raise ConfigError(f"--strategy {given}: one of {', '.join(NATIVE)} (without it: the project's own)")
    return name


def with_strategy(settings: Settings, strategy: str) -> Settings:
    """The settings with prod on `strategy` and the demo's timings. Pure."""
    current = settings.infra.environment(ENVIRONMENT)
    # Quick to watch: no bake after the switch, 50 % steps or canary, one-minute step bakes
    # (6 s on the local stack, whose timings run EMULATOR_SPEED times faster).
    quick = replace(
        current,
        strategy=strategy,
        bake_time_minutes=0,
        step_percent=50.0,
        step_bake_time_minutes=1,
        canary_percent=50.0,
        canary_bake_time_minutes=1,
    )
    environments = {**settings.infra.environments, ENVIRONMENT: quick}
    return replace(settings, infra=replace(settings.infra, environments=environments))


@dataclass(frozen=True)
class DemoResult:
    revision: str
    image: str
    url: str
    container: str


def _replace_previous_containers(ctx: Context) -> list[str]:
    """Containers an earlier demo (or pull-and-run) started from this service's images:
    they hold the port, and a re-run replaces them."""
    repository = ctx.settings.repository
    removed = []
    # Other containers on the engine come and go meanwhile: one removed between the listing
    # and its inspection is skipped, not an error.
    found = ctx.clients.docker().containers.list(all=True, filters={"name": repository}, ignore_removed=True)
    for container in found:
        labels = container.labels or {}
        if container.name.startswith(f"{repository}-") and labels.get(TITLE_LABEL) == repository:
            container.remove(force=True)
            removed.append(container.name)
    return removed


def broken_deploy(ctx: Context, good: Revision, timeout: float) -> str:
    """Deploy an image that exits 3 at start (built on the good one): the local ECS's
    circuit breaker stops it and rolls back; returns the deploy's failure."""
    import hashlib
    import io

    broken = Revision(hashlib.sha256(f"broken {good.tag}".encode()).hexdigest()[:40])
    dockerfile = (
        f'FROM {image.local_name(ctx.settings, good)}\nCMD ["python3", "-c", "raise SystemExit(3)"]\n'
    )
    with ctx.out.step(f"dockerize a broken image {broken.tag[:12]} (exits 3 at start)"):
        ctx.clients.docker().images.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=image.local_name(ctx.settings, broken), rm=True
        )
    with ctx.out.step(f"push {broken.tag[:12]}"):
        verbs.push(ctx, broken)
    try:
        deploy.deploy(ctx, deploy.DeployOptions(ENVIRONMENT, broken.sha, timeout=timeout, smoke=False))
    except DeployFailed as failed:
        ctx.out.say(f"caught as intended: {failed.message}")
        return failed.message
    raise PipelineError("the broken image deployed; the failure demo expected it to be caught")


WRONG_ANSWER = "a wrong answer"


def push_wrong_answer(ctx: Context, good: Revision) -> Revision:
    """Build and push, on `good`'s image, a revision that is healthy (its health path
    answers) but answers WRONG_ANSWER at the base path: what only a smoke test catches."""
    import hashlib
    import io

    settings = ctx.settings
    wrong = Revision(hashlib.sha256(f"wrong {good.tag}".encode()).hexdigest()[:40])
    base = settings.base_path
    health = settings.infra.environment(ENVIRONMENT).health_check_path or f"{base}health"
    site = (
        f"mkdir -p /site{base} /site{health.rsplit('/', 1)[0]} && echo '{WRONG_ANSWER}' > /site{base}index.html "
        f"&& echo ok > /site{health}"
    )
    serve = "trap 'exit 0' TERM; python3 -m http.server --bind 127.0.0.1 $PORT & wait"
    dockerfile = (
        f"FROM {image.local_name(settings, good)}\nUSER 0:0\nRUN {site}\nUSER 10001:10001\nWORKDIR /site\n"
        f'CMD ["sh", "-c", "{serve}"]\n'
    )
    with ctx.out.step(
        f"dockerize a wrong-answering image {wrong.tag[:12]} (healthy, answers '{WRONG_ANSWER}')"
    ):
        ctx.clients.docker().images.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=image.local_name(settings, wrong), rm=True
        )
    with ctx.out.step(f"push {wrong.tag[:12]}"):
        verbs.push(ctx, wrong)
    return wrong


def quick_smoke(settings: Settings) -> Settings:
    """The gate retries its smoke test up to its timeout; a wrong answer needs no minute to show."""
    return replace(settings, smoke=replace(settings.smoke, timeout=min(settings.smoke.timeout, 10.0)))


def wrong_answer_deploy(ctx: Context, good: Revision, url: str, timeout: float) -> str:
    """Deploy a wrong-answering revision (push_wrong_answer) while 10 requests a second reach
    production `url`: the gate must send it back before production traffic. Returns the
    deploy's failure; raises if the gate let it by or production failed a request meanwhile."""
    from .loadgen import Load

    settings = ctx.settings
    wrong = push_wrong_answer(ctx, good)
    expect = (settings.smoke.status, settings.smoke.text.encode())
    ctx.settings = quick_smoke(settings)
    with Load(url, expect, rate=10.0) as load:
        try:
            deploy.deploy(ctx, deploy.DeployOptions(ENVIRONMENT, wrong.sha, timeout=timeout, smoke=True))
        except DeployFailed as stopped:
            caught = stopped.message
        else:
            raise PipelineError("the wrong-answering revision deployed; the gate should have stopped it")
    ctx.settings = settings
    answers, failed = load.answers(), load.failed()
    ctx.out.say(f"caught at the gate, as intended: {caught}")
    ctx.out.say(f"production meanwhile ({url}): {len(answers)} requests, {len(failed)} failed")
    if failed:
        raise PipelineError(f"production failed {len(failed)} of {len(answers)} requests: {failed[0].error}")
    return caught


def run(
    ctx: Context, port: int, timeout: float = 120.0, failure: bool = False, strategy: str | None = None
) -> DemoResult:
    if strategy is not None:
        ctx.settings = with_strategy(ctx.settings, strategy)
    out, settings = ctx.out, ctx.settings
    for name in _replace_previous_containers(ctx):
        out.detail(f"removed the previous run's container {name}")
    local.ensure_port_free(port, "pass --port N")
    revision = ctx.revision()
    with out.step("test"):
        verbs.test(ctx)
    with out.step("build"):
        verbs.build(ctx)
    with out.step(f"dockerize {revision.tag}"):
        verbs.dockerize(ctx, revision)
    infra.setup(ctx)  # the project's stack, which holds the ECR repository
    with out.step(f"push {revision.tag}"):
        verbs.push(ctx, revision)
    infra.setup(ctx, ENVIRONMENT, image_tag=revision.tag)  # the service needs an image to start
    # Busy.WAIT: setup may have just created the service, whose first rollout is still going.
    # The revision built above, not HEAD read again: a commit made meanwhile must not
    # send the deploy looking for an image nobody built. Smoke-tested through the (local)
    # load balancer like any deploy: only that makes the revision verified, a rollback target.
    released = deploy.deploy(
        ctx, deploy.DeployOptions(ENVIRONMENT, built=revision, timeout=timeout, busy=deploy.Busy.WAIT)
    )
    if failure:
        broken_deploy(ctx, revision, timeout)
    if strategy is not None and released is not None and released.url:
        wrong_answer_deploy(ctx, revision, released.url, timeout)
    report = ecs.status(
        ctx.clients, settings.environment(ENVIRONMENT).cluster, settings.environment(ENVIRONMENT).service
    )
    image = report["images"][0]
    running = local.run_image(ctx, image, None, port, detach=True)  # its own step: "run <name>"
    try:
        with out.step("smoke test"):
            smoke.check(running.url, settings.smoke, out.detail)
    except PipelineError:
        running.stop()
        raise
    result = DemoResult(report["revision"], image, running.url, running.container_name)
    for line in summary(ctx, result):
        out.say(line)
    return result


def summary(ctx: Context, result: DemoResult) -> list[str]:
    width = max((len(s.name) for s in ctx.out.steps), default=10)
    lines = ["", "demo summary"]
    lines += [f"  {s.name:<{width}}  {s.status:<6} {s.seconds:>6.1f}s" for s in ctx.out.steps]
    lines += [
        f"  deployed   {result.revision} ({result.image})",
        f"  answering  {result.url}",
        f"  stop it    docker rm -f {result.container}",
    ]
    return lines
