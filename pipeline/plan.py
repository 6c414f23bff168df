"""The CI policy: which steps run, and where they deploy, for a git ref.

The seed's flow as one pure function, `make(kind, name, policy) -> Plan`, so what CI
does for a push can be asked (`invoke plan`) and tested before anything runs.
`step_commands` says which `invoke` command runs each step: `invoke plan` prints them,
.circleci/config.yml runs exactly them (tests/test_circleci.py holds the two together),
and `invoke ci` executes them. `for_ci` is the one impure helper: it finds the ref and
commit from CI's variables or git.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import git, migrate
from .config.settings import CIPolicy
from .errors import ConfigError
from .git import Kind, ref_problem
from .steps import COMMANDS, ENVIRONMENT_STEPS

# What a step's command looks like where the commit is not known (CI always knows it).
SHA_PLACEHOLDER = "$CIRCLE_SHA1"


@dataclass(frozen=True)
class Plan:
    """What CI does for one ref; `reason` says which rule of the policy chose it."""

    ref: str
    kind: Kind
    environment: str | None
    steps: tuple[str, ...]
    reason: str
    left_out: tuple[tuple[str, str], ...] = ()  # (step, why) the policy named but this plan skips


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


def validate_ref(name: str, kind: Kind, source: str | None = None) -> str:
    """`name` when it is a valid git ref name; else one ConfigError naming where it came from."""
    problem = ref_problem(name, kind)
    if problem:
        raise ConfigError(
            f"{source or kind} {name!r}: not a valid {kind} name ({problem}); "
            "git check-ref-format's rules apply"
        )
    return name


def make(kind: Kind, name: str, policy: CIPolicy, source: str | None = None) -> Plan:
    """The plan for a branch or tag under the project's policy (pure); steps the project
    cannot run (policy.left_out) are left out and named."""
    plan = _by_rule(kind, name, policy, source)
    why = dict(policy.left_out)
    gone = tuple((step, why[step]) for step in plan.steps if step in why)
    if not gone:
        return plan
    steps = tuple(step for step in plan.steps if step not in why)
    return Plan(plan.ref, plan.kind, plan.environment, steps, plan.reason, gone)


def _by_rule(kind: Kind, name: str, policy: CIPolicy, source: str | None) -> Plan:
    validate_ref(name, kind, source)
    if kind == "tag":
        # The longest matching suffix wins, so "-prod" and "-eu-prod" can differ.
        environments = dict(policy.tag_environments)
        suffix = max((s for s in environments if name.endswith(s)), key=len, default=None)
        if suffix is not None:
            return Plan(name, kind, environments[suffix], policy.tag_steps, f"ends in {suffix}")
        known = ", ".join(f"{s} → {e}" for s, e in policy.tag_environments) or "none configured"
        return Plan(name, kind, None, (), f"matches no deploy suffix ({known})")
    if name in policy.mainline_branches:
        mainline = f"a mainline branch ({', '.join(policy.mainline_branches)})"
        return Plan(name, kind, policy.mainline_environment, policy.mainline_steps, mainline)
    if policy.dev_suffix and name.endswith(policy.dev_suffix):
        return Plan(name, kind, None, policy.dev_steps, f"ends in {policy.dev_suffix}")
    return Plan(
        name,
        kind,
        None,
        policy.branch_steps,
        f"neither mainline ({', '.join(policy.mainline_branches) or 'none'})"
        + (f" nor ending in {policy.dev_suffix}" if policy.dev_suffix else ""),
    )


def step_commands(plan: Plan, sha: str = SHA_PLACEHOLDER) -> tuple[Step, ...]:
    """The `invoke` command each step of the plan runs, in order."""
    fill = {"sha": sha, "env": plan.environment or ""}
    if plan.environment is None and ENVIRONMENT_STEPS & set(plan.steps):
        # config.load_policy refuses such a policy; a Plan built by hand must not slip by.
        raise ConfigError(f"plan for {plan.kind} {plan.ref}: {', '.join(plan.steps)} need an environment")
    return tuple(Step(name, tuple(arg.format(**fill) for arg in COMMANDS[name])) for name in plan.steps)


def to_json(plan: Plan) -> dict[str, Any]:
    """The machine-readable form, exactly {ref, kind, environment, steps}."""
    return {"ref": plan.ref, "kind": plan.kind, "environment": plan.environment, "steps": list(plan.steps)}


def describe(
    plan: Plan, sha: str = SHA_PLACEHOLDER, dirty: bool = False, migrate_command: str = ""
) -> list[str]:
    """The human-readable plan: the ref and why, the environment, each step's command
    (and the deploy's migration step when the environment has a migrate_command)."""
    lines = [
        f"ref:         {plan.ref} ({plan.kind}): {plan.reason}",
        f"environment: {plan.environment or 'none (nothing is deployed)'}",
    ]
    left_out = [f"left out:    {step} ({why})" for step, why in plan.left_out]
    if not plan.steps:
        lines.append(f"steps:       none: CI does nothing for this {plan.kind}")
        return lines + left_out
    steps = step_commands(plan, sha)
    width = max(len(step.name) for step in steps)
    lines.append("steps:")
    for i, step in enumerate(steps, 1):
        lines.append(f"  {i}. {step.name:<{width}}  {step.command}")
        if step.name == "deploy" and migrate_command:
            lines.append(f"     {'':<{width}}  first {migrate.describe(migrate_command)}")
    lines += left_out
    if "deploy" in plan.steps and "push" not in plan.steps:
        lines.append(
            f"note: deploys the image already in ECR for {sha} (build once, deploy many): a mainline "
            "or dev-branch build of this commit pushes it; deploy stops before changing anything "
            "if it is missing"
        )
    if dirty and any(sha in step.argv for step in steps):
        lines.append("note: the work tree has uncommitted changes; CI builds the commit, not them")
    return lines


def find_ref(
    environ: Mapping[str, str], branch: str | None = None, tag: str | None = None, root: Path | None = None
) -> tuple[Kind, str, str] | None:
    """(kind, name, where it came from) of the ref being built: --branch or --tag, else
    CIRCLE_TAG, CIRCLE_BRANCH, else (given a work tree's root) git's tag or branch.
    None: no ref anywhere. `invoke plan` and `invoke ci` both ask here."""
    if branch is not None and tag is not None:
        raise ConfigError("--branch and --tag: give one of them, not both")
    if branch is not None:
        return "branch", branch, "--branch"
    if tag is not None:
        return "tag", tag, "--tag"
    found = git.ref(root, environ)
    if found is None:
        return None
    kind: Kind = "tag" if found[0] == "tag" else "branch"
    return kind, found[1], _source(kind, environ)


def for_ci(
    root: Path,
    environ: Mapping[str, str],
    policy: CIPolicy,
    branch: str | None = None,
    tag: str | None = None,
    sha: str | None = None,
) -> tuple[Plan, str, bool]:
    """The plan for --branch/--tag, else CI's ref (CIRCLE_TAG, CIRCLE_BRANCH), else git's;
    with the commit the commands name (--sha, CIRCLE_SHA1, HEAD) and whether the tree is dirty."""
    found = find_ref(environ, branch, tag, root)
    if found is None:
        raise ConfigError(
            "no ref: CIRCLE_TAG and CIRCLE_BRANCH are unset and git is on no branch or tag; "
            "pass --branch NAME or --tag NAME"
        )
    plan = make(*found[:2], policy, found[2])
    try:
        revision = git.current(root, environ, sha)
    except ConfigError:
        if sha or environ.get("CIRCLE_SHA1"):
            raise
        return plan, SHA_PLACEHOLDER, False  # not a git checkout: show CI's variable
    return plan, revision.sha, revision.dirty


def _source(kind: Kind, environ: Mapping[str, str]) -> str:
    """Where git.ref found the ref, for error messages."""
    if kind == "tag" and environ.get("CIRCLE_TAG"):
        return "CIRCLE_TAG"
    if kind == "branch" and environ.get("CIRCLE_BRANCH"):
        return "CIRCLE_BRANCH"
    return f"git's current {kind}"
