"""The CI steps: their names in order, the `invoke` command each runs, which need an environment.

The one registry the policy (config), the plan and `invoke ci` (ci.RUNNERS) share."""

from __future__ import annotations

# The `invoke` command each step runs; {sha} and {env} are filled in per plan.
COMMANDS: dict[str, tuple[str, ...]] = {
    "test": ("invoke", "test"),
    "build": ("invoke", "build"),
    "dockerize": ("invoke", "dockerize", "--sha", "{sha}"),
    "push": ("invoke", "push", "--sha", "{sha}"),
    "deploy": ("invoke", "deploy", "--env", "{env}", "--sha", "{sha}"),
    "integration": ("invoke", "integration", "--env", "{env}"),
}
STEP_NAMES: tuple[str, ...] = tuple(COMMANDS)
# Steps that act on an environment: a plan with one of these must name it.
ENVIRONMENT_STEPS = frozenset({"deploy", "integration"})
