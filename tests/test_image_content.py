"""Dirty means the image's content: only changes to what goes into the image (the build
context after .dockerignore, plus the Dockerfile) move the tag off the commit's sha.
Judged on real git repositories in temporary directories."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from pipeline import config, dockerignore, git
from pipeline.clients import Clients
from pipeline.context import Context
from pipeline.output import Output

IGNORE = """\
# the service's own .dockerignore
deploy/
tests/
*.md
!KEEP.md
**/__pycache__
/local.env
"""


def sh(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A service repository: app/ is the build context, with its Dockerfile and .dockerignore."""
    files = {
        "pyproject.toml": '[tool.pipeline]\nservice_dir = "app"\ncontainer_port = 9000\n',
        "README.md": "# greeter\n",
        "app/__main__.py": "print('hi')\n",
        "app/Dockerfile": "FROM scratch\nCOPY . /srv/app/\n",
        "app/.dockerignore": IGNORE,
        "app/KEEP.md": "shipped\n",
        "app/notes.md": "not shipped\n",
        "app/deploy/taskdef.json": "{}\n",
        "app/deploy/prod.json": "{}\n",
        "app/tests/test_app.py": "\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    sh(tmp_path, "init", "-q", "-b", "main")
    sh(tmp_path, "add", "-A")
    sh(tmp_path, "commit", "-qm", "one")
    return tmp_path


def revision(repo: Path) -> git.Revision:
    """What the tasks tag an image with, through the same Context a task uses."""
    settings = config.load({"AWS_RESOURCE_NAME_PREFIX": "greeter"}, repo)
    return Context(settings, Clients(region="us-east-1"), Output(stream=io.StringIO()), {}).revision()


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("pyproject.toml", '[tool.pipeline]\nservice_dir = "app"\ncontainer_port = 9000\n# tuned\n'),
        ("README.md", "# greeter, documented\n"),
        ("app/deploy/prod.json", '{"values": {"cpu": "512"}}\n'),
        ("app/deploy/staging.json", "{}\n"),  # a new file outside the image
        ("app/tests/test_app.py", "# more tests\n"),
        ("app/notes.md", "still not shipped\n"),
        ("app/sub/__pycache__/x.pyc", "bytes"),
        ("docs/guide.txt", "new, outside the context\n"),
    ],
)
def test_changes_outside_the_image_leave_the_commits_tag(repo: Path, path: str, text: str) -> None:
    head = sh(repo, "rev-parse", "HEAD")
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    assert revision(repo) == git.Revision(head)
    # The plain git view still sees a changed or new file: only the image's view ignores it.
    assert sh(repo, "status", "--porcelain")


@pytest.mark.parametrize(
    ("path", "change"),
    [
        ("app/__main__.py", "print('hello')\n"),
        ("app/KEEP.md", "re-included by !KEEP.md\n"),
        ("app/new_module.py", "x = 1\n"),  # untracked, but it would be COPYed
        ("app/Dockerfile", "FROM scratch\nCOPY . /srv/\n"),
        ("app/.dockerignore", IGNORE.replace("tests/\n", "")),  # tests/ would now go in
        ("app/__main__.py", None),  # deleted
    ],
)
def test_changes_to_the_image_make_it_dirty(repo: Path, path: str, change: str | None) -> None:
    head = sh(repo, "rev-parse", "HEAD")
    if change is None:
        (repo / path).unlink()
    else:
        (repo / path).write_text(change)
    found = revision(repo)
    assert found.dirty and found.sha == head and git.TAG_RE.match(found.tag)
    assert revision(repo) == found  # the same content, the same tag


def test_a_changed_file_in_a_gitignored_directory_in_the_context_makes_it_dirty(repo: Path) -> None:
    """The issue's `vendor/`: gitignored, yet in the build context, so in the image."""
    (repo / ".gitignore").write_text("app/vendor/\n*.log\n")
    (repo / "app/vendor").mkdir()
    (repo / "app/vendor/lib.py").write_text("VERSION = 1\n")
    sh(repo, "add", "-A")
    sh(repo, "commit", "-qm", "ignore vendor/")
    head = sh(repo, "rev-parse", "HEAD")
    assert not sh(repo, "status", "--porcelain")  # git sees nothing to commit...
    first = revision(repo)
    assert first.dirty and first.sha == head  # ...but the image holds vendor/lib.py
    (repo / "app/vendor/lib.py").write_text("VERSION = 2\n")
    assert not sh(repo, "status", "--porcelain")
    second = revision(repo)
    assert second.dirty and second.tag != first.tag
    (repo / "app/vendor/lib.py").write_text("VERSION = 1\n")
    assert revision(repo) == first  # the same content, the same tag


def test_gitignored_files_the_dockerignore_keeps_out_leave_the_commits_tag(repo: Path) -> None:
    (repo / ".gitignore").write_text("app/deploy/secret.json\n__pycache__/\n*.log\n")
    sh(repo, "add", "-A")
    sh(repo, "commit", "-qm", "ignore")
    head = sh(repo, "rev-parse", "HEAD")
    (repo / "app/deploy/secret.json").write_text("{}\n")  # deploy/ is dockerignored
    (repo / "app/sub/__pycache__").mkdir(parents=True)
    (repo / "app/sub/__pycache__/x.pyc").write_bytes(b"\0")
    assert revision(repo) == git.Revision(head)
    (repo / "app/build.log").write_text("a gitignored file the image takes\n")
    assert revision(repo).dirty


def test_the_hash_follows_the_content(repo: Path) -> None:
    (repo / "app/__main__.py").write_text("print(1)\n")
    first = revision(repo).tag
    (repo / "README.md").write_text("# unrelated\n")
    assert revision(repo).tag == first
    (repo / "app/__main__.py").write_text("print(2)\n")
    second = revision(repo).tag
    assert second != first
    (repo / "app/__main__.py").write_text("print(1)\n")
    assert revision(repo).tag == first


def test_a_dockerfile_outside_the_context_counts(repo: Path) -> None:
    (repo / "docker").mkdir()
    (repo / "docker/Dockerfile").write_text("FROM scratch\n")
    with (repo / "pyproject.toml").open("a") as f:
        f.write('dockerfile = "docker/Dockerfile"\n')
    sh(repo, "add", "-A")
    sh(repo, "commit", "-qm", "two")
    assert not revision(repo).dirty
    (repo / "docker/Dockerfile").write_text("FROM scratch\nLABEL x=y\n")
    assert revision(repo).dirty


def test_a_project_in_a_subdirectory_of_the_repository(repo: Path) -> None:
    """A monorepo: the project root is below the git root; paths stay project-relative."""
    inner = repo / "services" / "greeter"
    inner.mkdir(parents=True)
    for name in ("pyproject.toml", "app"):
        (repo / name).rename(inner / name)
    sh(repo, "add", "-A")
    sh(repo, "commit", "-qm", "moved")
    assert not revision(inner).dirty
    (repo / "README.md").write_text("# elsewhere in the monorepo\n")
    (inner / "app/deploy/prod.json").write_text("[]\n")
    assert not revision(inner).dirty
    (inner / "app/__main__.py").write_text("print('moved')\n")
    assert revision(inner).dirty


@pytest.mark.parametrize(
    ("patterns", "path", "out"),
    [
        ("deploy/", "deploy/prod.json", True),
        ("deploy", "deploy/nested/x.json", True),
        ("*.md", "README.md", True),
        ("*.md", "docs/README.md", False),  # * stays within one segment
        ("**/*.md", "docs/README.md", True),
        ("**/__pycache__", "a/b/__pycache__/m.pyc", True),
        ("/local.env", "local.env", True),
        ("*.env", "local.env", True),
        ("*.md\n!KEEP.md", "KEEP.md", False),
        ("!KEEP.md\n*.md", "KEEP.md", True),  # the last match wins
        ("te?t", "test/x", True),
        ("[a-c].py", "b.py", True),
        ("[^a-c].py", "d.py", True),
        ("", "anything.py", False),
        ("# a comment\n\n", "a comment", False),
        ("docs/**/*.txt", "docs/a/b/c.txt", True),
        ("docs/**/*.txt", "docs/c.txt", True),
    ],
)
def test_dockerignore_patterns_follow_dockers_rules(patterns: str, path: str, out: bool) -> None:
    assert dockerignore.excluded(path, dockerignore.parse(patterns)) is out
