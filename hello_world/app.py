"""hello_world: the default service the pipeline builds, ships and deploys.

Standard library only. Routes live under BASE_PATH (the ALB forwards paths unchanged,
so every route starts with it): BASE_PATH answers "Hello World!", BASE_PATH + "health"
answers {"status": "ok"} for the load balancer and ECS health checks.

SIGTERM (how ECS stops a task) stops accepting connections and lets in-flight
requests finish before the process exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def normalise_base_path(value: str) -> str:
    return "/" + value.strip("/") + "/" if value.strip("/") else "/"


class Handler(BaseHTTPRequestHandler):
    server_version = "hello_world/1"
    protocol_version = "HTTP/1.1"
    base_path = "/hello/"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path in (self.base_path, self.base_path.rstrip("/")):
            self._send(200, "text/plain; charset=utf-8", b"Hello World!\n")
        elif path == self.base_path + "health":
            self._send(200, "application/json", json.dumps({"status": "ok"}).encode())
        else:
            self._send(404, "text/plain; charset=utf-8", b"Not Found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        started = getattr(self, "_started", time.monotonic())
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self._log(status, time.monotonic() - started)

    def parse_request(self) -> bool:
        self._started = time.monotonic()
        return super().parse_request()

    def _log(self, status: int, seconds: float) -> None:
        # One JSON line per request on stdout: CloudWatch Logs (awslogs) keeps it as is.
        line = {"method": self.command, "path": self.path, "status": status, "ms": round(seconds * 1000, 2)}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # replaced by the one JSON line in _log


class Server(ThreadingHTTPServer):
    # Request threads are joined on close, so in-flight requests finish before exit.
    daemon_threads = False
    block_on_close = True


def make_server(host: str, port: int, base_path: str) -> Server:
    handler = type("BoundHandler", (Handler,), {"base_path": normalise_base_path(base_path)})
    return Server((host, port), handler)


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    host = os.environ.get("HOST", "0.0.0.0")
    server = make_server(host, port, os.environ.get("BASE_PATH", "/hello/"))

    def stop(signum: int, _frame: object) -> None:
        print(json.dumps({"event": "stopping", "signal": signal.Signals(signum).name}), flush=True)
        # shutdown() waits for serve_forever to return, so it must run off this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bound = server.server_address
    print(
        json.dumps(
            {
                "event": "listening",
                "host": bound[0],
                "port": bound[1],
                "base_path": server.RequestHandlerClass.base_path,
            }
        ),
        flush=True,
    )  # type: ignore[attr-defined]
    server.serve_forever()
    server.server_close()  # joins the request threads still running
    print(json.dumps({"event": "stopped"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
