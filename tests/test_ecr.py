"""pipeline/ecr.py on the emulator: account and registry, login, the repository check,
image records and the advice when an image is missing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipeline import ecr
from pipeline.errors import NotFound
from tests.helpers import put_image_record


def test_account_and_registry_come_from_the_environment_else_sts(
    make_context: Callable[..., Any], environ: dict[str, str]
) -> None:
    ctx = make_context()
    assert ecr.account_id(ctx.settings, ctx.clients) == environ["AWS_ACCOUNT_ID"]
    assert ecr.registry(ctx.settings, ctx.clients) == environ["ECR_ENDPOINT"]
    asked = make_context(
        env={k: v for k, v in environ.items() if k not in ("AWS_ACCOUNT_ID", "ECR_ENDPOINT")}
    )
    account = ecr.account_id(asked.settings, asked.clients)  # STS GetCallerIdentity
    assert account == environ["AWS_ACCOUNT_ID"]
    assert ecr.registry(asked.settings, asked.clients) == f"{account}.dkr.ecr.us-east-1.amazonaws.com"


def test_login_decodes_the_authorization_token(
    make_context: Callable[..., Any], environ: dict[str, str]
) -> None:
    ctx = make_context()
    login = ecr.login(ctx.settings, ctx.clients)
    assert login.registry == environ["ECR_ENDPOINT"]
    assert login.username == "AWS" and login.password


def test_a_missing_repository_says_how_to_create_it(make_context: Callable[..., Any], prefix: str) -> None:
    ctx = make_context()
    advice = (
        f"ECR repository '{prefix}' does not exist in us-east-1; create it with "
        f"`invoke setup` or `aws ecr create-repository --repository-name {prefix}`"
    )
    for look in (ecr.ensure_repository, ecr.list_images):
        with pytest.raises(NotFound) as info:
            look(ctx.settings, ctx.clients)
        assert info.value.message == advice
    with pytest.raises(NotFound) as found:
        ecr.find_image(ctx.settings, ctx.clients, "abc1234")
    assert found.value.message == advice


def test_image_records(make_context: Callable[..., Any], aws: Callable[[str], Any], repository: str) -> None:
    ctx = make_context()
    assert ecr.list_images(ctx.settings, ctx.clients) == []
    assert ecr.find_image(ctx.settings, ctx.clients, "abc1234") is None
    put_image_record(aws, repository, "abc1234")
    (listed,) = ecr.list_images(ctx.settings, ctx.clients)
    assert listed.tags == ("abc1234",) and listed.digest.startswith("sha256:")
    assert listed.pushed_at is not None and listed.size is not None
    assert ecr.find_image(ctx.settings, ctx.clients, "abc1234") == listed
    assert ecr.require_image(ctx.settings, ctx.clients, "abc1234") == listed


@pytest.mark.parametrize(
    ("tag", "push"),
    [
        ("abc1234", "`invoke dockerize --sha abc1234 && invoke push --sha abc1234`"),
        ("abc1234-dirty-0123456789ab", "`invoke dockerize && invoke push`"),  # only its work tree makes it
    ],
)
def test_a_missing_image_names_the_push_that_creates_it(
    make_context: Callable[..., Any], repository: str, tag: str, push: str
) -> None:
    ctx = make_context()
    with pytest.raises(NotFound) as info:
        ecr.require_image(ctx.settings, ctx.clients, tag)
    assert info.value.message == (
        f"no image {repository}:{tag} in ECR; push it first with {push} "
        "(CI: a push to the mainline; -dev branches push to a repository of their own, which nothing deploys from)"
    )


def test_a_refused_login_names_what_to_check() -> None:
    error = ecr.unavailable_login("127.0.0.1:5999", "unauthorized")
    assert error.exit_code == 3
    assert error.message == (
        "registry 127.0.0.1:5999 refused the login (unauthorized); check the credentials can call "
        "ecr:GetAuthorizationToken and that ECR_ENDPOINT names this account's registry"
    )
