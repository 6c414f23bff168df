"""Secrets stay where they belong: known secret values in the environment, in local.env
and behind the template's secret references never show in any output or log line, any
image layer, image config or history, or the registered task definition; the service's
own commands never see the pipeline's credentials."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline import service_env
from pipeline.context import Context
from pipeline.ecr import RegistryLogin
from tests.conftest import DeployTarget
from tests.helpers import ROLLOUT_DEADLINE, ROOT, free_port

MARK = uuid.uuid4().hex[:12]
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": f"aws-secret-{MARK}",
    "AWS_SESSION_TOKEN": f"session-token-{MARK}",
    "HONEYCOMB_API_KEY": f"honeycomb-key-{MARK}",
    "GITHUB_TOKEN": f"github-token-{MARK}",
    "CIRCLE_OIDC_TOKEN_V2": f"oidc-token-{MARK}",
}
LOCAL_ENV_SECRET = f"local-env-password-{MARK}"
SSM_SECRET = f"ssm-parameter-value-{MARK}"
ALL_SECRETS = [*SECRETS.values(), LOCAL_ENV_SECRET, SSM_SECRET]


@pytest.mark.parametrize(
    ("name", "withheld"),
    [
        ("AWS_ACCESS_KEY_ID", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("AWS_SESSION_TOKEN", True),
        ("AWS_PROFILE", True),
        ("HONEYCOMB_API_KEY", True),
        ("CIRCLE_OIDC_TOKEN_V2", True),
        ("GITHUB_TOKEN", True),
        ("DB_PASSWORD", True),
        ("STRIPE_API_KEY", True),
        ("PATH", False),
        ("HOME", False),
        ("AWS_DEFAULT_REGION", False),
        ("BASE_URL", False),
        ("CIRCLE_SHA1", False),
    ],
)
def test_what_the_service_commands_do_not_get(name: str, withheld: bool) -> None:
    assert service_env.withheld(name) is withheld
    assert (name in service_env.for_service({name: "v"})) is not withheld


def test_pass_env_names_what_a_service_really_needs() -> None:
    environ = {"NPM_TOKEN": "t", "AWS_SESSION_TOKEN": "s", "PATH": "/bin"}
    assert service_env.for_service(environ, ["NPM_TOKEN"]) == {"NPM_TOKEN": "t", "PATH": "/bin"}


def test_credential_holding_types_redact_themselves(make_context: Callable[..., Context]) -> None:
    login = RegistryLogin("127.0.0.1:5000", "AWS", SSM_SECRET)
    assert SSM_SECRET not in repr(login) and SSM_SECRET not in str(login)
    ctx = make_context(env={**make_context().environ, "HONEYCOMB_API_KEY": SSM_SECRET})
    assert SSM_SECRET not in repr(ctx) and SSM_SECRET not in str(ctx)


@pytest.fixture
def secret_project(
    tmp_path: Path, deploy_target: DeployTarget, aws: Callable[[str], Any], prefix: str
) -> Path:
    """A service repository whose commands print their environment, whose prod values
    file names an SSM secret, and whose local.env holds a password; committed in git."""
    project = tmp_path / "service"
    shutil.copytree(
        ROOT / "hello_world", project / "hello_world", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "tasks.py", project / "tasks.py")
    shutil.copy(ROOT / ".dockerignore", project / ".dockerignore")
    (project / "pyproject.toml").write_text(
        "[tool.pipeline]\n"
        'service_dir = "hello_world"\n'
        'build_command = "env"\n'
        'test_command = "env"\n'
        'integration_command = "env"\n'
        'base_path = "/hello/"\n'
    )
    parameter = f"/{prefix}/prod/db-password"
    aws("ssm").put_parameter(Name=parameter, Value=SSM_SECRET, Type="SecureString")
    values = json.loads((ROOT / "hello_world/deploy/prod.json").read_text())
    values["secrets"] = {"DB_PASSWORD": f"arn:aws:ssm:us-east-1:123456789012:parameter{parameter}"}
    (project / "hello_world/deploy/prod.json").write_text(json.dumps(values))
    (project / "local.env").write_text(f"DB_PASSWORD={LOCAL_ENV_SECRET}\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=project, check=True)
    (project / ".gitignore").write_text("local.env\n")
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "service"], cwd=project, check=True)
    return project


@pytest.mark.heavy
def test_no_secret_reaches_output_images_or_the_task_definition(
    secret_project: Path,
    environ: dict[str, str],
    deploy_target: DeployTarget,
    aws: Callable[[str], Any],
    docker_client: Any,
) -> None:
    from tests.standins import honeycomb_markers

    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=secret_project, capture_output=True, text=True, check=True
    ).stdout.strip()
    port = free_port()
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    outputs: list[str] = []
    with honeycomb_markers(None, None).running() as api:
        env = {
            **environ,
            **SECRETS,
            "HONEYCOMB_API_HOST": api.url,
            "PIPELINE_JSON_LOGS": "1",
            "PYTHONPATH": pythonpath,
        }

        def invoke(*args: str, ok: bool = True) -> None:
            proc = subprocess.run(
                [sys.executable, "-m", "invoke", *args],
                cwd=secret_project,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            outputs.append(f"$ invoke {' '.join(args)}\n{proc.stdout}{proc.stderr}")
            if ok:
                assert proc.returncode == 0, outputs[-1]

        invoke("build")
        invoke("test")
        invoke("integration", "--env", "prod", "--url", "http://127.0.0.1:9/hello/")
        invoke("dockerize", "--sha", sha)
        invoke("push", "--sha", sha)
        invoke("deploy", "--env", "prod", "--sha", sha, "--dry-run", "--no-smoke")
        invoke("deploy", "--env", "prod", "--sha", sha, "--no-smoke", "--timeout", f"{ROLLOUT_DEADLINE:g}")
        invoke("status", "--env", "prod")
        invoke("status", "--env", "prod", "--json")
        invoke("plan", "--branch", "main", "--sha", sha)
        invoke("ci", "--branch", "feature-x", "--sha", sha)
        invoke("pull-and-run", "--sha", sha, "--env-file", "local.env", "--port", str(port), "--detach")
        markers_sent = [r.body.decode() for r in api.requests]
    try:
        text = "\n".join(outputs)
        # The commands did run and print their environment, so the absence below means something.
        assert text.count("AWS_DEFAULT_REGION=") >= 3 and "BASE_URL=http://127.0.0.1:9/hello/" in text
        assert len(markers_sent) == 1  # the key was used (sent to Honeycomb), never printed
        for secret in ALL_SECRETS:
            assert secret not in text, f"{secret} leaked into the output"
            assert all(secret not in body for body in markers_sent)

        image = docker_client.images.get(f"{deploy_target.cluster.removesuffix('-cluster')}:{sha}")
        inspected = json.dumps([image.attrs, image.history()], default=str)
        layers = b"".join(image.save(named=False))
        for secret in ALL_SECRETS:
            assert secret not in inspected, f"{secret} in the image config or history"
            assert secret.encode() not in layers, f"{secret} in an image layer"

        arn = aws("ecs").describe_services(cluster=deploy_target.cluster, services=[deploy_target.service])[
            "services"
        ][0]["taskDefinition"]
        registered = aws("ecs").describe_task_definition(taskDefinition=arn, include=["TAGS"])
        container = registered["taskDefinition"]["containerDefinitions"][0]
        assert container["secrets"] == [
            {
                "name": "DB_PASSWORD",
                "valueFrom": f"arn:aws:ssm:us-east-1:123456789012:parameter/{deploy_target.cluster.removesuffix('-cluster')}/prod/db-password",
            }
        ]
        assert all(secret not in json.dumps(registered, default=str) for secret in ALL_SECRETS)
    finally:
        from docker.errors import NotFound

        for container in docker_client.containers.list(
            all=True, filters={"ancestor": image_ref(environ, sha, deploy_target)}, ignore_removed=True
        ):
            # The local ECS removes its task containers meanwhile: one already gone is not an error.
            with contextlib.suppress(NotFound):
                container.remove(force=True)


def image_ref(environ: dict[str, str], sha: str, target: DeployTarget) -> str:
    return f"{environ['ECR_ENDPOINT']}/{target.cluster.removesuffix('-cluster')}:{sha}"


@pytest.fixture
def docker_client() -> Any:
    import docker

    return docker.from_env()


def test_serve_gets_local_env_but_not_the_pipelines_credentials(make_context: Callable[..., Context]) -> None:
    from pipeline import local

    settings = make_context().settings
    environ = {"PATH": "/bin", **SECRETS}
    served = local.serve_environment(settings, environ, {"DB_PASSWORD": LOCAL_ENV_SECRET})
    assert served["DB_PASSWORD"] == LOCAL_ENV_SECRET  # local.env is the service's own
    assert served["PATH"] == "/bin" and not set(SECRETS) & set(served)
