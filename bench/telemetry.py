"""What hello_world's traces cost: start-up and per-request latency, OTel off vs on.

    python bench/telemetry.py [--starts 10] [--requests 2000]
    python bench/telemetry.py once [--otel]     # one start, one request, stop: for an
                                                # outside timer, e.g. /usr/bin/time -v

The service runs as its own process on 127.0.0.1 with this interpreter (install the
`telemetry` extra for the "on" case):
  off  no OTEL_* variables: the default; opentelemetry is never imported
  on   OTEL_EXPORTER_OTLP_ENDPOINT at a local OTLP/HTTP receiver, so every span is
       batched and really exported (over loopback only)
Start-up is spawn until /hello/health first answers; per-request is one keep-alive
connection's round trip for GET /hello/; peak memory is the service's VmHWM. Medians are
quoted: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.standins import OtlpReceiver  # noqa: E402 (needs ROOT on the path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def service(otel_endpoint: str | None) -> Iterator[tuple[subprocess.Popen[bytes], int, float]]:
    """Start hello_world; yield (process, port, seconds until it first answered)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(HOST="127.0.0.1", PORT=str(port))
    if otel_endpoint:
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=otel_endpoint, OTEL_SERVICE_NAME="bench")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hello_world.app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    try:
        deadline = started + 30
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/hello/health")
                connection.getresponse().read()
                connection.close()
                break
            except OSError:
                if proc.poll() is not None or time.perf_counter() > deadline:
                    raise SystemExit("error: the service did not start; run it by hand to see why") from None
                time.sleep(0.002)
        yield proc, port, time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def request_latencies(port: int, count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    times = []
    for _ in range(count):
        started = time.perf_counter_ns()
        connection.request("GET", "/hello/")
        response = connection.getresponse()
        response.read()
        times.append((time.perf_counter_ns() - started) / 1000)
        assert response.status == 200
    connection.close()
    return times


def measure(mode: str, endpoint: str | None, starts: int, requests: int) -> dict[str, float]:
    startup = []
    for _ in range(starts):
        with service(endpoint) as (_, _, seconds):
            startup.append(seconds * 1000)
    with service(endpoint) as (proc, port, _):
        request_latencies(port, min(200, requests))  # warm-up
        latencies = request_latencies(port, requests)
        memory = peak_rss_mb(proc.pid)
    latencies.sort()
    return {
        "startup_ms": statistics.median(startup),
        "request_us": statistics.median(latencies),
        "request_p90_us": latencies[int(len(latencies) * 0.9)],
        "peak_rss_mb": memory,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=["compare", "once"], default="compare")
    parser.add_argument("--otel", action="store_true", help="`once` with traces on")
    parser.add_argument("--starts", type=int, default=10, help="start-ups to time per case")
    parser.add_argument("--requests", type=int, default=2000, help="requests to time per case")
    args = parser.parse_args()

    with OtlpReceiver().running() as receiver:
        if args.mode == "once":
            with service(receiver.url if args.otel else None):
                pass
            return 0
        results = {
            "off": measure("off", None, args.starts, args.requests),
            "on": measure("on", receiver.url, args.starts, args.requests),
        }
        exported = len(receiver.spans())
    print(f"{'':24}{'OTel off':>12}{'OTel on':>12}{'on/off':>9}")
    for key, label in [
        ("startup_ms", "start-up, ms (median)"),
        ("request_us", "request, µs (median)"),
        ("request_p90_us", "request, µs (p90)"),
        ("peak_rss_mb", "peak memory, MB"),
    ]:
        off, on = results["off"][key], results["on"][key]
        print(f"{label:24}{off:12.1f}{on:12.1f}{on / off:9.2f}")
    traced = args.starts + 1 + min(200, args.requests) + args.requests  # health checks, warm-up, timed
    print(f"spans the receiver decoded: {exported} of {traced} requests traced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
