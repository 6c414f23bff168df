"""The CI steps: their names in the pipeline's order, the `invoke` command each runs, and
which act on an environment. The one registry the policy, the plan and `invoke ci` share."""

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
