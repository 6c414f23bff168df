"""How a service starts: `init --command`, or what init finds in the service's files.

The command runs from the repository's root in both places it is used: as
`serve_command` on a laptop and as the image's CMD, whose WORKDIR holds the repository's
layout (the build context copied to /srv/<service_dir>). So one command, found once,
means the same thing in both. Pure functions over the paths they are given; the only
I/O is reading the service's own files.

Detected commands run `python3`: the official python images, Debian's python3 (the local
stack's base image) and every virtualenv have it, where `python` is missing on Debian.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath

from .errors import ConfigError

SCRIPTS = ("app.py", "main.py", "server.py")
SERVERS = ("gunicorn", "uvicorn", "hypercorn", "waitress")
_MAIN_GUARD = re.compile(r"""^if\s+__name__\s*==\s*["']__main__["']\s*:""", re.MULTILINE)
_APP_OBJECT = re.compile(
    r"^(\w+)\s*(?::[^=]+)?=\s*(?:\w+\.)?(Flask|FastAPI|Starlette|Quart|Sanic|Litestar|Falcon|App|"
    r"get_wsgi_application|get_asgi_application|create_app)\(",
    re.MULTILINE,
)
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
PYTHON = "python3"
FLAG_HINT = "pass --command with the service's start command, e.g. --command 'python3 -m yourservice'"


def parse(command: str) -> tuple[str, ...]:
    """--command as the exec-form words of the image's CMD (no shell runs it)."""
    try:
        words = tuple(shlex.split(command))
    except ValueError as exc:
        raise ConfigError(f"--command {command!r}: does not split into words ({exc})") from None
    if not words:
        raise ConfigError(f"--command {command!r}: empty; {FLAG_HINT}")
    if any("$" in word for word in words):
        raise ConfigError(
            f"--command {command!r}: the image runs it without a shell (exec form), so "
            "$VARIABLES would stay as written; read PORT and BASE_PATH in the service instead"
        )
    return words


def detect(root: Path, service_dir: str) -> tuple[str, ...]:
    """The start command init finds, or a ConfigError that says what it saw and names --command.

    In order: a package with __main__.py (the service directory itself, or a top-level
    package when the service directory is the repository) → `python3 -m <package>`; else one
    app.py/main.py/server.py with a `__main__` guard → `python3 <that file>`."""
    service = root / service_dir
    packages = [service] if service_dir != "." else sorted(p for p in service.iterdir() if p.is_dir())
    modules = [_module(root, p) for p in packages if (p / "__main__.py").is_file()]
    if len(modules) == 1:
        return (PYTHON, "-m", modules[0])
    if len(modules) > 1:
        shown = ", ".join(f"{PYTHON} -m {m}" for m in modules)
        raise ConfigError(f"init found several packages with __main__.py ({shown}); pass --command with one")
    scripts = [service / name for name in SCRIPTS if (service / name).is_file()]
    guarded = [s for s in scripts if _MAIN_GUARD.search(_read(s))]
    if len(guarded) == 1:
        return (PYTHON, _relative(root, guarded[0]))
    if len(guarded) > 1:
        shown = ", ".join(f"{PYTHON} {_relative(root, s)}" for s in guarded)
        raise ConfigError(f"init found several start scripts ({shown}); pass --command with one")
    server = _app_server(root, service)
    app = next(((s, m[1]) for s in scripts if (m := _APP_OBJECT.search(_read(s)))), None)
    if server and app:
        script, name = app
        target = f"{_module(root, script.with_suffix(''))}:{name}"
        example = f"{server} {target}" if server == "gunicorn" else f"{server} {target} --host 0.0.0.0"
        raise ConfigError(
            f"{service_dir}/ looks like a {server} service ({server} in its requirements, an app "
            f"object `{name}` in {_relative(root, script)}); init does not guess how to run it: "
            f"pass --command, e.g. --command '{example}' (listening on the container port)"
        )
    seen = ", ".join(_relative(root, s) for s in scripts) or "no app.py, main.py or server.py"
    raise ConfigError(
        f"init cannot tell how {service_dir}/ starts (no __main__.py; {seen} without an "
        f'`if __name__ == "__main__":` guard); {FLAG_HINT}'
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _module(root: Path, path: Path) -> str:
    """The dotted module of a path under the root (the image's WORKDIR is the root's layout)."""
    return ".".join(PurePosixPath(_relative(root, path)).parts)


def _app_server(root: Path, service: Path) -> str | None:
    """The WSGI/ASGI server the service's requirements name, if any."""
    names: set[str] = set()
    for directory in {root, service}:
        requirements = directory / "requirements.txt"
        for line in _read(requirements).splitlines() if requirements.is_file() else []:
            if (found := _REQUIREMENT_NAME.match(line)) and not line.lstrip().startswith("-"):
                names.add(found[1].lower())
        project = directory / "pyproject.toml"
        try:
            dependencies = tomllib.loads(_read(project)).get("project", {}).get("dependencies", [])
        except tomllib.TOMLDecodeError:
            dependencies = []
        for dependency in dependencies if isinstance(dependencies, list) else []:
            if isinstance(dependency, str) and (found := _REQUIREMENT_NAME.match(dependency)):
                names.add(found[1].lower())
    return next((s for s in SERVERS if s in names), None)
