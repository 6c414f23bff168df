"""STAND-IN for ECR's image records: a push to the registry shows up in DescribeImages.

Real ECR is one system: a `docker push` to the registry endpoint makes the image visible
to DescribeImages. Here the registry (docker-registry) and the API (moto) are separate,
so the registry's push notifications arrive at a small HTTP endpoint that records each
pushed manifest in moto with PutImage, under the registry's own digest; sizes are the
layers' sum, as ECR's.
"""

from __future__ import annotations

import contextlib
import functools
import json
import urllib.request
from http.server import BaseHTTPRequestHandler
from typing import Any

MANIFEST_TYPES = {
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
}


def install_image_sizes() -> None:
    """ECR reports an image's size as the sum of its compressed layers;
    moto reports the manifest's config blob (a few kB)."""
    from moto.ecr.models import Image

    original = Image.get_image_size_in_bytes

    def get_image_size_in_bytes(self: Any) -> int | None:
        layers = json.loads(self.image_manifest).get("layers")
        return sum(int(layer.get("size", 0)) for layer in layers) if layers else original(self)

    Image.get_image_size_in_bytes = get_image_size_in_bytes  # type: ignore[method-assign]


@functools.cache
def _ecr(endpoint: str, region: str) -> Any:
    """One ECR client for every push recorded (a client costs tens of ms to make; they are
    thread-safe)."""
    import boto3

    return boto3.client(
        "ecr",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


class RegistryBridge(BaseHTTPRequestHandler):
    """Receives docker-registry notifications; records pushed manifests in moto's ECR; and
    says which emulator it belongs to (GET /identity)."""

    registry_url = "http://127.0.0.1:5000"
    registry_auth = ""
    aws_endpoint = "http://127.0.0.1:4566"
    region = "us-east-1"
    identity: dict[str, str] = {}  # taken when the emulator started: the code it loaded

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
        ecr = _ecr(self.aws_endpoint, self.region)
        try:
            ecr.describe_repositories(repositoryNames=[repo])
        except ecr.exceptions.RepositoryNotFoundException:
            # ECR refuses a push to a repository it lacks. Acknowledge the event anyway: the
            # registry retries a failed notification forever and holds back every later one.
            print(f"registry bridge: no ECR repository {repo}; {target['tag']} not recorded", flush=True)
            return
        with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):
            ecr.put_image(
                repositoryName=repo,
                imageManifest=manifest,
                imageManifestMediaType=target["mediaType"],
                imageTag=target["tag"],
                imageDigest=digest,
            )
        print(f"registry bridge: recorded {repo}:{target['tag']} {digest}", flush=True)

    def do_GET(self) -> None:  # noqa: N802
        """GET /identity: which code and checkout this emulator runs (stack.up asks)."""
        body = json.dumps(self.identity).encode() if self.path == "/identity" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass
