"""hello_world's optional traces: the OTEL_* rules (tables), the process with and without
them, and the `otel` image target exporting spans to a local OTLP/HTTP receiver that
decodes the protobuf payload (tests/standins.py)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hello_world import telemetry
from hello_world.telemetry import Misconfigured, TraceSettings
from tests.helpers import ROOT, engine, free_port
from tests.standins import OtlpReceiver, Span

SERVICE_DIR = ROOT / "hello_world"
HONEYCOMB = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://api.honeycomb.io"}
SECRET = "hcaik_01secretsecretsecret"

# --- which OTEL_* settings mean what (pure) -----------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"OTEL_SERVICE_NAME": "svc"}, None),
        ({**HONEYCOMB, "OTEL_SDK_DISABLED": "true"}, None),
        ({**HONEYCOMB, "OTEL_TRACES_EXPORTER": "none"}, None),
        (
            {**HONEYCOMB, "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=abc", "OTEL_SERVICE_NAME": "svc"},
            TraceSettings("otlp", "https://api.honeycomb.io/v1/traces", "svc", ("x-honeycomb-team",)),
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://api.eu1.honeycomb.io/",
                "OTEL_EXPORTER_OTLP_HEADERS": "X-Honeycomb-Team = a%2Cb , ",
            },
            TraceSettings(
                "otlp", "https://api.eu1.honeycomb.io/v1/traces", "hello_world", ("x-honeycomb-team",)
            ),
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/custom", **HONEYCOMB},
            TraceSettings("otlp", "http://127.0.0.1:4318/custom", "hello_world", ()),
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,team=a"},
            TraceSettings("otlp", "http://localhost:4318/v1/traces", "from-attrs", ()),
        ),
        ({"OTEL_TRACES_EXPORTER": "console"}, TraceSettings("console", "", "hello_world", ())),
        (
            {
                **HONEYCOMB,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=k",
            },
            TraceSettings("otlp", "https://api.honeycomb.io/v1/traces", "hello_world", ("x-honeycomb-team",)),
        ),
    ],
)
def test_otel_variables_decide_the_traces(env: dict[str, str], expected: TraceSettings | None) -> None:
    assert telemetry.settings(env) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {**HONEYCOMB, "OTEL_EXPORTER_OTLP_HEADERS": f"x-honeycomb-team:{SECRET}"},
            "OTEL_EXPORTER_OTLP_HEADERS is malformed: entry 1 is not name=value; write name=value pairs",
        ),
        (
            {**HONEYCOMB, "OTEL_EXPORTER_OTLP_HEADERS": SECRET},
            "OTEL_EXPORTER_OTLP_HEADERS is malformed: entry 1 is not name=value",
        ),
        (
            {**HONEYCOMB, "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team="},
            "entry 1 (x-honeycomb-team) has an empty value",
        ),
        ({**HONEYCOMB, "OTEL_EXPORTER_OTLP_HEADERS": f"a=b,{SECRET}"}, "entry 2 is not name=value"),
        (
            {**HONEYCOMB, "OTEL_EXPORTER_OTLP_HEADERS": f'x-honeycomb-team="{SECRET}"'},
            "entry 1 (x-honeycomb-team) has characters a header cannot carry",
        ),
        (
            {
                **HONEYCOMB,
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"x:{SECRET}",
                "OTEL_EXPORTER_OTLP_HEADERS": "a=b",
            },
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS is malformed",
        ),
        (HONEYCOMB, "OTEL_EXPORTER_OTLP_HEADERS has no x-honeycomb-team header"),
        (
            {**HONEYCOMB, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported by this image; use http/protobuf",
        ),
        (
            {**HONEYCOMB, "OTEL_TRACES_EXPORTER": "zipkin"},
            "OTEL_TRACES_EXPORTER: zipkin is not available in this image",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "api.honeycomb.io"},
            "OTEL_EXPORTER_OTLP_ENDPOINT is not an http(s) URL",
        ),
    ],
)
def test_unusable_settings_name_the_variable_never_its_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(Misconfigured) as caught:
        telemetry.settings(env)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value) and "\n" not in str(caught.value)


# --- the process, with and without OTEL_* -------------------------------------------


def get(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def wait_until_serving(url: str, alive: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            get(url)
            return
        except OSError:
            assert alive(), "the service exited before it answered"
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {timeout}s")


class Served:
    """hello_world run as `python -m hello_world.app`, stopped with SIGTERM like ECS does."""

    def __init__(self, env: dict[str, str], python_flags: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hello/"
        base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        self.proc = subprocess.Popen(
            [sys.executable, *python_flags, "-m", "hello_world.app"],
            cwd=ROOT,
            env={**base, "HOST": "127.0.0.1", "PORT": str(self.port), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_serving(self.url + "health", lambda: self.proc.poll() is None)

    def stop(self) -> tuple[list[dict[str, Any]], str]:
        """SIGTERM, wait for exit 0; return (stdout's JSON lines, stderr)."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return [json.loads(line) for line in out.splitlines()], err


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver().running() as server:
        yield server


def test_without_otel_variables_the_service_is_unchanged_and_never_imports_opentelemetry() -> None:
    served = Served({}, python_flags=("-X", "importtime"))
    assert get(served.url) == 200
    lines, stderr = served.stop()
    assert [line["event"] for line in lines if "event" in line] == ["listening", "stopping", "stopped"]
    # Each request logs after its response is sent, so two requests may log in either order.
    assert sorted(line["path"] for line in lines if "path" in line) == ["/hello/", "/hello/health"]
    imported = [
        line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")
    ]
    assert "hello_world.telemetry" in imported
    assert not [name for name in imported if name.startswith(("opentelemetry", "google.protobuf"))]


def test_malformed_headers_start_the_service_with_one_warning(receiver: OtlpReceiver) -> None:
    served = Served(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_HEADERS": f"x-honeycomb-team:{SECRET}",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
    )
    assert get(served.url) == 200
    lines, stderr = served.stop()
    warnings = [line for line in lines if line.get("event") == "warning"]
    assert warnings == [
        {
            "event": "warning",
            "message": "traces off: OTEL_EXPORTER_OTLP_HEADERS is malformed: entry 1 is not name=value; "
            "write name=value pairs separated by commas, e.g. x-honeycomb-team=YOUR_INGEST_KEY",
        }
    ]
    assert SECRET not in json.dumps(lines) + stderr
    # The process has exited, so a tracing process would have flushed its spans by now.
    assert receiver.requests == []


def test_the_process_exports_a_span_per_request(receiver: OtlpReceiver) -> None:
    served = Served(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=process-key",
            "OTEL_SERVICE_NAME": "hello-process",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
    )
    trace_id = uuid.uuid4().hex
    assert (
        get(served.url + "nope?token=hide-me", {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}) == 404
    )
    spans = receiver.wait_for_spans(
        lambda spans: any(s.attributes.get("url.path") == "/hello/nope" for s in spans)
    )
    [span] = [s for s in spans if s.attributes["url.path"] == "/hello/nope"]
    # A request without a route is named by its method alone, and joins the caller's trace.
    assert (span.name, span.trace_id, span.parent_span_id) == ("GET", trace_id, "00f067aa0ba902b7")
    assert "http.route" not in span.attributes and span.attributes["http.response.status_code"] == 404
    assert "hide-me" not in json.dumps(span.attributes)
    lines, _ = served.stop()
    assert {
        "event": "tracing",
        "exporter": "otlp",
        "endpoint": f"{receiver.url}/v1/traces",
        "service_name": "hello-process",
    } in lines


# --- the `otel` image target, as a container ------------------------------------------


# prepare.py's output is kept here, not in the checkout: in hello_world/otel/ it would ride in
# every later build's context and make the tree's images `-dirty` (the tag counts every file
# an image can take in, ignored or not).
OTEL_CACHE = Path.home() / ".cache" / "ecs-pipeline" / "otel"


@pytest.fixture(scope="module")
def images(
    stack_environ: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Both targets of hello_world/Dockerfile, built from the local base image, from a copy
    of hello_world/ with the otel packages that prepare.py installs (it runs pip only when
    requirements.txt changes) in a machine-wide cache."""
    OTEL_CACHE.mkdir(parents=True, exist_ok=True)
    for name in ("prepare.py", "requirements.txt"):
        shutil.copyfile(SERVICE_DIR / "otel" / name, OTEL_CACHE / name)
    prepared = subprocess.run(
        [sys.executable, str(OTEL_CACHE / "prepare.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    service = tmp_path_factory.mktemp("otel") / "hello_world"
    shutil.copytree(
        SERVICE_DIR, service, ignore=shutil.ignore_patterns("__pycache__", "site-packages", ".prepare.lock")
    )
    with open(OTEL_CACHE / ".prepare.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run's prepare.py replacing the packages: wait
        shutil.copytree(OTEL_CACHE / "site-packages", service / "otel" / "site-packages")
    client = engine()
    tag = f"ecs-pipeline-test/hello-world-{uuid.uuid4().hex[:8]}"
    built = {}
    for target in ("otel", "default"):
        image, _ = client.images.build(
            path=str(service),
            target=target,
            tag=f"{tag}:{target}",
            buildargs={"BASE_IMAGE": stack_environ["BASE_IMAGE"]},
            rm=True,
        )
        built[target] = image
    yield {"client": client, **built}
    for target in built:
        client.images.remove(
            f"{tag}:{target}", force=True, noprune=True
        )  # untag only: parallel tests share it


@contextmanager
def run_container(images: dict[str, Any], target: str, env: dict[str, str]) -> Iterator[tuple[Any, str]]:
    port = free_port()
    container = images["client"].containers.run(
        images[target].id,
        detach=True,
        network_mode="host",
        environment={"HOST": "127.0.0.1", "PORT": str(port), **env},
    )
    try:
        url = f"http://127.0.0.1:{port}/hello/"

        def alive() -> bool:
            container.reload()
            return bool(container.status in ("created", "running"))

        wait_until_serving(url + "health", alive)
        yield container, url
    finally:
        container.remove(force=True)


def logs(container: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in container.logs(stdout=True, stderr=False).decode().splitlines()]


@pytest.mark.xdist_group("otel_images")  # one worker: `images` is built once, prepare.py run once
def test_the_otel_image_sends_a_span_per_request_to_the_otlp_endpoint(
    images: dict[str, Any], receiver: OtlpReceiver
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-honeycomb-team={SECRET}",
        "OTEL_SERVICE_NAME": "hello-world-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    with run_container(images, "otel", env) as (container, url):
        assert get(url, {"User-Agent": "span-test"}) == 200
        spans = receiver.wait_for_spans(lambda spans: any(s.name == "GET /hello/" for s in spans))
        container.stop(timeout=10)  # SIGTERM: the batch still queued is exported before exit
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0
        lines = logs(container)

    [span] = [s for s in spans if s.name == "GET /hello/"]
    assert span.kind == "SPAN_KIND_SERVER" and span.status == "STATUS_CODE_UNSET"
    assert span.resource["service.name"] == "hello-world-test"
    assert span.attributes == {
        "http.request.method": "GET",
        "http.route": "/hello/",
        "http.response.status_code": 200,
        "url.path": "/hello/",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "client.address": "127.0.0.1",
        "user_agent.original": "span-test",
    }
    # The span lasts as long as the request the service logged.
    [logged] = [line for line in lines if line.get("path") == "/hello/"]
    assert abs((span.end_ns - span.start_ns) / 1e6 - logged["ms"]) < 0.01
    health: list[Span] = [s for s in receiver.spans() if s.name == "GET /hello/health"]
    assert health and health[0].attributes["http.route"] == "/hello/health"
    export = next(r for r in receiver.requests if r.path == "/v1/traces")
    assert (export.method, export.headers["content-type"]) == ("POST", "application/x-protobuf")
    assert export.headers["x-honeycomb-team"] == SECRET
    assert {
        "event": "tracing",
        "exporter": "otlp",
        "endpoint": f"{receiver.url}/v1/traces",
        "service_name": "hello-world-test",
    } in lines
    assert SECRET not in json.dumps(lines)


@pytest.mark.xdist_group("otel_images")  # one worker: `images` is built once, prepare.py run once
def test_the_default_image_has_no_opentelemetry_and_still_serves_with_otel_set(
    images: dict[str, Any], receiver: OtlpReceiver
) -> None:
    from docker.errors import ContainerError

    with pytest.raises(ContainerError, match="ModuleNotFoundError: No module named"):
        images["client"].containers.run(
            images["default"].id, ["python3", "-c", "import opentelemetry"], network_mode="host", remove=True
        )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=k"}
    with run_container(images, "default", env) as (container, url):
        assert get(url) == 200
        container.stop(timeout=10)
        lines = logs(container)
    assert [line for line in lines if line.get("event") == "warning"] == [
        {
            "event": "warning",
            "message": "traces off: OTEL_* asks for traces but this image has no OpenTelemetry packages; "
            "build the Dockerfile's `otel` target (see the README's Observability section)",
        }
    ]
    assert receiver.requests == []
