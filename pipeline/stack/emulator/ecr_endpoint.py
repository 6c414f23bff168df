"""STAND-IN for the rules of ECR's registry endpoint, in front of the real registry.

ECR's endpoint is a registry that knows the repository's settings: it refuses a push to a
repository that does not exist, and a push that would move an immutable tag ("tag invalid:
The image tag '…' already exists in the '…' repository and cannot be overwritten because
the repository is immutable."). docker-registry knows neither. So the local stack's
ECR_ENDPOINT is this front: it decides those two cases from the emulator's own ECR records
(moto's, in this process, with moto's tag-mutability rules) and passes every request
through to docker-registry otherwise, streaming bodies both ways. Only the two refusals
are its own; logins, pulls, uploads and their errors are the real registry's.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from io import BufferedIOBase
from typing import Any

# /v2/<name>/manifests/<reference> and /v2/<name>/blobs/uploads/ (the start of a push)
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/?]+)$")
_UPLOAD = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?(?:\?.*)?$")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}
_CHUNK = 1 << 16


def refusal(
    method: str, path: str, body: bytes | None, account: str, region: str
) -> tuple[int, str, str] | None:
    """(HTTP status, registry error code, message) for a request ECR refuses, else None."""
    from moto.ecr.models import ecr_backends

    manifest, upload = _MANIFEST.match(path), _UPLOAD.match(path)
    if not ((method == "PUT" and manifest) or (method == "POST" and upload)):
        return None
    name = (manifest or upload).group("name")  # type: ignore[union-attr]
    repository = ecr_backends[account][region].repositories.get(name)
    if repository is None:
        return (
            404,
            "NAME_UNKNOWN",
            f"The repository with name '{name}' does not exist in the registry with id '{account}'",
        )
    if not manifest or body is None:
        return None
    tag = manifest.group("reference")
    if tag.startswith("sha256:"):
        return None  # by digest: no tag moves
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    current = [i for i in repository.images if tag in i.image_tags]
    if not current or current[0].get_image_digest() == digest:
        return None  # a new tag, or this very image again
    try:
        # moto's own rules for PutImage (IMMUTABLE, and the exclusion filters)
        ecr_backends[account][region]._resolve_image_tag_mutability(repository, tag)
    except Exception:
        return (
            400,
            "TAG_INVALID",
            f"The image tag '{tag}' already exists in the '{name}' repository and cannot be "
            "overwritten because the repository is immutable.",
        )
    return None


class EcrEndpoint(BaseHTTPRequestHandler):
    """Forwards to docker-registry (backend) except what `refusal` refuses."""

    protocol_version = "HTTP/1.1"
    backend = ("127.0.0.1", 5001)
    account = "123456789012"
    region = "us-east-1"

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET  # noqa: N815

    def _handle(self) -> None:
        length = self.headers.get("Content-Length")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        # A manifest is small and is read whole to be judged, however it is sent; anything
        # else streams.
        body = None
        if self.command == "PUT" and _MANIFEST.match(self.path):
            body = b"".join(_chunks(self.rfile)) if chunked else self.rfile.read(int(length or 0))
        refused = refusal(self.command, self.path, body, self.account, self.region)
        if refused is not None:
            # A body left unread (a blob upload's) ends the connection: it cannot be reused.
            self._refuse(*refused, unread=body is None and (chunked or length not in (None, "0")))
            return
        upstream = http.client.HTTPConnection(*self.backend, timeout=300)
        try:
            # Header by header: a client's several Accept headers (the manifest types it
            # takes) must all reach the registry, or it answers in another format.
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                if key.lower() not in _HOP_BY_HOP and not (
                    body is not None and key.lower() == "content-length"
                ):
                    upstream.putheader(key, value)
            if body is not None:  # read whole: its length, however the client framed it
                upstream.putheader("Content-Length", str(len(body)))
            elif chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            upstream.endheaders()
            if body is not None:
                upstream.send(body)
            elif chunked:
                for data in _chunks(self.rfile):
                    upstream.send(b"%x\r\n%s\r\n" % (len(data), data))
                upstream.send(b"0\r\n\r\n")
            elif length is not None:
                left = int(length)
                while left > 0 and (data := self.rfile.read(min(_CHUNK, left))):
                    upstream.send(data)
                    left -= len(data)
            self._relay(upstream.getresponse())
        finally:
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        length = response.getheader("Content-Length")
        if self.command == "HEAD" or response.status in (204, 304) or length is not None:
            self.end_headers()
            if self.command != "HEAD":
                while data := response.read(_CHUNK):
                    self.wfile.write(data)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while data := response.read(_CHUNK):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")

    def _refuse(self, status: int, code: str, message: str, unread: bool) -> None:
        if unread:
            self.close_connection = True
        payload = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        print(f"ecr endpoint: refused {self.command} {self.path}: {code} {message}", flush=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def _chunks(stream: BufferedIOBase) -> Iterator[bytes]:
    """The decoded chunks of a chunked request body."""
    while True:
        size = int(stream.readline().split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        yield stream.read(size)
        stream.readline()
