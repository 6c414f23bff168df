"""The env file (local.env): where it is, and its KEY=VALUE lines read as `docker run --env-file` reads them."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError, first_line

DEFAULT_ENV_FILE = "local.env"


ENV_EXAMPLE = "local.env.example"


def env_file_path(settings: Settings, given: str | None) -> Path:
    """--env-file as given (relative to where the person is), else local.env in the project root."""
    return Path(given).expanduser() if given else settings.root / DEFAULT_ENV_FILE


def read_env_file(path: Path, environ: Mapping[str, str], example: Path) -> dict[str, str]:
    """KEY=VALUE lines, the format `docker run --env-file` takes, read with python-dotenv.

    No ${VAR} interpolation, so a `$` in a secret arrives as written; a bare `KEY` line
    takes KEY from the environment, as docker does. Malformed lines are errors with
    their line numbers, never skipped: a half-read file would run with wrong settings.
    """
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"env file {path} not found; start from the example (`cp {example} {path}`) "
            "or pass --env-file PATH"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"env file {path}: cannot be read ({first_line(exc)})") from None
    bad = [binding.original.line for binding in parse_stream(io.StringIO(text)) if binding.error]
    if bad:
        which = f"lines {', '.join(map(str, bad))} are" if len(bad) > 1 else f"line {bad[0]} is"
        raise ConfigError(f"env file {path}: {which} not KEY=VALUE; {example} shows the format")
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return {
        key: value if value is not None else environ[key]
        for key, value in values.items()
        if value is not None or key in environ
    }
