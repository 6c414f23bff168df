"""Settings and facts the infra tests share: a project "shop" in eu-west-1, no AWS needed."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline import config, infra
from pipeline.errors import ConfigError
from tests.helpers import ROOT

TEMPLATES = ROOT / "pipeline" / "templates"


ACCOUNT = "123456789012"


BASE = {"AWS_RESOURCE_NAME_PREFIX": "shop", "AWS_DEFAULT_REGION": "eu-west-1"}


ORG = "0b6b3a9e-6a35-4b5c-9a4e-1f2e3d4c5b6a"


PROJECT = "7c9d2f10-3e4a-4b8c-8d1e-2a3b4c5d6e7f"


LISTENER = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/shared/0123456789abcdef/fedcba9876543210"


CERT = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"


def load(infra_table: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> config.Settings:
    project = {"infra": infra_table} if infra_table is not None else {}
    return config.load(environ or BASE, ROOT, project)


def problems(infra_table: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(infra_table)
    return info.value.problems


def facts(settings: config.Settings, **overrides: Any) -> infra.Facts:
    base = infra.Facts(
        account_id=ACCOUNT,
        partition="aws",
        registry=f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
        cluster="shop-cluster",
        project=infra.StackState("shop-project"),
        create_repository=True,
        oidc_provider_arn="",
        environment=infra.StackState("shop-prod"),
        network=infra.Network(
            "vpc-0a1b2c3d4e5f60718", ("subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"), (), True
        ),
        image=f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/shop:abc1234",
    )
    return infra.Facts(**{**base.__dict__, **overrides})
