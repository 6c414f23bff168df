"""The seams: the only places that make boto3 and Docker clients.

Tests point these at the real local stack (moto server, Docker engine) through the
environment, or hand a verb a Clients whose `aws` factory returns a stand-in for one
service (ECS rollout sequences). Heavy imports stay inside the factories so that
`invoke --list` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import Throttled, Transient, Unavailable, first_line

AwsFactory = Callable[[str], Any]
DockerFactory = Callable[[], Any]

# The error codes AWS APIs use for throttling: aws_errors raises them as Throttled, which a
# poll that outlives boto3's own retries (the rollout engine's round) simply tries again.
THROTTLED = ("ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded")


_session: Any = None


def boto3_client(service: str, region: str | None = None) -> Any:
    """A client made by botocore itself: the same client boto3.client returns, without
    importing boto3 (and s3transfer with it), about 0.2 s of every task's start."""
    import botocore.session
    from botocore.config import Config

    global _session
    if _session is None:
        _session = botocore.session.get_session()
        _session.register("before-parse", whole_answer)
    # Standard retry mode retries throttling and transient errors with backoff; botocore
    # reads AWS_ENDPOINT_URL itself, which is how the local stack's emulator is reached.
    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
    return _session.create_client(service, region_name=region, config=config)


def whole_answer(response_dict: dict[str, Any], operation_model: Any = None, **_: Any) -> None:
    """Refuse an answer shorter than its Content-Length. botocore reads bodies with urllib3's
    length check off and parses a cut-off JSON body as `{"message": ...}`, an empty one as
    `{}`: a DescribeServices answer cut by a network blip then lists no services, which
    reads as "the service is gone" and rolled a deploy back. Raised here, it is a network
    fault (Transient, via aws_errors) that the caller rides out. An answer that has no body
    by HTTP's rules (to HEAD, 204, 304) declares a length it never sends."""
    from botocore.exceptions import IncompleteReadError

    method = str(getattr(operation_model, "http", {}).get("method", ""))
    if method == "HEAD" or response_dict.get("status_code") in (204, 304):
        return
    body, declared = response_dict.get("body"), response_dict["headers"].get("content-length")
    if isinstance(body, bytes) and declared and declared.isdigit() and len(body) < int(declared):
        raise IncompleteReadError(actual_bytes=len(body), expected_bytes=int(declared))


def docker_client() -> Any:
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except DockerException as exc:
        raise Unavailable(
            "Docker engine is not running or not reachable "
            f"({first_line(exc)}); start it with `invoke stack.up` (or `sudo systemctl start docker`)"
        ) from None
    return client


@dataclass
class Clients:
    """One factory per outside system; clients are made on first use and reused."""

    region: str | None = None
    aws_factory: AwsFactory | None = None
    docker_factory: DockerFactory = docker_client
    _aws: dict[str, Any] = field(default_factory=dict)
    _docker: Any = None

    def aws(self, service: str) -> Any:
        if service not in self._aws:
            factory = self.aws_factory or (lambda name: boto3_client(name, self.region))
            self._aws[service] = factory(service)
        return self._aws[service]

    def docker(self) -> Any:
        if self._docker is None:
            self._docker = self.docker_factory()
        return self._docker


class aws_errors:
    """Turn botocore's exceptions into one-line pipeline errors naming the action.

    `with aws_errors("ecs:UpdateService"): ...` — codes listed in `handled` are left
    for the caller (e.g. RepositoryNotFoundException becomes a NotFound with advice).
    """

    def __init__(self, action: str, handled: tuple[str, ...] = ()) -> None:
        self.action = action
        self.handled = handled

    def __enter__(self) -> aws_errors:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            return
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            IncompleteReadError,
            NoCredentialsError,
            NoRegionError,
            ReadTimeoutError,
        )

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in self.handled:
                return
            message = exc.response.get("Error", {}).get("Message", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if isinstance(status, int) and status >= 500 and code not in THROTTLED:
                raise Transient(
                    f"{self.action}: AWS answered {status} ({code or 'no code'}) after retries"
                ) from None
            if code in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}:
                raise Unavailable(
                    f"AccessDenied: this identity may not call {self.action}; "
                    f"grant {self.action} to it (see the CI policy in `invoke setup`)"
                ) from None
            if code in THROTTLED:
                raise Throttled(
                    f"{self.action} was throttled by AWS after retries; try again shortly"
                ) from None
            if code in {
                "ExpiredToken",
                "ExpiredTokenException",
                "InvalidClientTokenId",
                "UnrecognizedClientException",
            }:
                raise Unavailable(
                    f"{self.action}: AWS rejected the credentials ({code}); refresh them"
                ) from None
            raise Unavailable(f"{self.action} failed: {code}: {message}") from None
        if isinstance(exc, NoCredentialsError):
            raise Unavailable(
                f"{self.action}: no AWS credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                'AWS_PROFILE or `aws sso login` (for the local stack: eval "$(invoke stack.env)")'
            ) from None
        if isinstance(exc, NoRegionError):
            raise Unavailable(f"{self.action}: no AWS region; set AWS_DEFAULT_REGION") from None
        if isinstance(
            exc, (ConnectionClosedError, ReadTimeoutError, ConnectTimeoutError, IncompleteReadError)
        ):
            raise Transient(f"{self.action}: the AWS endpoint did not answer ({first_line(exc)})") from None
        if isinstance(exc, EndpointConnectionError):
            raise Transient(
                f"{self.action}: cannot reach the AWS endpoint ({first_line(exc)}); "
                "check AWS_ENDPOINT_URL / the network (local stack: `invoke stack.up`)"
            ) from None
        if isinstance(exc, BotoCoreError):
            raise Unavailable(f"{self.action}: {first_line(exc)}") from None
