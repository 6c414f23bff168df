"""ECR: account and registry, login, repository and image records."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .clients import Clients, aws_errors
from .config import Settings
from .errors import NotFound, Unavailable
from .git import DIRTY_SUFFIX


@dataclass(frozen=True)
class RegistryLogin:
    registry: str
    username: str
    password: str = field(repr=False)  # repr and str (the same for a dataclass) leave it out


@dataclass(frozen=True)
class ImageRecord:
    """One image as ECR lists it."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime | None
    size: int | None
    registry_id: str | None = None  # the account that owns the registry: no STS call needed


def account_id(settings: Settings, clients: Clients) -> str:
    """AWS_ACCOUNT_ID, else STS's answer for the current credentials."""
    if settings.account_id:
        return settings.account_id
    with aws_errors("sts:GetCallerIdentity"):
        return str(clients.aws("sts").get_caller_identity()["Account"])


def registry(settings: Settings, clients: Clients) -> str:
    return settings.ecr_endpoint or settings.registry(account_id(settings, clients))


def login(settings: Settings, clients: Clients) -> RegistryLogin:
    """Credentials for the registry, from ecr:GetAuthorizationToken.

    The seed's `aws ecr get-login` is gone from AWS CLI v2; this is the API behind
    its replacement, `aws ecr get-login-password`.
    """
    with aws_errors("ecr:GetAuthorizationToken"):
        data = clients.aws("ecr").get_authorization_token()["authorizationData"][0]
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return RegistryLogin(registry(settings, clients), username, password)


def ensure_repository(settings: Settings, clients: Clients) -> None:
    name = settings.repository
    with aws_errors("ecr:DescribeRepositories", handled=("RepositoryNotFoundException",)):
        try:
            clients.aws("ecr").describe_repositories(repositoryNames=[name])
        except clients.aws("ecr").exceptions.RepositoryNotFoundException:
            raise NotFound(
                f"ECR repository {name!r} does not exist in {settings.region}; create it with "
                f"`invoke setup` or `aws ecr create-repository --repository-name {name}`"
            ) from None


def _record(item: dict[str, Any]) -> ImageRecord:
    return ImageRecord(
        digest=item["imageDigest"],
        tags=tuple(item.get("imageTags", [])),
        pushed_at=item.get("imagePushedAt"),
        size=item.get("imageSizeInBytes"),
        registry_id=item.get("registryId"),
    )


def find_image(settings: Settings, clients: Clients, tag: str) -> ImageRecord | None:
    ecr = clients.aws("ecr")
    with aws_errors("ecr:DescribeImages", handled=("ImageNotFoundException", "RepositoryNotFoundException")):
        try:
            found = ecr.describe_images(repositoryName=settings.repository, imageIds=[{"imageTag": tag}])
        except ecr.exceptions.ImageNotFoundException:
            return None
        except ecr.exceptions.RepositoryNotFoundException:
            ensure_repository(settings, clients)  # raises the NotFound with advice
            raise
    details = found.get("imageDetails", [])
    return _record(details[0]) if details else None


def list_images(settings: Settings, clients: Clients) -> list[ImageRecord]:
    ensure_repository(settings, clients)
    records: list[ImageRecord] = []
    with aws_errors("ecr:DescribeImages"):
        for page in (
            clients.aws("ecr").get_paginator("describe_images").paginate(repositoryName=settings.repository)
        ):
            records.extend(_record(item) for item in page.get("imageDetails", []))
    return records


_MANIFEST_TYPES = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
]


def config_digest(settings: Settings, clients: Clients, record: ImageRecord) -> str | None:
    """The image config's digest (what `docker images` calls the image ID) of an image in
    ECR: the same for the same build wherever it is, unlike the manifest digest, which a
    local image has only once pushed. None for a manifest without one (a multi-arch index)."""
    import json

    with aws_errors("ecr:BatchGetImage"):
        found = clients.aws("ecr").batch_get_image(
            repositoryName=settings.repository,
            imageIds=[{"imageDigest": record.digest}],
            acceptedMediaTypes=_MANIFEST_TYPES,
        )
    for item in found.get("images", []):
        config = json.loads(item.get("imageManifest", "{}")).get("config") or {}
        return str(config["digest"]) if config.get("digest") else None
    return None


# An image a verified revision runs gets this second tag; the lifecycle policy never
# expires images tagged so (pipeline/templates/project.yaml), so neither what a service
# runs nor any rollback target can expire under dev pushes.
KEEP_PREFIX = "keep-"


def keep(settings: Settings, clients: Clients, tag: str) -> bool:
    """Tag the image `tag` names as kept (keep-<tag>); False when it already was."""
    ecr = clients.aws("ecr")
    with aws_errors("ecr:BatchGetImage"):
        found = ecr.batch_get_image(
            repositoryName=settings.repository,
            imageIds=[{"imageTag": tag}],
            acceptedMediaTypes=_MANIFEST_TYPES,
        )
    if not found.get("images"):
        return False
    image = found["images"][0]
    with aws_errors("ecr:PutImage", handled=("ImageAlreadyExistsException",)):
        try:
            ecr.put_image(
                repositoryName=settings.repository,
                imageManifest=image["imageManifest"],
                imageManifestMediaType=image.get("imageManifestMediaType", _MANIFEST_TYPES[0]),
                imageTag=KEEP_PREFIX + tag,
            )
        except ecr.exceptions.ImageAlreadyExistsException:
            return False
    return True


def require_image(settings: Settings, clients: Clients, tag: str) -> ImageRecord:
    """The image for `tag`, or a NotFound saying which push creates it."""
    record = find_image(settings, clients, tag)
    if record is None:
        flag = "" if DIRTY_SUFFIX in tag else f" --sha {tag}"
        raise NotFound(
            f"no image {settings.repository}:{tag} in ECR; push it first with "
            f"`invoke dockerize{flag} && invoke push{flag}` (CI: a push to the mainline; -dev branches push "
            "to a repository of their own, which nothing deploys from)"
        )
    return record


def unavailable_login(registry_host: str, reason: str) -> Unavailable:
    return Unavailable(
        f"registry {registry_host} refused the login ({reason}); check the credentials "
        "can call ecr:GetAuthorizationToken and that ECR_ENDPOINT names this account's registry"
    )
