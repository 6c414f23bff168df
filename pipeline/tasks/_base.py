"""What every task shares: the project root, the Context, and errors turned into one line."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Exit

from ..clients import Clients
from ..errors import PipelineError, first_line
from ..output import Output

if TYPE_CHECKING:  # config (its validation patterns) loads when a task runs, not for --list
    from ..context import Context


def task(*args: Any, **kwargs: Any) -> Any:
    """Invoke's @task with long flags only. Invoke would give each flag the first free
    letter of its name, so `-t` meant --timeout in deploy and --to in rollback and `-f`
    four things, some of them Invoke's own flags (`-f` is --config before the task name);
    a long name means one thing in every task."""
    import invoke

    # No positional arguments: Invoke fills a positional before it looks at core flags, so
    # `invoke deploy --help` ran a deploy to an environment named "--help".
    options = {"auto_shortflags": False, "positional": [], **kwargs}
    if len(args) == 1 and callable(args[0]):  # bare @task
        return invoke.task(_numbers_from_text(args[0]), **options)
    return lambda fn: invoke.task(*args, **options)(_numbers_from_text(fn))


def _numbers_from_text(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Numeric flags reach Invoke as text and are parsed here: Invoke's own int() of
    `--timeout 180.0` raised a ValueError with a traceback before any task code ran."""
    signature = inspect.signature(fn)
    numeric = {n: type(p.default) for n, p in signature.parameters.items() if type(p.default) in (int, float)}
    if not numeric:
        return fn

    @functools.wraps(fn)
    def parsed(*args: Any, **kwargs: Any) -> Any:
        for name, kind in numeric.items():
            if isinstance(kwargs.get(name), str):
                kwargs[name] = _number(name, kwargs[name], kind)
        return fn(*args, **kwargs)

    parsed.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(default=str(p.default)) if p.name in numeric else p
            for p in signature.parameters.values()
        ]
    )
    return parsed


def _number(name: str, text: str, kind: type) -> int | float:
    flag = f"--{name.replace('_', '-')}"
    try:
        value = float(text)
    except ValueError:
        raise Exit(f"error: {flag} {text!r}: not a number", code=2) from None
    if name.endswith("timeout") and not value >= 0:  # `not >=`: NaN too
        raise Exit(f"error: {flag} {text!r}: give a number of seconds, 0 or more", code=2)
    if kind is int:
        if not value.is_integer():
            raise Exit(f"error: {flag} {text!r}: give a whole number", code=2)
        return int(value)
    return value


def project_root() -> Path:
    """The service repository the tasks act on, found from the working directory."""
    from .. import config

    return config.find_root(Path.cwd())


JSON_LOGS = (
    "also print one JSON line per finished step (step, service, environment, sha, status, "
    "duration, error) for CI log search; PIPELINE_JSON_LOGS=1 does the same"
)


def context(
    json_logs: bool = False,
    sha: str | None = None,
    environment: str | None = None,
    prefix: str | None = None,
    aws: bool = True,
    root: Path | None = None,
) -> Context:
    """The Context a task runs with; aws=False for tasks that name no AWS resource (build,
    test, serve), which then need no prefix. `root`: the project (default: found from the
    working directory)."""
    from .. import config
    from ..context import Context

    environ = os.environ if prefix is None else {"AWS_RESOURCE_NAME_PREFIX": prefix, **os.environ}
    settings = config.load(environ, root or project_root(), need_prefix=aws)
    use_json = json_logs or os.environ.get("PIPELINE_JSON_LOGS") == "1"
    ctx = Context(settings, Clients(region=settings.region), Output(json_logs=use_json), os.environ)
    if use_json:
        ctx.out.context.update(_log_fields(ctx, sha, environment))
    return ctx


def _log_fields(ctx: Context, sha: str | None, environment: str | None) -> dict[str, str | None]:
    """What every JSON step line carries besides the step itself."""
    try:
        commit: str | None = ctx.revision(sha).tag
    except PipelineError:
        commit = None  # no git and no CIRCLE_SHA1, or a bad --sha that the task itself reports
    return {"service": ctx.settings.prefix or None, "environment": environment, "sha": commit}


def verb(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn pipeline errors into one line on stderr and the error's exit code."""

    # Parameters without a default are required flags (see `task`): Invoke passes None when
    # one is missing, which must be the user's error, not an environment named "None".
    required = [
        name
        for name, p in list(inspect.signature(fn).parameters.items())[1:]
        if p.default is inspect.Parameter.empty and p.kind is not p.VAR_POSITIONAL
    ]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        missing = [f"--{n.replace('_', '-')}" for n in required if kwargs.get(n) is None]
        if missing:
            raise Exit(
                f"error: {', '.join(missing)} is required; see `invoke {fn.__name__.replace('_', '-')} --help`",
                code=2,
            )
        try:
            return fn(*args, **kwargs)
        except PipelineError as exc:
            if os.environ.get("PIPELINE_DEBUG"):
                raise
            raise Exit(f"error: {exc.message}", code=exc.exit_code) from None
        except KeyboardInterrupt as interrupt:
            from ..interrupts import signum_of

            raise Exit("interrupted", code=128 + signum_of(interrupt)) from None
        except BrokenPipeError:
            # The reader stopped reading (`invoke status | head`): not our error. Quiet, with
            # the exit code of a process ended by SIGPIPE; stdout goes to /dev/null so the
            # interpreter's last flush has nowhere to fail.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise Exit(code=141) from None
        except Exit:
            raise
        except Exception as exc:  # a bug or an outside failure nobody mapped: still one line
            if os.environ.get("PIPELINE_DEBUG"):
                raise
            first = first_line(str(exc), 300)
            raise Exit(
                f"error: unexpected {type(exc).__name__}: {first} (PIPELINE_DEBUG=1 shows the traceback)",
                code=1,
            ) from None

    return wrapper
