"""pipeline/image.py: the build spec made from a commit (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline import config, git, image
from tests.helpers import ROOT

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_a_configured_stage_is_built() -> None:
    settings = config.load({"AWS_RESOURCE_NAME_PREFIX": "shop"}, ROOT, {"docker_target": "otel"})
    assert image.build_spec(settings, git.Revision(SHA), datetime.now(UTC)).target == "otel"


def test_build_spec_carries_provenance_and_no_secrets() -> None:
    settings = config.load(
        {"AWS_RESOURCE_NAME_PREFIX": "shop", "BASE_IMAGE": "base:1", "API_TOKEN": "s3cret"}, ROOT
    )
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    spec = image.build_spec(settings, git.Revision(SHA, changes="0a1b2c3d"), created)
    assert spec == image.BuildSpec(
        context=str(ROOT / "hello_world"),
        dockerfile="Dockerfile",
        tag=f"shop:{SHA}-dirty-0a1b2c3d",
        labels={
            "org.opencontainers.image.revision": f"{SHA}-dirty-0a1b2c3d",
            "org.opencontainers.image.created": "2026-01-02T03:04:05+00:00",
            "org.opencontainers.image.title": "shop",
            "org.opencontainers.image.source": "https://github.com/example/ecs-pipeline",
        },
        buildargs={"BASE_IMAGE": "base:1"},
    )
