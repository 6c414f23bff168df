"""The installed distribution: its version and source repository (for --version, init and `invoke version`)."""

from __future__ import annotations


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("ecs-pipeline")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def source() -> str | None:
    """The package's source repository (its Source project URL), where its tags live."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("ecs-pipeline").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    return next((url.split(",", 1)[1].strip() for url in urls if url.lower().startswith("source,")), None)
