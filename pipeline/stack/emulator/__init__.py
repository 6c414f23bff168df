"""The local stack's AWS emulator: moto in server mode plus three stand-ins.

Run as `python -m pipeline.stack.emulator --port 4566 --bridge-port 4567` (stack.up does).

STAND-IN 1, ECS's scheduler. Stock moto never rolls a deployment: after
UpdateService the old PRIMARY deployment stays forever, so no deploy can finish. This
process replaces moto's update_service so that a new task definition starts a new
PRIMARY deployment (IN_PROGRESS, the old one ACTIVE), and after EMULATOR_ROLLOUT_SECONDS
the stale deployment is gone and the new one is COMPLETED with running == desired,
with the service events real ECS writes; each deployment keeps its RUNNING tasks and
the stale ones are stopped. Responses keep the real API's shapes; the deploy logic
never knows it is talking to an emulator.

STAND-IN 2, ECR's image records. Real ECR is one system: a `docker push` to the
registry endpoint makes the image visible to DescribeImages. Here the registry
(docker-registry) and the API (moto) are separate, so the registry's push
notifications arrive at a small HTTP endpoint that records each pushed manifest in
moto with PutImage, under the registry's own digest; sizes are the layers' sum, as ECR's.

STAND-IN 3, CloudFormation's change-set execution. Stock moto executes a change set
but leaves the stack's outputs and parameters as they were before (a stack created
from a change set has no outputs at all). Real CloudFormation shows the new
template's outputs and the new parameters, which `invoke setup` prints and compares.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MANIFEST_TYPES = {
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
}


def install_rollout_model(rollout_seconds: float) -> None:
    """Patch moto's ECS backend so deployments roll like ECS's scheduler rolls them."""
    from moto.core.utils import utcnow
    from moto.ecs.models import EC2ContainerServiceBackend

    original_create = EC2ContainerServiceBackend.create_service
    original_update = EC2ContainerServiceBackend.update_service
    original_describe = EC2ContainerServiceBackend.describe_services

    def event(service: Any, message: str) -> None:
        service.events.insert(
            0,
            {
                "id": str(uuid.uuid4()),
                "createdAt": utcnow(),
                "message": f"(service {service.name}) {message}",
            },
        )

    def create_service(self: Any, *args: Any, **kwargs: Any) -> Any:
        service = original_create(self, *args, **kwargs)
        if service.deployments and service.task_definition:
            # The first deployment rolls out too, then COMPLETED, as on ECS.
            service.deployments[0].update(
                runningCount=0, pendingCount=service.desired_count, rolloutState="IN_PROGRESS"
            )
            service._standin_rollout_done_at = time.monotonic() + rollout_seconds  # type: ignore[attr-defined]
        return service

    def update_service(self: Any, service_properties: dict[str, Any]) -> Any:
        changes_revision = bool(service_properties.get("task_definition")) or bool(
            service_properties.get("force_new_deployment")
        )
        service = original_update(self, service_properties)
        if not changes_revision:
            return service
        # Real ECS stores the full ARN whatever form the caller passed.
        service.task_definition = self.describe_task_definition(service.task_definition).arn
        now = utcnow()
        for deployment in service.deployments:
            deployment["status"] = "ACTIVE"
            deployment["updatedAt"] = now
        deployment_id = f"ecs-svc/{uuid.uuid4().int % 10**19:019d}"
        service.deployments.insert(
            0,
            {
                "id": deployment_id,
                "status": "PRIMARY",
                "taskDefinition": service.task_definition,
                "desiredCount": service.desired_count,
                "pendingCount": service.desired_count,
                "runningCount": 0,
                "failedTasks": 0,
                "createdAt": now,
                "updatedAt": now,
                "launchType": service.launch_type,
                "rolloutState": "IN_PROGRESS",
                "rolloutStateReason": "ECS deployment in progress.",
            },
        )
        service.pending_count = service.desired_count
        service._standin_rollout_done_at = time.monotonic() + rollout_seconds  # type: ignore[attr-defined]
        event(service, f"has started {service.desired_count} tasks: (deployment {deployment_id}).")
        return service

    def advance(service: Any) -> None:
        done_at = getattr(service, "_standin_rollout_done_at", None)
        if done_at is None or time.monotonic() < done_at:
            return
        service._standin_rollout_done_at = None
        primary = service.deployments[0]
        stale = service.deployments[1:]
        primary.update(
            runningCount=primary["desiredCount"],
            pendingCount=0,
            rolloutState="COMPLETED",
            rolloutStateReason=f"ECS deployment {primary['id']} completed.",
            updatedAt=utcnow(),
        )
        del service.deployments[1:]
        service.running_count, service.pending_count = primary["desiredCount"], 0
        if stale:
            event(service, f"has stopped {sum(d.get('runningCount', 0) for d in stale)} running tasks.")
        event(service, f"deployment {primary['id']} deployment completed.")
        event(service, "has reached a steady state.")

    def describe_services(self: Any, cluster_str: str, names: list[str]) -> Any:
        services, failures = original_describe(self, cluster_str, names)
        for service in services:
            advance(service)
        return services, failures

    EC2ContainerServiceBackend.create_service = create_service  # type: ignore[method-assign]
    EC2ContainerServiceBackend.update_service = update_service  # type: ignore[method-assign]
    EC2ContainerServiceBackend.describe_services = describe_services  # type: ignore[method-assign,assignment]


def install_task_model() -> None:
    """Part of STAND-IN 1: the tasks ECS's scheduler starts and stops during a rollout.

    Keeps, per deployment, `runningCount` RUNNING tasks of its task definition
    (startedBy = the deployment id, group = service:NAME, as ECS sets them) and stops the
    tasks of deployments that are gone, with ECS's stoppedReason. Without it a tool that
    counts the new revision's RUNNING tasks (fabfuel's `ecs deploy`) never finishes, and
    ListTasks/DescribeTasks show nothing of a rollout.
    """
    from types import SimpleNamespace

    from moto.ecs.models import EC2ContainerServiceBackend, Task
    from moto.moto_api import state_manager

    # moto advances a task one state per DescribeTasks; the scheduler stand-in sets it instead.
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    rolled_describe = EC2ContainerServiceBackend.describe_services

    def stop(task: Any, reason: str) -> None:
        task.desired_status = task.last_status = "STOPPED"
        task.stopped_reason = reason
        for container in task.containers:
            container.last_status = "STOPPED"

    def sync(backend: Any, service: Any) -> None:
        cluster = backend.clusters[service.cluster_name]
        tasks = backend.tasks.setdefault(cluster.name, {})
        group = f"service:{service.name}"
        running = [t for t in tasks.values() if t.group == group and t.desired_status == "RUNNING"]
        live = {d["id"] for d in service.deployments}
        for task in running:
            if task.started_by not in live:
                stop(task, f"Scaling activity initiated by (deployment {task.started_by})")
        for deployment in service.deployments:
            have = [t for t in running if t.started_by == deployment["id"]]
            want = deployment.get("runningCount", 0)
            for task in have[want:]:
                stop(task, f"Scaling activity initiated by (deployment {deployment['id']})")
            if len(have) >= want:
                continue
            definition = backend.describe_task_definition(deployment["taskDefinition"])
            # No ENI for awsvpc tasks: nothing here reads a task's network attachments.
            view = SimpleNamespace(
                arn=definition.arn, network_mode=None, container_definitions=definition.container_definitions
            )
            for _ in range(want - len(have)):
                task = Task(
                    cluster,
                    view,  # type: ignore[arg-type]
                    None,
                    None,
                    backend,
                    group,
                    launch_type=service.launch_type or "",
                    started_by=deployment["id"],
                )
                task.last_status = "RUNNING"
                for container in task.containers:
                    container.last_status = "RUNNING"
                tasks[task.task_arn] = task

    def describe_services(self: Any, cluster_str: str, names: list[str]) -> Any:
        services, failures = rolled_describe(self, cluster_str, names)
        for service in services:
            sync(self, service)
        return services, failures

    EC2ContainerServiceBackend.describe_services = describe_services  # type: ignore[method-assign,assignment]


def install_image_sizes() -> None:
    """Part of STAND-IN 2: ECR reports an image's size as the sum of its compressed layers;
    moto reports the manifest's config blob (a few kB)."""
    from moto.ecr.models import Image

    original = Image.get_image_size_in_bytes

    def get_image_size_in_bytes(self: Any) -> int | None:
        layers = json.loads(self.image_manifest).get("layers")
        return sum(int(layer.get("size", 0)) for layer in layers) if layers else original(self)

    Image.get_image_size_in_bytes = get_image_size_in_bytes  # type: ignore[method-assign]


def install_changeset_model() -> None:
    """Patch moto so an executed change set leaves the stack's outputs and parameters current."""
    from moto.cloudformation.models import CloudFormationBackend

    original_execute = CloudFormationBackend.execute_change_set

    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        original_execute(self, change_set_name, stack_name)
        change_set = self.describe_change_set(change_set_name)
        stack = self.stacks[change_set.stack_id]
        stack.parameters = change_set.parameters
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        stack.output_map = stack._create_output_map()

    CloudFormationBackend.execute_change_set = execute_change_set  # type: ignore[method-assign]


class RegistryBridge(BaseHTTPRequestHandler):
    """Receives docker-registry notifications; records pushed manifests in moto's ECR."""

    registry_url = "http://127.0.0.1:5000"
    registry_auth = ""
    aws_endpoint = "http://127.0.0.1:4566"
    region = "us-east-1"

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            envelope = json.loads(body or b"{}")
            for item in envelope.get("events", []):
                self._record(item)
        except Exception as exc:  # report, never crash the bridge
            print(f"registry bridge: {type(exc).__name__}: {exc}", flush=True)
            self.send_response(500)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _record(self, item: dict[str, Any]) -> None:
        target = item.get("target", {})
        if (
            item.get("action") != "push"
            or target.get("mediaType") not in MANIFEST_TYPES
            or not target.get("tag")
        ):
            return
        repo, digest = target["repository"], target["digest"]
        request = urllib.request.Request(
            f"{self.registry_url}/v2/{repo}/manifests/{digest}",
            headers={"Accept": target["mediaType"], "Authorization": f"Basic {self.registry_auth}"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            manifest = resp.read().decode()
        import boto3

        ecr = boto3.client(
            "ecr",
            endpoint_url=self.aws_endpoint,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):
            ecr.put_image(
                repositoryName=repo,
                imageManifest=manifest,
                imageManifestMediaType=target["mediaType"],
                imageTag=target["tag"],
                imageDigest=digest,
            )
        print(f"registry bridge: recorded {repo}:{target['tag']} {digest}", flush=True)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--bridge-port", type=int, default=4567)
    parser.add_argument("--registry", default="http://127.0.0.1:5000")
    parser.add_argument("--registry-password", default="123456789012-auth-token")
    args = parser.parse_args()

    install_rollout_model(float(os.environ.get("EMULATOR_ROLLOUT_SECONDS", "1.5")))
    install_task_model()
    install_image_sizes()
    install_changeset_model()

    RegistryBridge.registry_url = args.registry
    RegistryBridge.registry_auth = base64.b64encode(f"AWS:{args.registry_password}".encode()).decode()
    RegistryBridge.aws_endpoint = f"http://127.0.0.1:{args.port}"
    RegistryBridge.region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    bridge = ThreadingHTTPServer(("127.0.0.1", args.bridge_port), RegistryBridge)
    threading.Thread(target=bridge.serve_forever, daemon=True).start()

    from moto.server import main as moto_main

    moto_main(["-H", "127.0.0.1", "-p", str(args.port)])
