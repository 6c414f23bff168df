"""pipeline/local/images.py (pure parts): the `images` rows and table."""

from __future__ import annotations

from pipeline import local
from pipeline.ecr import ImageRecord

A = "abc1234" + "a" * 33


def test_images_rows_and_table() -> None:
    from datetime import UTC, datetime

    records = [
        ImageRecord("sha256:" + "1" * 64, ("v1", A), datetime(2024, 5, 1, tzinfo=UTC), 123_456_789),
        ImageRecord("sha256:" + "2" * 64, (), datetime(2024, 5, 2, tzinfo=UTC), 512),
    ]
    rows = local.image_rows(records)
    assert rows == [
        {"tags": [], "digest": "sha256:" + "2" * 64, "pushed_at": "2024-05-02T00:00:00+00:00", "size": 512},
        {
            "tags": [A, "v1"],
            "digest": "sha256:" + "1" * 64,
            "pushed_at": "2024-05-01T00:00:00+00:00",
            "size": 123_456_789,
        },
    ]
    table = local.images_table(rows)
    assert table[1].split() == ["2024-05-02T00:00:00+00:00", "sha256:222222222222", "512", "B", "(untagged)"]
    assert table[2].split()[2:] == ["123.5", "MB", f"{A},", "v1"]


def test_a_pull_and_run_plan_says_what_it_chose_and_what_will_run() -> None:
    from pathlib import Path

    from pipeline import config
    from pipeline.selection import Selection
    from tests.helpers import ROOT

    settings = config.load({"AWS_RESOURCE_NAME_PREFIX": "shop"}, ROOT)
    record = ImageRecord("sha256:" + "1" * 64, (A, "v1"), None, None)
    env = {"API_TOKEN": "hunter2"}
    spec = local.run_spec(settings, f"registry/shop:{A}", "shop-abc1234aaaaa", env, 9000, False)
    plan = local.PullAndRun(
        Selection(record, A, "sha abc1234"), spec.image, spec, Path("local.env"), env, False
    )
    assert plan.headline() == f"chose sha256:111111111111 by sha abc1234 (tags: {A}, v1)"
    assert plan.details() == local.describe(spec, Path("local.env"), env)
    assert "hunter2" not in "\n".join([plan.headline(), *plan.details()])
