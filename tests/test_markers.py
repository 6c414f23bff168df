"""Honeycomb deploy markers: the request built (tables), then `post` against a local
stand-in of Honeycomb's markers API (tests/standins.py) over real HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest

from pipeline import markers
from tests.helpers import ROOT, context, said
from tests.standins import RecordingServer, closed_port_url, honeycomb_markers

STARTED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ENDED = datetime(2024, 5, 1, 12, 3, 30, tzinfo=UTC)
SHA = "0123456789abcdef0123456789abcdef01234567"
REVISION = "arn:aws:ecs:us-east-1:123456789012:task-definition/hello-world-service:7"


def build(env: dict[str, str], kind: str = "deploy") -> markers.MarkerRequest | None:
    return markers.build(
        env, "hello-world", "hello-world-service", kind, "prod", SHA, REVISION, STARTED, ENDED
    )


# --- the request, pure ----------------------------------------------------------------


def test_no_key_means_no_marker() -> None:
    assert build({}) is None
    assert build({"HONEYCOMB_API_KEY": "  ", "HONEYCOMB_API_HOST": "nonsense"}) is None


def test_marker_request_defaults_to_the_prefix_dataset_on_the_us_host() -> None:
    request = build({"HONEYCOMB_API_KEY": "k3y"})
    assert request is not None
    assert request.url == "https://api.honeycomb.io/1/markers/hello-world"
    assert request.headers == {"X-Honeycomb-Team": "k3y", "Content-Type": "application/json"}
    assert request.body == {
        "type": "deploy",
        "message": "deploy hello-world-service in prod: sha 0123456789ab, revision hello-world-service:7",
        "start_time": 1714564800,
        "end_time": 1714565010,
    }
    assert "k3y" not in repr(request)


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"HONEYCOMB_DATASET": "__all__"}, "https://api.honeycomb.io/1/markers/__all__"),
        ({"HONEYCOMB_DATASET": "my service/v2"}, "https://api.honeycomb.io/1/markers/my%20service%2Fv2"),
        (
            {"HONEYCOMB_API_HOST": "https://api.eu1.honeycomb.io/"},
            "https://api.eu1.honeycomb.io/1/markers/hello-world",
        ),
        ({"HONEYCOMB_API_HOST": "http://127.0.0.1:8099"}, "http://127.0.0.1:8099/1/markers/hello-world"),
        ({"HONEYCOMB_API_HOST": "http://localhost:8099"}, "http://localhost:8099/1/markers/hello-world"),
    ],
)
def test_dataset_and_host_are_configurable(env: dict[str, str], url: str) -> None:
    request = build({"HONEYCOMB_API_KEY": "k", **env})
    assert request is not None and request.url == url


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"HONEYCOMB_API_HOST": "api.honeycomb.io"}, "HONEYCOMB_API_HOST"),
        ({"HONEYCOMB_API_HOST": "ftp://api.honeycomb.io"}, "HONEYCOMB_API_HOST"),
        # The key would cross the network in clear text.
        ({"HONEYCOMB_API_HOST": "http://api.honeycomb.io"}, "HONEYCOMB_API_HOST"),
        ({"HONEYCOMB_API_HOST": "https://api.honeycomb.io/1/markers"}, "HONEYCOMB_API_HOST"),
        ({"HONEYCOMB_API_HOST": "https://user:pw@api.honeycomb.io"}, "HONEYCOMB_API_HOST"),
        ({"HONEYCOMB_DATASET": "   "}, "HONEYCOMB_DATASET"),
        ({"HONEYCOMB_API_KEY": "two words"}, "HONEYCOMB_API_KEY"),
        ({"HONEYCOMB_API_KEY": "key\r\nX-Injected: 1"}, "HONEYCOMB_API_KEY"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], names: str) -> None:
    with pytest.raises(markers.Problem, match=names) as caught:
        build({"HONEYCOMB_API_KEY": "k", **env})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "revision", "env", "expected"),
    [
        (
            "rollback",
            "hello-world-service:6",
            {},
            "rollback hello-world-service in prod: sha 0123456789ab, revision hello-world-service:6",
        ),
        (
            "deploy",
            "fam:2",
            {"CIRCLE_BUILD_URL": "https://circleci.com/gh/o/r/42"},
            "deploy hello-world-service in prod: sha 0123456789ab, revision fam:2",
        ),
    ],
)
def test_message_names_service_environment_sha_revision(
    kind: str, revision: str, env: dict[str, str], expected: str
) -> None:
    request = markers.build(
        {"HONEYCOMB_API_KEY": "k", **env},
        "hello-world",
        "hello-world-service",
        kind,
        "prod",
        SHA,
        revision,
        STARTED,
        ENDED,
    )
    assert request is not None
    assert request.body["type"] == kind and request.body["message"] == expected
    assert request.body.get("url") == env.get("CIRCLE_BUILD_URL")


def test_end_time_never_precedes_start_time() -> None:
    request = markers.build(
        {"HONEYCOMB_API_KEY": "k"}, "p", "s", "deploy", "prod", SHA, "f:1", ENDED, STARTED
    )
    assert request is not None and request.body["end_time"] == request.body["start_time"]


@pytest.mark.parametrize(
    ("key", "answer", "expected"),
    [
        ("k", markers.Answer(401), "HONEYCOMB_API_KEY was rejected (401); use a Configuration key"),
        ("hcaik_01abc", markers.Answer(401), "rejected (401) (it looks like an Ingest key"),
        ("k", markers.Answer(403), "HONEYCOMB_API_KEY was rejected (403)"),
        (
            "k",
            markers.Answer(404),
            "dataset 'hello-world' not found (404) at HONEYCOMB_API_HOST https://api.honeycomb.io; set HONEYCOMB_DATASET",
        ),
        (
            "k",
            markers.Answer(500, "boom", attempts=2),
            "HONEYCOMB_API_HOST https://api.honeycomb.io answered 500 (2 attempts): boom; the deploy is unaffected",
        ),
        (
            "k",
            markers.Answer(0, "Connection refused"),
            "cannot reach HONEYCOMB_API_HOST https://api.honeycomb.io: Connection refused",
        ),
        ("k", markers.Answer(302), "redirected (302); set it to the API host itself"),
    ],
)
def test_each_failure_explains_what_to_fix(key: str, answer: markers.Answer, expected: str) -> None:
    request = build({"HONEYCOMB_API_KEY": key})
    assert request is not None
    line = markers.explain(request, answer)
    assert line.startswith("Honeycomb marker not posted: ") and expected in line


# --- post(), against the stand-in -------------------------------------------------------


@pytest.fixture
def post(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[str, list[str]]]:
    """Call markers.post with this environment; return (detail output, warning lines)."""

    def run(env: dict[str, str], kind: str = "deploy") -> tuple[str, list[str]]:
        environ = {"AWS_RESOURCE_NAME_PREFIX": "hello-world", **env}
        ctx = context(environ)
        capsys.readouterr()
        markers.post(ctx, markers.Marker(kind, "prod", SHA, REVISION, STARTED, ENDED))
        captured = capsys.readouterr()
        return said(ctx) + captured.out, captured.err.splitlines()

    return run


@pytest.fixture
def honeycomb() -> Iterator[Callable[..., RecordingServer]]:
    """Start stand-ins of Honeycomb's markers API; all stop when the test ends."""
    with ExitStack() as servers:

        def start(statuses: list[int] | None = None, error: str | None = None) -> RecordingServer:
            return servers.enter_context(honeycomb_markers(statuses, error).running())

        yield start


def test_posts_the_marker_honeycomb_expects(
    honeycomb: Callable[..., RecordingServer], post: Callable[..., tuple[str, list[str]]]
) -> None:
    api = honeycomb()
    shown, warnings = post(
        {
            "HONEYCOMB_API_KEY": "s3cret-key",
            "HONEYCOMB_API_HOST": api.url,
            "CIRCLE_BUILD_URL": "https://circleci.com/gh/o/r/42",
        }
    )
    assert warnings == []
    [request] = api.requests
    assert (request.method, request.path) == ("POST", "/1/markers/hello-world")
    assert request.headers["x-honeycomb-team"] == "s3cret-key"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "type": "deploy",
        "message": "deploy hello-world-service in prod: sha 0123456789ab, revision hello-world-service:7",
        "url": "https://circleci.com/gh/o/r/42",
        "start_time": 1714564800,
        "end_time": 1714565010,
    }
    assert "honeycomb: deploy marker a1b2c3 on dataset hello-world" in shown
    assert "s3cret-key" not in shown


def test_environment_wide_marker_goes_to_all(
    honeycomb: Callable[..., RecordingServer], post: Callable[..., tuple[str, list[str]]]
) -> None:
    api = honeycomb()
    post(
        {"HONEYCOMB_API_KEY": "k", "HONEYCOMB_API_HOST": api.url, "HONEYCOMB_DATASET": "__all__"},
        kind="rollback",
    )
    [request] = api.requests
    assert request.path == "/1/markers/__all__" and request.json()["type"] == "rollback"


def test_no_key_sends_nothing(
    honeycomb: Callable[..., RecordingServer], post: Callable[..., tuple[str, list[str]]]
) -> None:
    api = honeycomb()
    shown, warnings = post({"HONEYCOMB_API_HOST": api.url})
    assert (api.requests, shown, warnings) == ([], "", [])


def test_no_key_imports_nothing_heavy() -> None:
    code = (
        "import sys, io, datetime as d\n"
        "from pipeline import markers, config\n"
        "from pipeline.context import Context\n"
        "from pipeline.clients import Clients\n"
        "from pipeline.output import Output\n"
        "env = {'AWS_RESOURCE_NAME_PREFIX': 'pp'}\n"
        "ctx = Context(config.load(env, __import__('pathlib').Path('.')), Clients(), Output(), env)\n"
        "now = d.datetime.now()\n"
        "markers.post(ctx, markers.Marker('deploy', 'prod', 'abc1234', 'f:1', now, now))\n"
        "print(sorted(m for m in ('urllib.request', 'ssl', 'http.client', 'boto3') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_server_error_is_retried_once_then_warns(
    honeycomb: Callable[..., RecordingServer], post: Callable[..., tuple[str, list[str]]]
) -> None:
    api = honeycomb([500, 500])
    shown, warnings = post({"HONEYCOMB_API_KEY": "k-500", "HONEYCOMB_API_HOST": api.url})
    assert len(api.requests) == 2
    assert warnings == [
        f"warning: Honeycomb marker not posted: HONEYCOMB_API_HOST {api.url} answered 500 (2 attempts): "
        "something went wrong; the deploy is unaffected"
    ]
    assert "marker" not in shown


def test_a_transient_error_then_success_posts(
    honeycomb: Callable[..., RecordingServer], post: Callable[..., tuple[str, list[str]]]
) -> None:
    api = honeycomb([503])
    shown, warnings = post({"HONEYCOMB_API_KEY": "k", "HONEYCOMB_API_HOST": api.url})
    assert len(api.requests) == 2 and warnings == []
    assert "deploy marker" in shown


def test_a_refused_connection_warns_and_returns(post: Callable[..., tuple[str, list[str]]]) -> None:
    url = closed_port_url()
    started = time.monotonic()
    _, warnings = post({"HONEYCOMB_API_KEY": "refused-key-0123456789", "HONEYCOMB_API_HOST": url})
    assert time.monotonic() - started < markers.BUDGET_SECONDS
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"warning: Honeycomb marker not posted: cannot reach HONEYCOMB_API_HOST {url} (2 attempts):"
    )
    assert "refused" in warnings[0].lower()


def test_a_host_that_never_answers_holds_the_deploy_only_briefly(
    monkeypatch: pytest.MonkeyPatch, post: Callable[..., tuple[str, list[str]]]
) -> None:
    # A listening socket that never accepts: the request waits until its timeout.
    import socket

    monkeypatch.setattr(markers, "ATTEMPT_TIMEOUT", 0.4)
    monkeypatch.setattr(markers, "BUDGET_SECONDS", 1.2)
    monkeypatch.setattr(markers, "RETRY_PAUSE", 0.1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(0)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        _, warnings = post({"HONEYCOMB_API_KEY": "k", "HONEYCOMB_API_HOST": url})
        elapsed = time.monotonic() - started
    assert elapsed < 1.2 + 0.5
    assert (
        len(warnings) == 1 and "cannot reach HONEYCOMB_API_HOST" in warnings[0] and "timed out" in warnings[0]
    )


def test_a_rejected_key_warns_once_and_is_not_retried(
    honeycomb: Callable[..., RecordingServer], post: Callable[..., tuple[str, list[str]]]
) -> None:
    key = f"rejected-{time.monotonic_ns()}"
    api = honeycomb([401, 401])
    shown, warnings = post({"HONEYCOMB_API_KEY": key, "HONEYCOMB_API_HOST": api.url})
    assert warnings == [
        "warning: Honeycomb marker not posted: HONEYCOMB_API_KEY was rejected (401); "
        "use a Configuration key with the Manage Markers permission for this environment"
    ]
    assert len(api.requests) == 1
    # The rollback that follows a failed deploy: the same key is not tried nor warned about again.
    shown_again, warnings_again = post(
        {"HONEYCOMB_API_KEY": key, "HONEYCOMB_API_HOST": api.url}, kind="rollback"
    )
    assert (len(api.requests), warnings_again, shown_again) == (1, [], "")
    assert key not in shown + "".join(warnings)


def test_the_key_never_appears_in_output_even_when_echoed(
    honeycomb: Callable[..., RecordingServer], post: Callable[..., tuple[str, list[str]]]
) -> None:
    key = "hcxlk_0123456789abcdef"
    api = honeycomb([400], error=f"invalid marker for key {key}")
    shown, warnings = post({"HONEYCOMB_API_KEY": key, "HONEYCOMB_API_HOST": api.url})
    assert len(warnings) == 1 and "answered 400: invalid marker for key [HONEYCOMB_API_KEY]" in warnings[0]
    assert key not in shown + "".join(warnings)


def test_a_missing_dataset_names_the_variable(
    honeycomb: Callable[..., RecordingServer], post: Callable[..., tuple[str, list[str]]]
) -> None:
    api = honeycomb([404])
    _, warnings = post({"HONEYCOMB_API_KEY": "k", "HONEYCOMB_API_HOST": api.url, "HONEYCOMB_DATASET": "nope"})
    assert len(api.requests) == 1 and len(warnings) == 1
    assert "dataset 'nope' not found (404)" in warnings[0] and "set HONEYCOMB_DATASET" in warnings[0]


def test_bad_settings_warn_without_sending(
    honeycomb: Callable[..., RecordingServer], post: Callable[..., tuple[str, list[str]]]
) -> None:
    api = honeycomb()
    _, warnings = post(
        {"HONEYCOMB_API_KEY": "markers-key-0123456789", "HONEYCOMB_API_HOST": api.url + "/1/markers"}
    )
    assert api.requests == []
    assert len(warnings) == 1 and warnings[0].startswith(
        "warning: Honeycomb marker not posted: HONEYCOMB_API_HOST"
    )
