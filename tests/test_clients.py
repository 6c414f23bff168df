"""pipeline/clients.py: botocore's exceptions become one line naming the action; clients are made once."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

from pipeline.clients import THROTTLED, Clients, aws_errors
from pipeline.errors import Unavailable


def client_error(code: str, message: str = "it went wrong") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "DescribeServices")


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (
            client_error("AccessDeniedException"),
            "AccessDenied: this identity may not call ecs:DescribeServices",
        ),
        (
            client_error("UnauthorizedOperation"),
            "AccessDenied: this identity may not call ecs:DescribeServices",
        ),
        *(
            (client_error(code), "ecs:DescribeServices was throttled by AWS after retries; try again shortly")
            for code in THROTTLED
        ),
        (client_error("ExpiredToken"), "ecs:DescribeServices: AWS rejected the credentials (ExpiredToken)"),
        (
            client_error("ClusterNotFoundException", "no"),
            "ecs:DescribeServices failed: ClusterNotFoundException: no",
        ),
        (NoCredentialsError(), "ecs:DescribeServices: no AWS credentials found"),
        (NoRegionError(), "ecs:DescribeServices: no AWS region; set AWS_DEFAULT_REGION"),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
            'ecs:DescribeServices: cannot reach the AWS endpoint (Could not connect to the endpoint URL: "http://127.0.0.1:1")',
        ),
    ],
)
def test_aws_errors_are_one_line_naming_the_action(exc: Exception, message: str) -> None:
    with pytest.raises(Unavailable) as info, aws_errors("ecs:DescribeServices"):
        raise exc
    assert info.value.message.startswith(message)
    assert "\n" not in info.value.message


def test_handled_codes_are_left_to_the_caller() -> None:
    with pytest.raises(ClientError), aws_errors("ecs:DescribeServices", handled=THROTTLED):
        raise client_error("RequestLimitExceeded")


def test_each_client_is_made_once() -> None:
    made: list[str] = []

    def factory(service: str) -> Any:
        made.append(service)
        return object()

    clients = Clients(region="eu-west-1", aws_factory=factory)
    assert clients.aws("ecs") is clients.aws("ecs")
    clients.aws("ecr")
    assert made == ["ecs", "ecr"]
