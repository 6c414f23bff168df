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
