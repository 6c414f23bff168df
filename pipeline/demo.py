"""`invoke demo`: the whole mainline flow for hello_world on the local stack.

test → build → dockerize → (create what the deploy needs) → push → deploy → wait →
run the deployed image locally → smoke-test it. The same verbs CI runs; the only
demo-specific part is `ensure_resources`, which creates (when missing) what
`invoke setup` creates on a real account: the ECR repository, the cluster and the
service. Re-running deploys a new revision.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import deploy, ecs, local, smoke, verbs
from .clients import aws_errors
from .context import Context
from .errors import PipelineError

ENVIRONMENT = "prod"
TITLE_LABEL = "org.opencontainers.image.title"


@dataclass(frozen=True)
class DemoResult:
    revision: str
    image: str
    url: str
    container: str


def ensure_resources(ctx: Context, image: str) -> list[str]:
    """Create the repository, cluster and service when missing; returns what was created."""
    settings, env = ctx.settings, ctx.settings.environment(ENVIRONMENT)
    ecr_client, ecs_client = ctx.clients.aws("ecr"), ctx.clients.aws("ecs")
    created = []
    with aws_errors("ecr:CreateRepository", handled=("RepositoryAlreadyExistsException",)):
        try:
            ecr_client.create_repository(repositoryName=settings.repository)
            created.append(f"ECR repository {settings.repository}")
        except ecr_client.exceptions.RepositoryAlreadyExistsException:
            pass
    with aws_errors("ecs:DescribeClusters"):
        clusters = ecs_client.describe_clusters(clusters=[env.cluster]).get("clusters", [])
    if not any(c.get("status") == "ACTIVE" for c in clusters):
        with aws_errors("ecs:CreateCluster"):
            ecs_client.create_cluster(clusterName=env.cluster)
        created.append(f"ECS cluster {env.cluster}")
    with aws_errors("ecs:DescribeServices"):
        services = ecs_client.describe_services(cluster=env.cluster, services=[env.service]).get(
            "services", []
        )
    if not any(s.get("status") == "ACTIVE" for s in services):
        # A service needs a first revision; the deploy then registers the real one.
        with aws_errors("ecs:RegisterTaskDefinition"):
            first = ecs_client.register_task_definition(
                family=env.family,
                containerDefinitions=[
                    {"name": env.container, "image": image, "memory": 512, "essential": True}
                ],
            )["taskDefinition"]["taskDefinitionArn"]
        with aws_errors("ecs:CreateService"):
            ecs_client.create_service(
                cluster=env.cluster, serviceName=env.service, taskDefinition=first, desiredCount=1
            )
        created.append(f"ECS service {env.service} (first revision {ecs.short(first)})")
    return created


def _replace_previous_containers(ctx: Context) -> list[str]:
    """Containers an earlier demo (or pull-and-run) started from this service's images:
    they hold the port, and a re-run replaces them."""
    repository = ctx.settings.repository
    removed = []
    for container in ctx.clients.docker().containers.list(all=True):
        labels = container.labels or {}
        if container.name.startswith(f"{repository}-") and labels.get(TITLE_LABEL) == repository:
            container.remove(force=True)
            removed.append(container.name)
    return removed


def run(ctx: Context, port: int, timeout: float = 120.0) -> DemoResult:
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
    with out.step("create missing resources"):
        for line in ensure_resources(ctx, f"{settings.repository}:{revision.tag}") or ["all present"]:
            out.detail(line)
    with out.step(f"push {revision.tag}"):
        verbs.push(ctx, revision)
    deploy.deploy(ctx, ENVIRONMENT, None, timeout, run_smoke=False)
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
