"""`ecs-pipeline init`: scaffold a service repository for the pipeline.

Everything is decided before anything is written: the flags are checked, every file is
rendered, pyproject.toml's new text is parsed back, and files that exist are refused
(unless --overwrite). Then the files are written and the next commands printed. The
templates are package data in pipeline/scaffold/; `@@name@@` marks what init fills in,
so the task definition's own `${placeholders}` pass through untouched.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from . import start_command
from .config.project import name_from_project
from .config.settings import PROJECT_FILE
from .errors import ConfigError

_PATH_RE = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")  # an URL path, no spaces or quotes
_HEADER_RE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


@dataclass(frozen=True)
class InitOptions:
    service_dir: str = "."
    port: str | int | None = None  # None: 8080
    base_path: str = "/"
    health_path: str | None = None  # None: <base_path>health
    smoke_text: str | None = None
    build_command: str | None = None
    test_command: str | None = None
    force: bool = False
    command: str | None = None  # None: detected from the service's files


@dataclass(frozen=True)
class Checked:
    """The options once valid: what the files are rendered from."""

    service_dir: str
    port: int
    base_path: str
    health_path: str
    smoke_text: str | None
    build_command: str | None
    test_command: str | None
    command: tuple[str, ...] | None = None  # None: start_command.detect decides

    @property
    def copy_to(self) -> str:
        """Where the image holds the build context: the repository's layout under /srv."""
        return "/srv/" if self.service_dir == "." else f"/srv/{self.service_dir}/"


def check_options(options: InitOptions) -> Checked:
    """Every bad flag value in one line, before anything is written."""
    problems = []
    try:
        port = int(str(8080 if options.port is None else options.port))
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        problems.append(
            f"--container-port {options.port!r}: must be a port number 1-65535 (e.g. --container-port 9000)"
        )
    base = options.base_path
    if not (_PATH_RE.match(base) and base.endswith("/")):
        problems.append(f"--base-path {base!r}: must start and end with '/' with no spaces (e.g. /orders/)")
    health = options.health_path if options.health_path is not None else f"{base}health"
    if options.health_path is not None and not _PATH_RE.match(health):
        problems.append(f"--health-path {health!r}: must be a path starting with '/' (e.g. /orders/health)")
    directory = PurePosixPath(options.service_dir or ".")
    if directory.is_absolute() or ".." in directory.parts or not str(directory).strip():
        problems.append(
            f"--service-dir {options.service_dir!r}: must be a directory inside the repository "
            "(relative, no '..'; e.g. --service-dir app)"
        )
    for flag, value in (
        ("--smoke-text", options.smoke_text),
        ("--build-command", options.build_command),
        ("--test-command", options.test_command),
    ):
        if value is not None and (not value.strip() or "\n" in value):
            problems.append(f"{flag} {value!r}: must be one non-blank line (or leave the flag out)")
    command = None
    if options.command is not None:
        try:
            command = start_command.parse(options.command)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return Checked(
        str(directory),
        port,
        base,
        health,
        options.smoke_text,
        options.build_command,
        options.test_command,
        command,
    )


def _template(name: str) -> str:
    return resources.files("pipeline").joinpath("scaffold", name).read_text()


def _fill(text: str, values: dict[str, Any]) -> str:
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", str(value))
    leftover = re.search(r"@@\w+@@", text)
    assert leftover is None, f"unfilled {leftover[0]}"  # a template and this module disagree
    return text


def _toml(value: str | int) -> str:
    # JSON's string escapes are valid in TOML basic strings.
    return json.dumps(value)


def pipeline_section(c: Checked, prefix: str, command: tuple[str, ...]) -> str:
    """The [tool.pipeline] tables for the project file."""

    def setting(key: str, value: str | None, unset: str) -> str:
        return f"{key} = {_toml(value)}" if value is not None else f"# {key} = ...  ({unset})"

    lines = [
        "[tool.pipeline]  # ecs-pipeline's settings for this service (the README lists them all)",
        f"prefix = {_toml(prefix)}  # names its AWS resources; AWS_RESOURCE_NAME_PREFIX overrides it",
        f"service_dir = {_toml(c.service_dir)}",
        f"container_port = {c.port}",
        f"base_path = {_toml(c.base_path)}",
        setting("build_command", c.build_command, "unset: `invoke build` is skipped"),
        setting("test_command", c.test_command, "unset: `invoke test` is skipped"),
        "# integration_command = ...  (unset: CI leaves integration out; BASE_URL points at the deployment)",
        f"serve_command = {_toml(shlex.join(command))}  # the image's CMD too",
    ]
    if c.smoke_text is not None:
        lines += ["", "[tool.pipeline.smoke]", f"text = {_toml(c.smoke_text)}"]
    if c.health_path != f"{c.base_path}health":
        lines += ["", "[tool.pipeline.infra]", f"health_check_path = {_toml(c.health_path)}"]
    return "\n".join(lines) + "\n"


def _without_pipeline_tables(text: str) -> str:
    """The text with every [tool.pipeline] / [tool.pipeline.*] table removed (for --overwrite)."""
    kept: list[str] = []
    dropping = False
    for line in text.splitlines(keepends=True):
        header = _HEADER_RE.match(line)
        if header:
            name = header[1].replace(" ", "")
            dropping = name == "tool.pipeline" or name.startswith("tool.pipeline.")
        if not dropping:
            kept.append(line)
    return "".join(kept)


def project_file_text(existing: str | None, section: str, force: bool) -> str | None:
    """pyproject.toml's new text: the section added (or, with force, replaced), every other
    table as it was. None when a [tool.pipeline] section exists and force is off."""
    if existing is None:
        return section
    try:
        before = tomllib.loads(existing)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{PROJECT_FILE}: not valid TOML ({exc}); fix it before `init`") from None
    has_section = "pipeline" in before.get("tool", {})
    if has_section and not force:
        return None
    base = _without_pipeline_tables(existing) if has_section else existing
    base = base.rstrip("\n")
    text = f"{base}\n\n{section}" if base else section
    # Edited as text so comments and layout stay; parsed back so nothing else changed.
    try:
        after = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        after = {}
    expected = {
        **before,
        "tool": {**before.get("tool", {}), "pipeline": tomllib.loads(section)["tool"]["pipeline"]},
    }
    if after != expected:
        raise ConfigError(
            f"{PROJECT_FILE}: cannot add [tool.pipeline] without changing other settings (is it "
            "written as dotted keys or inline tables?); move it into [tool.pipeline] tables and rerun"
        )
    return text


def dockerfile_template(service: Path) -> str:
    """The Dockerfile template for the service in `service` (the build context). One
    place decides, so a variant (one that installs requirements.txt or pyproject.toml's
    dependencies in their own layer before the code) is chosen here."""
    return "Dockerfile.txt"


GITIGNORED = ("local.env", ".venv/")


def gitignore_text(existing: str | None) -> str | None:
    """.gitignore with local.env (the service's own secrets) and .venv/ added where missing;
    None when both are there already."""
    lines = (existing or "").splitlines()
    present = {line.strip().rstrip("/") for line in lines}
    missing = [entry for entry in GITIGNORED if entry.rstrip("/") not in present]
    if not missing:
        return None
    head = (existing or "").rstrip("\n")
    added = "# ecs-pipeline: local settings and the virtualenv stay out of git\n" + "\n".join(missing)
    return f"{head}\n\n{added}\n" if head else f"{added}\n"


def install_requirement(version: str | None, source: str | None) -> str:
    """What CI installs, as the README's install line says: a tag of the package's source
    repository (the package is not on an index yet), pinned to the version init ran as."""
    if not source:
        return f"ecs-pipeline=={version}" if version else "ecs-pipeline"
    return f"ecs-pipeline @ git+{source}" + (f"@v{version}" if version else "")


def service_install_command(root: Path, service_dir: str) -> str:
    """The CI test job's install of the service's own dependencies."""
    for where in dict.fromkeys([service_dir, "."]):
        requirements = PurePosixPath(where) / "requirements.txt"
        if (root / requirements).is_file():
            return f"python -m pip install --quiet -r {shlex.quote(str(requirements))}"
    return "echo 'no requirements.txt: add the packages test_command needs to one'"


def plan_files(
    root: Path, c: Checked, version: str, force: bool, source: str | None = None
) -> tuple[dict[Path, str], list[str]]:
    """(path → content to write, notes). Raises before anything is written."""
    service = root / c.service_dir
    command = c.command or start_command.detect(root, c.service_dir)
    pinned = version[:1].isdigit() and "+" not in version  # a release, not a checkout's 0+unknown
    requirement = install_requirement(version if pinned else None, source)
    values: dict[str, Any] = {
        "port": c.port,
        "base_path": c.base_path,
        "health_path": c.health_path,
        "service_dir": c.service_dir,
        "copy_to": c.copy_to,
        "cmd": json.dumps(list(command)),
        "command_text": shlex.join(command),
        "requirement": requirement,
        "install_service": json.dumps(service_install_command(root, c.service_dir)),
    }
    files: dict[Path, str] = {
        root / "tasks.py": _template("tasks.py.txt"),
        service / "deploy" / "taskdef.json": _fill(_template("taskdef.json"), values),
        root / "local.env.example": _fill(_template("local.env.example"), values),
        service / ".dockerignore": _template("dockerignore.txt"),
        root / ".circleci" / "config.yml": _fill(_template("circleci.yml"), values),
    }
    for env, level in (("staging", "debug"), ("prod", "info")):
        files[service / "deploy" / f"{env}.json"] = _fill(
            _template("environment.json"), {"environment": env, "log_level": level}
        )
    notes = []
    if (service / "Dockerfile").exists():
        notes.append(
            f"kept {_shown(root, service / 'Dockerfile')} (check it EXPOSEs {c.port} and starts "
            f"with CMD {values['cmd']}, as serve_command does)"
        )
    else:
        files[service / "Dockerfile"] = _fill(_template(dockerfile_template(service)), values)
    if c.service_dir == ".":
        # The repository is the build context: keep its tooling out of the image.
        files[service / ".dockerignore"] += ".circleci\n*.md\ntasks.py\nlocal.env.example\n.gitignore\n"
    if not pinned:
        notes.append(f"this ecs-pipeline ({version}) is not a release: pin a tag in .circleci/config.yml")

    project = root / PROJECT_FILE
    before = project.read_text() if project.exists() else None
    prefix = name_from_project(root)
    text = project_file_text(before, pipeline_section(c, prefix, command), force)
    existing = [_shown(root, p) for p in files if p.exists()]
    if text is None:
        existing.insert(0, f"[tool.pipeline] in {PROJECT_FILE}")
    if existing and not force:
        raise ConfigError(
            f"init would overwrite {', '.join(existing)}; pass --overwrite to replace them (nothing was written)"
        )
    files[project] = str(text)
    ignore = root / ".gitignore"
    ignored = gitignore_text(ignore.read_text() if ignore.exists() else None)
    if ignored is not None:
        files[ignore] = ignored  # extended, never replaced: no --overwrite needed
    return files, notes


def _shown(root: Path, path: Path) -> str:
    return str(path.relative_to(root))


def run(
    root: Path, options: InitOptions, version: str, say: Any = print, source: str | None = None
) -> list[Path]:
    """Scaffold `root`; returns the files written. `source`: the package's source repository
    (its metadata's Source URL), which CI installs a tag of."""
    checked = check_options(options)
    if (root / checked.service_dir).exists() and not (root / checked.service_dir).is_dir():
        raise ConfigError(f"--service-dir {checked.service_dir}: exists and is not a directory")
    files, notes = plan_files(root, checked, version, options.force, source)
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    say(f"ecs-pipeline init ({version}) wrote:")
    for path in sorted(files, key=lambda p: _shown(root, p)):
        say(f"  {_shown(root, path)}")
    for note in notes:
        say(f"note: {note}")
    say("next:")
    for line in next_commands(checked):
        say(f"  {line}")
    return sorted(files)


def next_commands(c: Checked) -> list[str]:
    """What to run next, in an order that works from a fresh checkout (the README's order)."""
    return [
        "cp local.env.example local.env      # settings for serve and pull-and-run (git ignores it)",
        "git add -A && git commit -m 'Deploy with ecs-pipeline'   # the image tag is the commit",
        "ecs-pipeline plan                   # what CI does for a push of this branch",
        "ecs-pipeline test && ecs-pipeline build",
        'ecs-pipeline stack.up && eval "$(ecs-pipeline stack.env)"   # the local stack, no AWS account',
        "ecs-pipeline dockerize && ecs-pipeline setup && ecs-pipeline push && ecs-pipeline setup --env prod",
        "ecs-pipeline deploy --env prod && ecs-pipeline status --env prod",
        f"ecs-pipeline pull-and-run --latest  # the image on 127.0.0.1:{c.port}{c.base_path}",
    ]
