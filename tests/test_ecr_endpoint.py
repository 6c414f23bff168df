"""ECR's endpoint on the local stack refuses what ECR refuses (pipeline/stack/emulator/ecr_endpoint.py):
a push that would move an immutable tag, and a push to a repository ECR lacks. Real engine,
real registry behind the emulator's front, the aws CLI reading what ECR lists."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline import ecr, image, stack
from pipeline.errors import StepFailed
from pipeline.git import Revision
from pipeline.stack.emulator import ecr_endpoint
from tests.conftest import build_image, engine
from tests.helpers import wait_until

AUTH = {"username": "AWS", "password": stack.REGISTRY_PASSWORD}


@pytest.fixture
def two_images() -> Iterator[tuple[str, str]]:
    """Two different local images (one layer on the local base image each)."""
    names = tuple(
        build_image(f"FROM {stack.LOCAL_BASE_IMAGE}\nLABEL variant={uuid.uuid4().hex}\n") for _ in range(2)
    )
    yield names  # type: ignore[misc]
    for name in names:
        engine().images.remove(name, force=True, noprune=True)


def push(environ: dict[str, str], source: str, repository: str, tag: str) -> str:
    """`docker push` of `source` as repository:tag through ECR's endpoint: "" or the engine's error."""
    client = engine()
    target = f"{environ['ECR_ENDPOINT']}/{repository}"
    client.images.get(source).tag(target, tag=tag)
    try:
        lines = list(client.images.push(target, tag=tag, auth_config=AUTH, stream=True, decode=True))
    finally:
        client.images.remove(f"{target}:{tag}", noprune=True)
    return next((str(line["error"]) for line in lines if "error" in line), "")


def listed(aws_cli: Callable[..., Any], repository: str) -> dict[str, str]:
    images = aws_cli("ecr", "describe-images", "--repository-name", repository)["imageDetails"]
    return {tag: i["imageDigest"] for i in images for tag in i.get("imageTags", [])}


def holding(
    environ: dict[str, str],
    aws: Any,
    aws_cli: Callable[..., Any],
    name: str,
    mutability: str,
    source: str,
    tag: str,
) -> dict[str, str]:
    """A new repository of `mutability` holding `source` under `tag`: what ECR then lists."""
    aws("ecr").create_repository(repositoryName=name, imageTagMutability=mutability)
    assert push(environ, source, name, tag) == ""
    wait_until(lambda: tag in listed(aws_cli, name), timeout=60)
    return listed(aws_cli, name)


def local_digest(source: str) -> str:
    """The config digest (image ID) of a local image, as ECR's manifest names it."""
    return str(engine().images.get(source).id)


def test_a_push_that_would_move_an_immutable_tag_is_refused_and_ecr_keeps_the_first_image(
    environ: dict[str, str], aws: Any, aws_cli: Callable[..., Any], prefix: str, two_images: tuple[str, str]
) -> None:
    first, second = two_images
    before = holding(environ, aws, aws_cli, prefix, "IMMUTABLE", first, "v1")

    error = push(environ, second, prefix, "v1")
    assert error == (
        f"tag invalid: The image tag 'v1' already exists in the '{prefix}' repository and cannot be "
        "overwritten because the repository is immutable."
    )
    assert listed(aws_cli, prefix) == before
    # The registry itself still serves the first image under the tag.
    pulled = engine().images.pull(f"{environ['ECR_ENDPOINT']}/{prefix}", tag="v1", auth_config=AUTH)
    try:
        assert pulled.id == local_digest(first)
    finally:
        engine().images.remove(f"{environ['ECR_ENDPOINT']}/{prefix}:v1", noprune=True)
    # The same image again, and the second image under a new tag, are pushes ECR takes.
    assert push(environ, first, prefix, "v1") == ""
    assert push(environ, second, prefix, "v2") == ""
    wait_until(lambda: "v2" in listed(aws_cli, prefix), timeout=60)


def test_a_mutable_repository_lets_a_tag_move(
    environ: dict[str, str], aws: Any, aws_cli: Callable[..., Any], prefix: str, two_images: tuple[str, str]
) -> None:
    first, second = two_images
    moved_from = holding(environ, aws, aws_cli, prefix, "MUTABLE", first, "latest")["latest"]
    assert push(environ, second, prefix, "latest") == ""
    wait_until(lambda: listed(aws_cli, prefix).get("latest") not in (None, moved_from), timeout=60)


def test_a_push_to_a_repository_ecr_lacks_is_refused(
    environ: dict[str, str], prefix: str, two_images: tuple[str, str]
) -> None:
    error = push(environ, two_images[0], f"{prefix}-missing", "v1")
    assert error == (
        f"name unknown: The repository with name '{prefix}-missing' does not exist in the registry "
        f"with id '{stack.ACCOUNT_ID}'"
    )


@pytest.mark.parametrize(
    ("mutability", "filters", "tag", "refused"),
    [
        ("IMMUTABLE", [], "v1", True),
        ("MUTABLE", [], "v1", False),
        ("IMMUTABLE_WITH_EXCLUSION", [{"filterType": "WILDCARD", "filter": "latest"}], "latest", False),
        ("IMMUTABLE_WITH_EXCLUSION", [{"filterType": "WILDCARD", "filter": "latest"}], "v1", True),
    ],
)
def test_the_rules_for_moving_a_tag_are_ecrs(
    mutability: str, filters: list[dict[str, str]], tag: str, refused: bool
) -> None:
    """The front's decision, on moto's in-process ECR (its PutImage rules), for each mutability."""
    from moto import mock_aws
    from moto.ecr.models import ecr_backends

    with mock_aws():
        backend = ecr_backends[stack.ACCOUNT_ID]["us-east-1"]
        backend.create_repository(
            "app", None, {}, None, mutability, [], image_tag_mutability_exclusion_filters=filters or None
        )
        old = b'{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "n": 1}'
        # As the bridge records a push: under the registry's digest, the manifest's sha256.
        backend.put_image("app", old.decode(), tag, digest="sha256:" + hashlib.sha256(old).hexdigest())
        new = old.replace(b'"n": 1', b'"n": 2')
        path = f"/v2/app/manifests/{tag}"
        answer = ecr_endpoint.refusal("PUT", path, new, stack.ACCOUNT_ID, "us-east-1")
        assert (answer is not None and answer[1] == "TAG_INVALID") is refused
        assert ecr_endpoint.refusal("PUT", path, old, stack.ACCOUNT_ID, "us-east-1") is None  # the same image
        assert (
            ecr_endpoint.refusal("PUT", "/v2/app/manifests/other", new, stack.ACCOUNT_ID, "us-east-1") is None
        )
        assert ecr_endpoint.refusal("GET", path, None, stack.ACCOUNT_ID, "us-east-1") is None


def test_a_push_that_loses_the_race_for_an_immutable_tag_fails_at_once_with_ecrs_refusal(
    environ: dict[str, str],
    aws: Any,
    aws_cli: Callable[..., Any],
    prefix: str,
    two_images: tuple[str, str],
    make_context: Callable[..., Any],
) -> None:
    """Another push takes the tag between `invoke push`'s check and its push: one line, no retries."""
    first, second = two_images
    tag = uuid.uuid4().hex[:12] + "0" * 28
    before = holding(environ, aws, aws_cli, prefix, "IMMUTABLE", first, tag)
    ctx = make_context()
    engine().images.get(second).tag(prefix, tag=tag)  # our build of the commit, as dockerize names it
    try:
        with pytest.raises(StepFailed) as info:
            image.push(
                ctx.settings, ctx.clients, Revision(tag), ecr.login(ctx.settings, ctx.clients), ctx.out
            )
    finally:
        engine().images.remove(f"{prefix}:{tag}", noprune=True)
    assert info.value.message == (
        f"ECR refused the push of {prefix}:{tag} (tag invalid: The image tag '{tag}' already exists in the "
        f"'{prefix}' repository and cannot be overwritten because the repository is immutable.); nothing was "
        "overwritten: `invoke images` shows what ECR holds"
    )
    assert "retrying" not in ctx.out.stream.getvalue()
    assert listed(aws_cli, prefix) == before


def test_a_manifest_sent_in_chunks_is_judged_like_any_other(
    environ: dict[str, str], aws: Any, aws_cli: Callable[..., Any], prefix: str, two_images: tuple[str, str]
) -> None:
    """Another client may frame the manifest with Transfer-Encoding: chunked: the tag stays immutable."""
    import base64
    import http.client

    before = holding(environ, aws, aws_cli, prefix, "IMMUTABLE", two_images[0], "v1")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "layers": [],
        }
    ).encode()
    host, port = environ["ECR_ENDPOINT"].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    credentials = base64.b64encode(f"AWS:{stack.REGISTRY_PASSWORD}".encode()).decode()
    connection.request(
        "PUT",
        f"/v2/{prefix}/manifests/v1",
        body=iter([manifest[:10], manifest[10:]]),
        headers={
            "Authorization": f"Basic {credentials}",
            "Content-Type": "application/vnd.docker.distribution.manifest.v2+json",
        },
        encode_chunked=True,
    )
    answer = connection.getresponse()
    [error] = json.loads(answer.read())["errors"]
    assert (answer.status, error["code"]) == (400, "TAG_INVALID")
    assert listed(aws_cli, prefix) == before
