"""hello_world: the default service the pipeline builds, ships and deploys.

Standard library only. Routes live under BASE_PATH (the ALB forwards paths unchanged,
so every route starts with it): BASE_PATH answers "Hello World!", BASE_PATH + "health"
answers {"status": "ok"} for the load balancer and ECS health checks. With REVISION set
(the deploy template sets the commit's sha), every answer names it in X-Revision, so a
client can tell which revision served it.

SIGTERM (how ECS stops a task) stops accepting connections and lets in-flight
requests finish before the process exits 0.

Traces are optional (hello_world/telemetry.py): only the standard OTEL_* variables turn
them on, and without them opentelemetry is never imported.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import telemetry


def normalise_base_path(value: str) -> str:
    return "/" + value.strip("/") + "/" if value.strip("/") else "/"


class Handler(BaseHTTPRequestHandler):
    server_version = "hello_world/1"
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes; with Nagle on, a keep-alive client (the ALB) waits
    # for its delayed ACK, ~40 ms, on every request.
    disable_nagle_algorithm = True
    base_path = "/hello/"
    revision = ""
    tracing: telemetry.Tracing | None = None

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path in (self.base_path, self.base_path.rstrip("/")):
            self._send(200, "text/plain; charset=utf-8", b"Hello World!\n", self.base_path)
        elif path == self.base_path + "health":
            self._send(
                200, "application/json", json.dumps({"status": "ok"}).encode(), self.base_path + "health"
            )
        else:
            self._send(404, "text/plain; charset=utf-8", b"Not Found\n", None)

    def _send(self, status: int, content_type: str, body: bytes, route: str | None) -> None:
        started = getattr(self, "_started", time.monotonic())
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.revision:
            self.send_header("X-Revision", self.revision)
        self.end_headers()
        self.wfile.write(body)
        seconds = time.monotonic() - started
        self._log(status, seconds)
        if self.tracing is not None:
            ended = time.time_ns()
            path = self.path.split("?", 1)[0]  # the query may carry secrets: never in a span
            self.tracing.record(
                self.command,
                route,
                path,
                status,
                ended - int(seconds * 1e9),
                ended,
                self.headers,
                self.client_address[0],
            )

    def parse_request(self) -> bool:
        self._started = time.monotonic()
        return super().parse_request()

    def _log(self, status: int, seconds: float) -> None:
        # The path without its query string: a query can carry tokens, and logs keep no secret.
        path = self.path.split("?", 1)[0]
        event(method=self.command, path=path, status=status, ms=round(seconds * 1000, 2))

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # replaced by the one JSON line in _log


class Server(ThreadingHTTPServer):
    # Request threads are joined on close, so in-flight requests finish before exit.
    daemon_threads = False
    block_on_close = True


def make_server(
    host: str, port: int, base_path: str, tracing: telemetry.Tracing | None = None, revision: str = ""
) -> Server:
    bound = {"base_path": normalise_base_path(base_path), "tracing": tracing, "revision": revision.strip()}
    handler = type("BoundHandler", (Handler,), bound)
    return Server((host, port), handler)


def event(**fields: object) -> None:
    """One JSON line on stdout: CloudWatch Logs (awslogs) keeps it as is.

    One write() of the whole line: print() writes the text and the newline separately,
    so lines from request threads and the SIGTERM handler could interleave."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    host = os.environ.get("HOST", "0.0.0.0")
    tracing = telemetry.setup(os.environ, event)
    server = make_server(
        host, port, os.environ.get("BASE_PATH", "/hello/"), tracing, os.environ.get("REVISION", "")
    )

    def stop(signum: int, _frame: object) -> None:
        event(event="stopping", signal=signal.Signals(signum).name)
        # shutdown() waits for serve_forever to return, so it must run off this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bound = server.server_address
    base_path = server.RequestHandlerClass.base_path  # type: ignore[attr-defined]
    event(event="listening", host=bound[0], port=bound[1], base_path=base_path)
    server.serve_forever()
    server.server_close()  # joins the request threads still running
    if tracing is not None:
        tracing.shutdown()  # exports the spans still batched
    event(event="stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
