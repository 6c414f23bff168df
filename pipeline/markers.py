"""Honeycomb deploy markers: every deploy and rollback shows on the team's graphs.

The deploy verb calls `post` after every deploy and rollback, whatever their outcome.
It never raises and never fails a deploy: a problem becomes one warning naming the
variable to fix, and the key never appears in output. With HONEYCOMB_API_KEY unset it
returns at once, importing nothing.

Settings (environment variables; in CircleCI a per-environment context):
  HONEYCOMB_API_KEY   a Configuration key with the "Manage Markers" permission
  HONEYCOMB_DATASET   the dataset whose graphs show the marker; default: the prefix, which
                      is also the service's OTEL_SERVICE_NAME and so its traces' dataset.
                      `__all__` puts the marker on every dataset of the key's environment.
  HONEYCOMB_API_HOST  https://api.honeycomb.io (default) or https://api.eu1.honeycomb.io
  CIRCLE_BUILD_URL    the marker's link, when CircleCI sets it
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from .arns import short

if TYPE_CHECKING:
    from .context import Context

DEFAULT_HOST = "https://api.honeycomb.io"
ENVIRONMENT_WIDE = "__all__"
# A marker must not hold up a deploy: all attempts together stay within this budget.
BUDGET_SECONDS = 5.0
ATTEMPT_TIMEOUT = 3.0
RETRY_PAUSE = 0.5

_LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|::1)$")
# Honeycomb key ids carry their type: hc?ik_ is an Ingest key, which cannot manage markers.
_INGEST_KEY = re.compile(r"^hc[a-z]ik_")
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")

# Keys Honeycomb rejected in this process: later markers skip them without a second warning.
_rejected: set[str] = set()


class Problem(Exception):
    """Why no marker was posted: one line naming the variable to fix, never the key."""


@dataclass(frozen=True)
class MarkerRequest:
    """One POST /1/markers/{dataset}: what `post` sends (and what a dry run may print)."""

    host: str
    dataset: str
    body: dict[str, Any]
    key: str = field(repr=False)

    @property
    def url(self) -> str:
        return f"{self.host}/1/markers/{quote(self.dataset, safe='')}"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Honeycomb-Team": self.key, "Content-Type": "application/json"}


def api_host(value: str) -> str:
    """HONEYCOMB_API_HOST as scheme://host[:port]; plain http only to loopback (tests)."""
    parts = urlsplit(value.strip().rstrip("/"))
    loopback = bool(parts.hostname and _LOOPBACK.match(parts.hostname))
    secure = parts.scheme == "https" or (parts.scheme == "http" and loopback)
    if secure and parts.hostname and not (parts.path or parts.query or parts.username):
        return f"{parts.scheme}://{parts.netloc}"
    raise Problem(
        f"HONEYCOMB_API_HOST {value!r} is not an API host; use {DEFAULT_HOST} "
        "or https://api.eu1.honeycomb.io (no path; plain http only to a loopback address)"
    )


def short_revision(revision: str) -> str:
    """`family:7` from a task definition ARN; anything else unchanged."""
    return short(revision)


def build(
    environ: Mapping[str, str],
    default_dataset: str,
    service: str,
    kind: str,
    environment: str,
    sha: str,
    revision: str,
    started: datetime,
    ended: datetime,
    succeeded: bool = True,
    message: str | None = None,
) -> MarkerRequest | None:
    """The marker to post, or None when no key is configured. Raises Problem.

    A failed deploy or rollback gets its own type (`deploy-failed`), so the graphs
    show it in its own colour."""
    key = environ.get("HONEYCOMB_API_KEY", "").strip()
    if not key:
        return None
    if not _PRINTABLE.match(key):
        raise Problem("HONEYCOMB_API_KEY contains spaces or control characters; set it to the key alone")
    host = api_host(environ.get("HONEYCOMB_API_HOST") or DEFAULT_HOST)
    dataset = (environ.get("HONEYCOMB_DATASET") or default_dataset).strip()
    if not dataset:
        raise Problem(f"HONEYCOMB_DATASET is empty; name the service's dataset or {ENVIRONMENT_WIDE}")
    start = int(started.timestamp())
    verdict = "" if succeeded else " (failed)"
    body: dict[str, Any] = {
        "type": kind if succeeded else f"{kind}-failed",
        "message": message
        or f"{kind} {service} in {environment}: sha {sha[:12]}, revision {short_revision(revision)}{verdict}",
        "start_time": start,
        "end_time": max(start, int(ended.timestamp())),
    }
    build_url = environ.get("CIRCLE_BUILD_URL", "")
    if build_url.startswith(("https://", "http://")):
        body["url"] = build_url
    return MarkerRequest(host=host, dataset=dataset, body=body, key=key)


@dataclass(frozen=True)
class Answer:
    """What the API said: an HTTP status (0 when nothing answered) and a short reason."""

    status: int
    reason: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1


def explain(request: MarkerRequest, answer: Answer) -> str:
    """The one warning line for a marker that was not posted (pure)."""
    where = f"HONEYCOMB_API_HOST {request.host}"
    if answer.status in (401, 403):
        hint = (
            " (it looks like an Ingest key, which cannot create markers)"
            if _INGEST_KEY.match(request.key)
            else ""
        )
        return (
            f"Honeycomb marker not posted: HONEYCOMB_API_KEY was rejected ({answer.status}){hint}; "
            "use a Configuration key with the Manage Markers permission for this environment"
        )
    if answer.status == 404:
        return (
            f"Honeycomb marker not posted: dataset {request.dataset!r} not found (404) at {where}; "
            f"set HONEYCOMB_DATASET to an existing dataset (the service's OTEL_SERVICE_NAME) "
            f"or {ENVIRONMENT_WIDE} for an environment-wide marker"
        )
    if 300 <= answer.status < 400:
        return f"Honeycomb marker not posted: {where} redirected ({answer.status}); set it to the API host itself"
    tries = f" ({answer.attempts} attempts)" if answer.attempts > 1 else ""
    if answer.status == 0:
        return f"Honeycomb marker not posted: cannot reach {where}{tries}: {answer.reason}; the deploy is unaffected"
    detail = f": {answer.reason}" if answer.reason else ""
    return f"Honeycomb marker not posted: {where} answered {answer.status}{tries}{detail}; the deploy is unaffected"


def _retryable(answer: Answer) -> bool:
    return answer.status == 0 or answer.status == 429 or answer.status >= 500


@dataclass(frozen=True)
class Marker:
    """One finished deploy, rollback or release, as a marker tells it."""

    kind: str  # deploy | rollback | release
    environment: str
    sha: str
    revision: str
    started: datetime
    ended: datetime
    succeeded: bool = True
    message: str | None = None  # None: made from the fields above


def post(ctx: Context, marker: Marker) -> None:
    """Post a Honeycomb marker for a finished deploy or rollback; never raises."""
    if not ctx.environ.get("HONEYCOMB_API_KEY"):
        return
    key = ctx.environ["HONEYCOMB_API_KEY"]
    kind = marker.kind
    try:
        env = ctx.settings.environments.get(marker.environment)
        service = env.service if env else ctx.settings.prefix
        request = build(
            ctx.environ,
            ctx.settings.prefix,
            service,
            kind,
            marker.environment,
            marker.sha,
            marker.revision,
            marker.started,
            marker.ended,
            marker.succeeded,
            marker.message,
        )
        if request is None or _fingerprint(request) in _rejected:
            return
        answer = _send_with_retry(request)
        if 200 <= answer.status < 300:
            ctx.out.detail(
                f"honeycomb: {kind} marker {answer.payload.get('id', '')} on dataset {request.dataset}"
            )
            return
        if answer.status in (401, 403):
            _rejected.add(_fingerprint(request))
        ctx.out.warn(_scrub(explain(request, answer), key))
    except Problem as exc:
        ctx.out.warn(_scrub(f"Honeycomb marker not posted: {exc}", key))
    except Exception as exc:  # a marker must never fail a deploy
        ctx.out.warn(_scrub(f"Honeycomb marker not posted: unexpected {type(exc).__name__}: {exc}", key))


def _fingerprint(request: MarkerRequest) -> str:
    return hashlib.sha256(f"{request.host}\0{request.key}".encode()).hexdigest()


def _scrub(line: str, key: str) -> str:
    key = key.strip()
    # Real keys are 22+ characters; replacing a one-letter test value would garble the line.
    return line.replace(key, "[HONEYCOMB_API_KEY]") if len(key) >= 6 else line


def _send_with_retry(request: MarkerRequest) -> Answer:
    """One attempt, and one more for a transient failure, within BUDGET_SECONDS."""
    deadline = time.monotonic() + BUDGET_SECONDS
    answer = _send(request, ATTEMPT_TIMEOUT)
    remaining = deadline - time.monotonic() - RETRY_PAUSE
    if _retryable(answer) and remaining > 0.5:
        time.sleep(RETRY_PAUSE)
        answer = replace(_send(request, min(ATTEMPT_TIMEOUT, remaining)), attempts=2)
    return answer


def _send(request: MarkerRequest, timeout: float) -> Answer:
    # urllib is imported here, not at module top: it pulls in ssl and email, and most
    # runs (no key) never need it.
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # Following a redirect would resend the key to wherever it points.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    data = json.dumps(request.body).encode()
    http_request = urllib.request.Request(request.url, data=data, headers=request.headers, method="POST")
    try:
        with opener.open(http_request, timeout=timeout) as response:
            return Answer(response.status, payload=_json_object(response.read()))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, _error_text(exc.read()))
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return Answer(0, f"timed out after {timeout:g}s")
        return Answer(0, str(exc.reason)[:120])
    except TimeoutError:
        return Answer(0, f"timed out after {timeout:g}s")
    except OSError as exc:
        return Answer(0, (str(exc) or type(exc).__name__)[:120])


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error_text(raw: bytes) -> str:
    """Honeycomb's `error` (or `title`) field, short; else the start of the body."""
    payload = _json_object(raw)
    text = str(payload.get("error") or payload.get("title") or raw[:120].decode("utf-8", "replace"))
    return " ".join(text.split())[:160]
