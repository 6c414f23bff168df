"""OpenTelemetry traces for hello_world, only when the standard OTEL_* variables ask.

With no OTEL_* configuration `setup` returns None without importing opentelemetry: the
service starts and serves exactly as it does without this module. With it: the SDK and
the OTLP/HTTP exporter, configured only by the standard variables, and one SERVER span
per request (method, route, status; its start and end give the duration). For Honeycomb:

    OTEL_EXPORTER_OTLP_ENDPOINT=https://api.honeycomb.io   (EU: https://api.eu1.honeycomb.io)
    OTEL_EXPORTER_OTLP_HEADERS=x-honeycomb-team=<ingest key>   (an ECS secret, never the image)
    OTEL_SERVICE_NAME=<the service's name: its Honeycomb dataset>

A configuration that cannot work (malformed headers, an endpoint that is not a URL, an
unsupported exporter or protocol, packages missing from the image) logs one warning
naming the variable, never its value, and the service serves without traces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "http://localhost:4318"  # the OTLP/HTTP default: a collector sidecar
DEFAULT_SERVICE_NAME = "hello_world"
SUPPORTED_PROTOCOL = "http/protobuf"

# The HTTP token characters a header name may use (RFC 9110); values: visible ASCII and
# spaces, without the separators OTEL_EXPORTER_OTLP_HEADERS reserves (, ; " \).
_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VALUE = re.compile(r"^[\x20\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+$")

Log = Callable[..., None]


class Misconfigured(ValueError):
    """One line naming the OTEL_* variable and the fix; never the variable's value."""


@dataclass(frozen=True)
class TraceSettings:
    exporter: str  # "otlp" or "console"
    endpoint: str  # the full traces URL for otlp
    service_name: str
    header_names: tuple[str, ...] = ()


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str]:
    """(variable, value) of the first variable set, else (last name, "")."""
    for name in names:
        if environ.get(name, "").strip():
            return name, environ[name].strip()
    return names[-1], ""


def header_names(value: str, variable: str) -> tuple[str, ...]:
    """Validate OTEL_EXPORTER_OTLP_HEADERS (comma-separated name=value); return the names."""
    names = []
    for number, entry in enumerate(value.split(","), start=1):
        if not entry.strip():
            continue
        name, sep, header_value = entry.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            problem = f"entry {number} is not name=value"
        elif not header_value.strip():
            problem = f"entry {number} ({name}) has an empty value"
        elif not _VALUE.match(header_value.strip()):
            problem = f"entry {number} ({name}) has characters a header cannot carry; URL-encode the value"
        else:
            names.append(name.lower())
            continue
        raise Misconfigured(
            f"{variable} is malformed: {problem}; write name=value pairs separated by commas, "
            "e.g. x-honeycomb-team=YOUR_INGEST_KEY"
        )
    return tuple(names)


def service_name(environ: Mapping[str, str]) -> str:
    if environ.get("OTEL_SERVICE_NAME", "").strip():
        return environ["OTEL_SERVICE_NAME"].strip()
    for pair in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == "service.name" and value.strip():
            return value.strip()
    return DEFAULT_SERVICE_NAME


def settings(environ: Mapping[str, str]) -> TraceSettings | None:
    """What the OTEL_* variables ask for (pure): None means no traces. Raises Misconfigured."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = {e.strip().lower() for e in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()}
    endpoint_var, endpoint = _first(
        environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if "none" in exporters or not (exporters or endpoint):
        return None
    unsupported = sorted(exporters - {"otlp", "console"})
    if unsupported:
        raise Misconfigured(
            f"OTEL_TRACES_EXPORTER: {', '.join(unsupported)} is not available in this image; use otlp, console or none"
        )
    name = service_name(environ)
    if exporters == {"console"}:
        return TraceSettings("console", "", name)
    protocol_var, protocol = _first(
        environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    if protocol and protocol != SUPPORTED_PROTOCOL:
        raise Misconfigured(
            f"{protocol_var}={protocol} is not supported by this image; use {SUPPORTED_PROTOCOL} "
            "(Honeycomb accepts it at https://api.honeycomb.io)"
        )
    parts = urlsplit(endpoint or DEFAULT_ENDPOINT)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Misconfigured(f"{endpoint_var} is not an http(s) URL; e.g. https://api.honeycomb.io")
    if endpoint_var == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" and endpoint:
        traces_url = endpoint  # the signal endpoint is used as given (the OTLP spec)
    else:
        traces_url = (endpoint or DEFAULT_ENDPOINT).rstrip("/") + "/v1/traces"
    headers_var, headers = _first(environ, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
    names = header_names(headers, headers_var)
    if parts.hostname.endswith(".honeycomb.io") and "x-honeycomb-team" not in names:
        raise Misconfigured(
            f"{headers_var} has no x-honeycomb-team header, so Honeycomb would reject every span; "
            "set it to x-honeycomb-team=YOUR_INGEST_KEY"
        )
    return TraceSettings("otlp", traces_url, name, names)


def _shown(url: str) -> str:
    """An endpoint fit for a log line: no credentials, no query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


class Tracing:
    """The SDK's tracer provider and one span per request, recorded when it has finished."""

    def __init__(self, trace_settings: TraceSettings) -> None:
        from opentelemetry import propagate, trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
        from opentelemetry.trace import SpanKind, Status, StatusCode

        exporter: SpanExporter
        if trace_settings.exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # Headers, timeout and compression come from the OTEL_* variables themselves.
            exporter = OTLPSpanExporter(endpoint=trace_settings.endpoint)
        else:
            exporter = ConsoleSpanExporter()
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": trace_settings.service_name})
        )
        # Batching keeps export off the request path; OTEL_BSP_* tune it.
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(self._provider)
        self._tracer = self._provider.get_tracer("hello_world")
        self._extract = propagate.extract
        self._server_kind = SpanKind.SERVER
        self._error = Status(StatusCode.ERROR)

    def record(
        self,
        method: str,
        route: str | None,
        path: str,
        status: int,
        start_ns: int,
        end_ns: int,
        headers: Any,
        client: str = "",
    ) -> None:
        """One SERVER span for a finished request (semantic-convention attribute names)."""
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "http.response.status_code": status,
            "url.path": path,
            "url.scheme": "http",
            "network.protocol.version": "1.1",
        }
        if route:
            attributes["http.route"] = route
        if client:
            attributes["client.address"] = client
        if headers.get("User-Agent"):
            attributes["user_agent.original"] = headers["User-Agent"]
        span = self._tracer.start_span(
            f"{method} {route}" if route else method,
            context=self._extract(headers),  # joins a caller's trace (W3C traceparent)
            kind=self._server_kind,
            attributes=attributes,
            start_time=start_ns,
        )
        if status >= 500:
            span.set_status(self._error)
        span.end(end_time=end_ns)

    def shutdown(self) -> None:
        """Export what is still batched; called once the server has stopped."""
        self._provider.shutdown()


def setup(environ: Mapping[str, str], log: Log) -> Tracing | None:
    """Tracing as the OTEL_* variables ask, or None; `log(event=..., ...)` writes one line."""
    try:
        trace_settings = settings(environ)
    except Misconfigured as exc:
        log(event="warning", message=f"traces off: {exc}")
        return None
    if trace_settings is None:
        return None
    try:
        tracing = Tracing(trace_settings)
    except ImportError:
        log(
            event="warning",
            message="traces off: OTEL_* asks for traces but this image has no OpenTelemetry packages; "
            "build the Dockerfile's `otel` target (see the README's Observability section)",
        )
        return None
    log(
        event="tracing",
        exporter=trace_settings.exporter,
        endpoint=_shown(trace_settings.endpoint) if trace_settings.endpoint else None,
        service_name=trace_settings.service_name,
    )
    return tracing
