"""Stand-ins for Honeycomb, a SaaS the tests cannot reach: its markers API and its
OTLP/HTTP traces endpoint.

Each is a real HTTP server on 127.0.0.1 that records every request it receives and
answers the way the real API does (the shapes of Honeycomb's API reference for
POST /1/markers/{dataset}; the OTLP/HTTP specification for POST /v1/traces). The code
under test talks to them over real sockets, exactly as it would to api.honeycomb.io.
"""

from __future__ import annotations

import gzip
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

Reply = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingServer:
    """A threaded HTTP server on 127.0.0.1 that records requests and answers via `respond`."""

    def __init__(self, respond: Callable[[Recorded], Reply]) -> None:
        self.respond = respond
        self.requests: list[Recorded] = []
        self._changed = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                recorded = Recorded(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                status, headers, payload = owner.respond(recorded)
                with owner._changed:
                    owner.requests.append(recorded)
                    owner._changed.notify_all()
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(payload))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_GET = do_PUT = _handle  # noqa: N815 (http.server's naming)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[Self]:
        thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)

    def wait_for(self, predicate: Callable[[list[Recorded]], bool], timeout: float = 10.0) -> list[Recorded]:
        """Block until predicate(requests so far) holds; fail the test after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.requests):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"stand-in at {self.url}: condition not met in {timeout}s; got {self.requests}"
                    )
                self._changed.wait(remaining)
            return list(self.requests)


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- Honeycomb's markers API ------------------------------------------------------

_JSON = {"Content-Type": "application/json"}
_ERRORS = {
    400: "request body is malformed",
    401: "unknown API key - check your credentials",
    404: "dataset not found",
    429: "rate limit exceeded",
    500: "something went wrong",
}


def honeycomb_markers(statuses: list[int] | None = None, error: str | None = None) -> RecordingServer:
    """Honeycomb's POST /1/markers/{dataset}: 201 with the created marker.

    `statuses` scripts the answers in turn (e.g. [500, 201]: fail once, then succeed);
    when it runs out every later request gets 201. `error` overrides the error text.
    """
    script = list(statuses or [])
    ids = itertools.count(0xA1B2C3)

    def respond(request: Recorded) -> Reply:
        status = script.pop(0) if script else 201
        if status != 201:
            body = {"error": error or _ERRORS.get(status, "error")}
            return status, _JSON, json.dumps(body).encode()
        marker = {
            **request.json(),
            "id": f"{next(ids):06x}",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
        }
        return 201, _JSON, json.dumps(marker).encode()

    return RecordingServer(respond)


# --- Honeycomb's OTLP/HTTP traces endpoint ------------------------------------------


@dataclass(frozen=True)
class Span:
    name: str
    kind: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    start_ns: int
    end_ns: int
    trace_id: str
    parent_span_id: str
    status: str


def _value(any_value: Any) -> Any:
    field = any_value.WhichOneof("value")
    return getattr(any_value, field) if field else None


def decode_spans(body: bytes) -> list[Span]:
    """Decode an OTLP ExportTraceServiceRequest (protobuf) into plain spans."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
    from opentelemetry.proto.trace.v1.trace_pb2 import Status

    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    spans = []
    for resource_spans in message.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        name=span.name,
                        kind=SpanProto.SpanKind.Name(span.kind),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        resource=resource,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        trace_id=span.trace_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        status=Status.StatusCode.Name(span.status.code),
                    )
                )
    return spans


class OtlpReceiver(RecordingServer):
    """POST /v1/traces with application/x-protobuf: answers an empty ExportTraceServiceResponse."""

    def __init__(self) -> None:
        def respond(request: Recorded) -> Reply:
            if (
                request.path != "/v1/traces"
                or request.headers.get("content-type") != "application/x-protobuf"
            ):
                return 415 if request.path == "/v1/traces" else 404, {}, b""
            return 200, {"Content-Type": "application/x-protobuf"}, b""

        super().__init__(respond)

    def spans(self) -> list[Span]:
        return [
            span
            for request in self.requests
            if request.path == "/v1/traces"
            for span in decode_spans(request.body)
        ]

    def wait_for_spans(self, predicate: Callable[[list[Span]], bool], timeout: float = 15.0) -> list[Span]:
        self.wait_for(lambda requests: predicate(self.spans()), timeout)
        return self.spans()
