"""Shared fixtures: the real local stack (Docker engine, registry, moto server, aws CLI).

The stack is one per machine (fixed loopback ports), so tests never reset it: each
test works under its own AWS_RESOURCE_NAME_PREFIX, which names its own ECR
repository, cluster and services. That also lets several test runs share the stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline import config, stack
from pipeline.context import Context
from tests.helpers import ROOT, context, free_port, http_get, invoke, put_image_record, wait_until

HELLO_LAYOUT = {"service_dir": "hello_world", "base_path": "/hello/"}


@pytest.fixture(scope="session")
def stack_environ() -> dict[str, str]:
    """os.environ plus the variables that point at the running local stack."""
    cfg = stack.config_from(os.environ)
    stack.up(cfg, say=lambda _line: None)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CIRCLE_", "AWS_", "ECR_", "ECS_"))}
    environ.update(stack.env(cfg, {}))
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
def environ(stack_environ: dict[str, str], prefix: str) -> dict[str, str]:
    """The stack's environment under this test's own resource prefix."""
    return {**stack_environ, "AWS_RESOURCE_NAME_PREFIX": prefix}


@pytest.fixture
def aws(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Any]:
    """boto3 clients on the emulator, for arranging and inspecting state."""
    import boto3

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=environ["AWS_ENDPOINT_URL"],
            region_name=environ["AWS_DEFAULT_REGION"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return client


@pytest.fixture
def aws_cli(environ: dict[str, str]) -> Callable[..., Any]:
    """The real `aws` CLI, an independent client of the emulator; returns parsed JSON."""

    def run(*args: str) -> Any:
        proc = subprocess.run(["aws", *args, "--output", "json"], env=environ, capture_output=True, text=True)
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


@pytest.fixture
def deploy_target(aws: Callable[[str], Any], repository: str, prefix: str) -> DeployTarget:
    sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    put_image_record(aws, repository, sha)
    ecs = aws("ecs")
    cluster, service = f"{prefix}-cluster", f"{prefix}-service"
    ecs.create_cluster(clusterName=cluster)
    initial = ecs.register_task_definition(
        family=service, containerDefinitions=[{"name": service, "image": "bootstrap", "memory": 128}]
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=initial, desiredCount=1)
    # A deploy refuses to start while another rollout is in progress: let the service's
    # first deployment finish, as a service that has run for a while has.
    wait_until(
        lambda: (
            [
                d.get("rolloutState")
                for d in ecs.describe_services(cluster=cluster, services=[service])["services"][0][
                    "deployments"
                ]
            ]
            in (["COMPLETED"], [None])
        ),
        timeout=30,
    )
    return DeployTarget(sha, cluster, service, service, initial)


@pytest.fixture(scope="session")
def hello_url(stack_environ: dict[str, str]) -> Iterator[str]:
    """A real hello_world container (built by the pipeline, host networking); its base URL."""
    from pipeline import verbs
    from pipeline.git import Revision

    ctx = context({**stack_environ, "AWS_RESOURCE_NAME_PREFIX": "hello-fixture"})
    name = verbs.dockerize(ctx, Revision("f1f1f1f"))
    port = free_port()
    container = ctx.clients.docker().containers.run(
        name, detach=True, network_mode="host", environment={"PORT": str(port)}
    )
    url = f"http://127.0.0.1:{port}/hello/"
    wait_until(lambda: http_get(url + "health")[0] == 200, timeout=20)
    yield url
    container.remove(force=True)
