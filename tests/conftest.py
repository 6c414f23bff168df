"""Shared fixtures: the real local stack (Docker engine, registry, moto server, aws CLI).

The stack is one per machine (fixed loopback ports), so tests never reset it: each
test works under its own AWS_RESOURCE_NAME_PREFIX, which names its own ECR
repository, cluster and services. That also lets several test runs share the stack.

The suite runs in parallel (pytest-xdist workers, `invoke check`). What the workers of one
run share goes through `TestRun`: the stack is started under `stack.up`'s own lock, and
expensive things (hello_world's image) are made once per run, under a file lock, by
whichever worker needs them first; the controller removes them when the run ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from pipeline import config, stack
from pipeline.context import Context
from pipeline.stack.emulator.engine import CLUSTER_LABEL, OWNER_LABEL
from tests.forks import Forks
from tests.helpers import ROLLOUT_DEADLINE, ROOT, context, engine, free_port, http_get, invoke, wait_until

# One per worker process: the `aws` CLI's imports, paid once (tests/forks.py).
AWS_CLI = Forks("aws")

HELLO_LAYOUT = {"service_dir": "hello_world", "base_path": "/hello/"}


@dataclass(frozen=True)
class TestRun:
    """What every worker of one test run shares: an id, a directory, and things made once."""

    __test__ = False  # not a test class, whatever its name
    id: str
    started: float = field(default_factory=time.time)

    @property
    def directory(self) -> Path:
        return Path(tempfile.gettempdir()) / f"ecs-pipeline-run-{self.id}"

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        self.directory.mkdir(exist_ok=True)
        with open(self.directory / f"{name}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def once(self, key: str, make: Callable[[], str]) -> str:
        """make() in the first worker to ask; the others wait for it and get its result."""
        result = self.directory / f"{key}.result"
        with self.lock(key):
            if not result.exists():  # a worker whose make() failed left none: the next one tries
                result.write_text(make())
            return result.read_text()

    def image(self, key: str, build: Callable[[], str]) -> str:
        """A local image built once for the run (build returns its name); removed at the end."""

        def build_and_record() -> str:
            name = build()
            with self.lock("images"), open(self.directory / "images", "a") as images:
                images.write(name + "\n")
            return name

        return self.once(f"image-{key}", build_and_record)

    def end(self) -> None:
        """In the controller, once every worker is done: remove what the run made."""
        images = self.directory / "images"
        names = images.read_text().split() if images.exists() else []
        for name in names:
            with contextlib.suppress(docker.errors.APIError):
                engine().images.remove(name, noprune=True)
        sweep_images(since=self.started)
        shutil.rmtree(self.directory, ignore_errors=True)


# A tag under one of the suite's resource prefixes (the `prefix` fixture), local or in a registry.
SUITE_TAG = re.compile(r"^(?:127\.0\.0\.1:\d+/)?t[0-9a-f]{10}[-:]")
# No run lasts this long: an older image under a suite prefix is a killed run's.
LEFTOVER_AGE = 2 * 3600


def sweep_images(since: float = 0.0, until: float = float("inf"), label: str | None = None) -> None:
    """Remove the images tests left on the engine, created in [since, until): tags under a
    suite prefix, then images left dangling (tests remove theirs with noprune, so that no
    build cache another worker may be using goes). Every image on the engine costs each
    image listing (GET /images/json parses them all); 3,800 left by killed runs made
    dockerd a quarter of a run's CPU. `label`: only images carrying it. Best effort: without
    an engine there is nothing."""
    only = {"label": label} if label else {}
    try:
        api = engine().api
        for image in api.images(filters=only):
            if not since <= image["Created"] < until:
                continue
            for tag in image.get("RepoTags") or []:
                if SUITE_TAG.match(tag):
                    with contextlib.suppress(docker.errors.APIError):
                        api.remove_image(tag)
        if since:  # dangling images of this run only: older ones are not known to be ours
            for image in api.images(filters={"dangling": True, **only}):
                if since <= image["Created"] < until:
                    with contextlib.suppress(docker.errors.APIError):
                        api.remove_image(image["Id"])
    except docker.errors.DockerException:
        pass


RUN = pytest.StashKey[TestRun]()


class _RunToWorkers:
    """xdist's hook: each worker is told the controller's run id."""

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["ecs_pipeline_run"] = node.config.stash[RUN].id


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)  # set in an xdist worker
    config.stash[RUN] = TestRun(workerinput["ecs_pipeline_run"] if workerinput else uuid.uuid4().hex[:10])
    if workerinput is None:
        sweep_images(until=time.time() - LEFTOVER_AGE)  # what killed runs left
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_RunToWorkers())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Heavy tests (@pytest.mark.heavy) start first: under workers, one long test handed
    out last would run on alone after all the others have finished."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and RUN in config.stash:
        config.stash[RUN].end()


@pytest.fixture(scope="session")
def test_run(request: pytest.FixtureRequest) -> TestRun:
    return request.config.stash[RUN]


@pytest.fixture(scope="session")
def stack_environ() -> dict[str, str]:
    """os.environ plus the variables that point at the running local stack."""
    cfg = stack.config_from(os.environ)
    stack.up(cfg, say=lambda _line: None)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CIRCLE_", "AWS_", "ECR_", "ECS_"))}
    environ.update(stack.env(cfg))
    # Without credentials, AWS SDKs and the CLI would ask the instance metadata address
    # (169.254.169.254); tests send traffic to loopback only.
    environ["AWS_EC2_METADATA_DISABLED"] = "true"
    # In-process verbs make boto3 clients from os.environ (AWS_ENDPOINT_URL...).
    os.environ.update({k: v for k, v in environ.items() if k.startswith("AWS_")})
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    return environ


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def environ(stack_environ: dict[str, str], prefix: str) -> Iterator[dict[str, str]]:
    """The stack's environment under this test's own resource prefix; afterwards the
    prefix's services are deleted and the scheduler stand-in removes their containers."""
    yield {**stack_environ, "AWS_RESOURCE_NAME_PREFIX": prefix}
    remove_services(stack_environ, prefix)


@pytest.fixture
def aws(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Any]:
    """boto3 clients on the emulator, for arranging and inspecting state; one per service
    for the test (tests call `aws("ecs")` in polling loops: making a client each time was
    ~13 % of the workers' sampled time)."""
    import boto3

    made: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in made:
            made[service] = boto3.client(
                service,
                endpoint_url=environ["AWS_ENDPOINT_URL"],
                region_name=environ["AWS_DEFAULT_REGION"],
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return made[service]

    return client


@pytest.fixture
def aws_cli(environ: dict[str, str]) -> Callable[..., Any]:
    """The real `aws` CLI, an independent client of the emulator; returns parsed JSON.
    Each call is a process of its own (tests/forks.py: forked, imports paid once)."""

    def run(*args: str) -> Any:
        proc = AWS_CLI.run([*args, "--output", "json"], environ, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    return run


@pytest.fixture
def run_task(environ: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `invoke <args>` in the project root as a user would; returns the process."""

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 600, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return invoke(*args, env=env if env is not None else environ, timeout=timeout, **kwargs)

    return run


@pytest.fixture
def make_context(environ: dict[str, str]) -> Callable[..., Context]:
    """An in-process Context on the stack (tests.helpers.context under this test's prefix);
    pass aws_factory to put a stand-in at the seam, project for another [tool.pipeline]."""

    def make(
        aws_factory: Any = None,
        env: dict[str, str] | None = None,
        root: Path = ROOT,
        project: dict[str, Any] | None = None,
    ) -> Context:
        # A tmp project without a pyproject.toml is laid out like this repository (a copy of
        # hello_world/, or a Dockerfile in hello_world/); the library's defaults are neutral.
        if project is None and not (root / config.PROJECT_FILE).exists():
            project = HELLO_LAYOUT
        return context(env or environ, root, aws_factory, project)

    return make


@pytest.fixture
def repository(aws: Callable[[str], Any], prefix: str) -> Iterator[str]:
    aws("ecr").create_repository(repositoryName=prefix)
    yield prefix


@dataclass(frozen=True)
class DeployTarget:
    """A prefix's ECR image record, cluster and prod service, as a deploy finds them."""

    sha: str
    cluster: str
    service: str
    family: str
    initial: str


def push_image(environ: dict[str, str], source: str, repository: str, tag: str) -> str:
    """Push a local image to the stack's registry as `repository:tag`, with ECR's
    credentials, and wait until ECR lists it; its layers are mounted from the source's
    repository, so this takes well under a second."""
    import boto3

    client = engine()
    target = f"{environ['ECR_ENDPOINT']}/{repository}"
    client.images.get(source).tag(target, tag=tag)
    try:
        answers = client.images.push(
            target,
            tag=tag,
            auth_config={"username": "AWS", "password": stack.REGISTRY_PASSWORD},
            stream=True,
            decode=True,
        )
        # ECR refuses (an immutable tag that exists as another image): say so, never go on
        # with the image the tag already names.
        refused = [str(answer["error"]) for answer in answers if "error" in answer]
    finally:
        client.images.remove(f"{target}:{tag}", noprune=True)
    assert not refused, f"push of {target}:{tag} refused: {refused[0]}"
    ecr = boto3.client(
        "ecr", endpoint_url=environ["AWS_ENDPOINT_URL"], region_name=environ["AWS_DEFAULT_REGION"]
    )

    def listed() -> bool:
        images = ecr.describe_images(repositoryName=repository)["imageDetails"]
        return any(tag in i.get("imageTags", []) for i in images)

    wait_until(listed, timeout=60)
    return f"{target}:{tag}"


def set_circuit_breaker(aws: Callable[[str], Any], cluster: str, service: str, on: bool) -> None:
    """Turn the service's deployment circuit breaker (with rollback) on or off; no new deployment."""
    aws("ecs").update_service(
        cluster=cluster,
        service=service,
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": on, "rollback": on}},
    )


def build_image(dockerfile: str) -> str:
    """A broken variant of hello_world's image (local name), an image of its own: two tests
    building the same Dockerfile would share one image ID, and Docker can delete an image
    whose last other tag is being removed just as the second build tags it."""
    token = uuid.uuid4().hex[:8]
    name = f"broken-{token}:latest"
    dockerfile = dockerfile.rstrip("\n") + f"\nLABEL ecs-pipeline.test-build={token}\n"
    engine().images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=name, rm=True)
    return name


def push_broken(environ: dict[str, str], dockerfile: str, repository: str, tag: str) -> None:
    """Build a broken image, push it as repository:tag, and drop the local build."""
    image = build_image(dockerfile)
    try:
        push_image(environ, image, repository, tag)
    finally:
        engine().images.remove(image, noprune=True)


@pytest.fixture(scope="session")
def hello_image(stack_environ: dict[str, str], test_run: TestRun) -> str:
    """hello_world's image, built by the pipeline once per test run, whatever the number of
    workers (the local name). Named for this run: the engine is shared, and another run
    removing its own must not take ours."""
    from pipeline import verbs
    from pipeline.git import Revision

    def build() -> str:
        ctx = context({**stack_environ, "AWS_RESOURCE_NAME_PREFIX": f"hello-fixture-{test_run.id}"})
        return verbs.dockerize(ctx, Revision("f1f1f1f"))

    return test_run.image("hello", build)


def default_network(aws: Callable[[str], Any]) -> dict[str, Any]:
    subnets = aws("ec2").describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    return {
        "awsvpcConfiguration": {"subnets": [s["SubnetId"] for s in subnets[:2]], "assignPublicIp": "ENABLED"}
    }


def hello_task_definition(family: str, image: str, **extra: Any) -> dict[str, Any]:
    """A Fargate task definition of hello_world, as the deploy's template makes."""
    return {
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [
            {
                "name": family,
                "image": image,
                "essential": True,
                "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
                "environment": [{"name": "BASE_PATH", "value": "/hello/"}],
            }
        ],
        **extra,
    }


def wait_for_rollout(
    aws: Callable[[str], Any], cluster: str, service: str, timeout: float = ROLLOUT_DEADLINE
) -> None:
    def completed() -> bool:
        found = aws("ecs").describe_services(cluster=cluster, services=[service])["services"][0]
        return [d.get("rolloutState") for d in found["deployments"]] == ["COMPLETED"]

    wait_until(completed, timeout=timeout)


@pytest.fixture
def deploy_target(
    aws: Callable[[str], Any], repository: str, prefix: str, environ: dict[str, str], hello_image: str
) -> DeployTarget:
    """The prod service of this prefix running hello_world's image (pushed under a new
    sha), its first deployment COMPLETED, as `invoke setup` leaves it."""
    sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    image = push_image(environ, hello_image, repository, sha)
    ecs = aws("ecs")
    cluster, service = f"{prefix}-cluster", f"{prefix}-service"
    ecs.create_cluster(clusterName=cluster)
    initial = ecs.register_task_definition(**hello_task_definition(service, image))["taskDefinition"][
        "taskDefinitionArn"
    ]
    ecs.create_service(
        cluster=cluster,
        serviceName=service,
        taskDefinition=initial,
        desiredCount=1,
        launchType="FARGATE",
        networkConfiguration=default_network(aws),
    )
    wait_for_rollout(aws, cluster, service)
    return DeployTarget(sha, cluster, service, service, initial)


@functools.cache
def _ecs(endpoint: str, region: str) -> Any:
    """One ECS client per worker for the clean-ups every test runs."""
    import boto3

    return boto3.client("ecs", endpoint_url=endpoint, region_name=region)


def remove_services(environ: dict[str, str], prefix: str) -> None:
    """Delete the prefix's services and remove their task containers. The scheduler stops
    them itself (tests/test_scheduler.py), but a task deleted while its process starts
    ignores SIGTERM (PID 1 before its handler) and would hold the test for stopTimeout."""
    ecs = _ecs(environ["AWS_ENDPOINT_URL"], environ["AWS_DEFAULT_REGION"])
    clusters = [a for a in ecs.list_clusters()["clusterArns"] if a.rsplit("/", 1)[-1].startswith(prefix)]
    for cluster in clusters:
        for arn in ecs.list_services(cluster=cluster)["serviceArns"]:
            ecs.delete_service(cluster=cluster, service=arn, force=True)
    owner = f"{OWNER_LABEL}={environ['AWS_ENDPOINT_URL']}"

    def gone() -> bool:
        # The engine's own list: docker-py's inspect of each races with removals.
        api = engine().api
        found = [
            c["Id"]
            for c in api.containers(all=True, filters={"label": owner})
            if (c.get("Labels") or {}).get(CLUSTER_LABEL, "").startswith(prefix)
        ]
        for container_id in found:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(container_id, force=True)
        return not found

    wait_until(gone, timeout=60)
    # The images the local ECS pulled for the prefix's tasks (ECS's agent cleans its up too).
    pulled = f"{environ['ECR_ENDPOINT']}/{prefix}:"
    # One call (images.list inspects each image); an image's other names are not ours.
    tags = [t for image in engine().api.images(name=pulled[:-1]) for t in image.get("RepoTags") or []]
    for tag in [t for t in tags if t.startswith(pulled)]:
        with contextlib.suppress(docker.errors.APIError):
            engine().images.remove(tag, noprune=True)


def local_tags(*starts: str) -> list[str]:
    """The engine's image tags that start with one of `starts`, in one call. Never
    docker-py's images.list() unfiltered: it inspects every image on the engine one by one,
    and one another worker (or run) removes in between fails the whole list."""
    images = engine().api.images()
    return [tag for image in images for tag in image.get("RepoTags") or [] if tag.startswith(starts)]


@pytest.fixture(scope="session")
def hello_url(hello_image: str) -> Iterator[str]:
    """A real hello_world container (built by the pipeline, host networking); its base URL."""
    port = free_port()
    container = engine().containers.run(
        hello_image, detach=True, network_mode="host", environment={"PORT": str(port)}
    )
    url = f"http://127.0.0.1:{port}/hello/"
    wait_until(lambda: http_get(url + "health")[0] == 200, timeout=20)
    yield url
    container.remove(force=True)


# --- `invoke setup` on the emulator (tests/test_infra_stack.py, tests/test_infra_strategy_stack.py) ---


@pytest.fixture(scope="session")
def emulator_runs_change_sets(stack_environ: dict[str, str]) -> None:
    """The emulator must leave outputs after a change set, as CloudFormation does (emulator STAND-IN 3)."""
    import boto3

    cfn = boto3.client("cloudformation", endpoint_url=stack_environ["AWS_ENDPOINT_URL"])
    name = f"probe-{uuid.uuid4().hex[:8]}"
    body = json.dumps(
        {
            "Resources": {
                "Group": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": f"/{name}"}}
            },
            "Outputs": {"Name": {"Value": {"Ref": "Group"}}},
        }
    )
    created = cfn.create_change_set(
        StackName=name, ChangeSetName="probe", TemplateBody=body, ChangeSetType="CREATE"
    )
    cfn.execute_change_set(ChangeSetName=created["Id"])
    outputs = cfn.describe_stacks(StackName=name)["Stacks"][0].get("Outputs")
    cfn.delete_stack(StackName=name)
    if not outputs:
        pytest.fail(
            "the running AWS emulator predates its CloudFormation change-set stand-in (pipeline/stack/emulator/, "
            "STAND-IN 3): restart it with `invoke stack.down && invoke stack.up`"
        )


@pytest.fixture
def infra_ctx(
    make_context: Callable[..., Context], emulator_runs_change_sets: None
) -> Callable[..., Context]:
    """An in-process Context on the stack with this test's [tool.pipeline.infra]."""

    def make(table: dict[str, Any] | None = None, aws_factory: Any = None) -> Context:
        project = {**config.read_project_file(ROOT), "infra": table or {}}
        return make_context(aws_factory, project=project)

    return make
