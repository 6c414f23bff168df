"""pipeline/local/envfile.py: the env file read as `docker run --env-file` reads it; every bad line named."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import local
from pipeline.errors import ConfigError
from tests.helpers import ROOT

EXAMPLE = ROOT / "local.env.example"


def test_local_env_example_documents_what_hello_world_reads() -> None:
    import re

    read = set(re.findall(r"os\.environ\.get\(\"([A-Z_]+)\"", (ROOT / "hello_world" / "app.py").read_text()))
    documented = set(re.findall(r"^#? ?([A-Z_]+)=", (ROOT / "local.env.example").read_text(), re.M))
    assert read and read <= documented
    assert set(local.read_env_file(EXAMPLE, {}, EXAMPLE)) <= read  # and it parses


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("A=1\n# comment\n\nexport B='two words'\n", {}, {"A": "1", "B": "two words"}),
        ("PASSWORD=pa$$word${HOME}\n", {"HOME": "/root"}, {"PASSWORD": "pa$$word${HOME}"}),  # as written
        ("FROM_SHELL\nMISSING\n", {"FROM_SHELL": "x"}, {"FROM_SHELL": "x"}),  # as docker does
        ('QUOTED="a=b#c"\nEMPTY=\n', {}, {"QUOTED": "a=b#c", "EMPTY": ""}),
    ],
)
def test_read_env_file(tmp_path: Path, text: str, environ: dict[str, str], expected: dict[str, str]) -> None:
    path = tmp_path / "local.env"
    path.write_text(text)
    assert local.read_env_file(path, environ, EXAMPLE) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=1\nnot an assignment\n", "line 2 is not KEY=VALUE"),
        ("bad one\nA=1\n=x\n", "lines 1, 3 are not KEY=VALUE"),
    ],
)
def test_malformed_env_lines_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "local.env"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        local.read_env_file(path, {}, EXAMPLE)
    assert info.value.message == f"env file {path}: {message}; {EXAMPLE} shows the format"
