"""`invoke ci`: execute the plan for the current CI ref, step by step, then a summary.

The steps call the same verbs a person's tasks call (verbs, deploy), in the plan's
order, stopping at the first failure. Everything that can be checked is checked
before the first step runs: the CI variables, the ref, the environment and its
task definition template.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import ci_identity, deploy, plan, smoke, taskdef, verbs
from .context import Context
from .errors import ConfigError, PipelineError
from .git import Revision, validate_sha


@dataclass(frozen=True)
class StepResult:
    name: str
    status: str  # ok | failed | skipped
    seconds: float


@dataclass(frozen=True)
class Options:
    """How deploy-type steps run; CI uses the defaults."""

    timeout: float = 600.0
    base_url: str | None = None  # smoke/integration target instead of the ALB's URL
    sleep: Callable[[float], None] = time.sleep


def ci_ref(
    environ: Mapping[str, str], branch: str | None, tag: str | None, sha: str | None
) -> tuple[str, str, str]:
    """(kind, ref, sha) from the flags or CircleCI's variables (plan.find_ref, without git:
    CI names what it builds); every missing one named."""
    problems = []
    found = None
    try:
        found = plan.find_ref(environ, branch, tag)
    except ConfigError as exc:
        problems += exc.problems
    else:
        if found is None:
            problems.append(
                "CIRCLE_BRANCH or CIRCLE_TAG: must be set (CircleCI sets them), or pass --branch/--tag"
            )
    commit = sha or environ.get("CIRCLE_SHA1", "")
    if not commit:
        problems.append("CIRCLE_SHA1: must be set (CircleCI sets it), or pass --sha")
    if problems or found is None:
        raise ConfigError(problems)
    return found[0], found[1], validate_sha(commit, "--sha" if sha else "CIRCLE_SHA1")


def preflight(ctx: Context, the_plan: plan.Plan, revision: Revision) -> None:
    """Fail before the first step on what a later step would trip over."""
    if the_plan.environment is None:
        return
    # --branch/--tag may name another ref than the job's own: CircleCI's ref decides.
    ci_identity.require_ci_ref(ctx.settings.ci, ctx.environ, the_plan.environment)
    ci_identity.require_reviewed_commit(
        ctx.settings.root, ctx.settings.ci, ctx.environ, the_plan.environment, revision.sha
    )
    environment = ctx.settings.environment(the_plan.environment)
    taskdef.load_template(environment.template)
    taskdef.load_values(environment.values)


def _url(ctx: Context, env: str, options: Options) -> str:
    return options.base_url or smoke.discover_url(
        ctx.settings, ctx.settings.environment(env), ctx.clients, "pass --base-url URL"
    )


Runner = Callable[[Context, plan.Plan, Revision, Options], object]
# One runner per step of pipeline/steps.py, in its order (tests/test_ci.py holds them together).
RUNNERS: dict[str, Runner] = {
    "test": lambda ctx, p, r, o: verbs.test(ctx),
    "build": lambda ctx, p, r, o: verbs.build(ctx),
    "dockerize": lambda ctx, p, r, o: verbs.dockerize(ctx, r),
    "push": lambda ctx, p, r, o: verbs.push(ctx, r),
    "deploy": lambda ctx, p, r, o: deploy.deploy(
        ctx,
        deploy.DeployOptions(
            str(p.environment), r.sha, timeout=o.timeout, smoke_url=o.base_url, sleep=o.sleep
        ),
    ),
    "integration": lambda ctx, p, r, o: verbs.integration(ctx, _url(ctx, str(p.environment), o)),
}


def run(ctx: Context, the_plan: plan.Plan, revision: Revision, options: Options) -> list[StepResult]:
    """Run the steps in order; raises the first failure after printing the summary."""
    preflight(ctx, the_plan, revision)
    if not the_plan.steps:
        ctx.out.say(f"nothing to do for {the_plan.kind} {the_plan.ref}: {the_plan.reason}")
    results: list[StepResult] = []
    failure: PipelineError | None = None
    for name in the_plan.steps:
        if failure is not None:
            results.append(StepResult(name, "skipped", 0.0))
            continue
        started = time.monotonic()
        try:
            with ctx.out.step(name):
                RUNNERS[name](ctx, the_plan, revision, options)
        except PipelineError as exc:
            failure = exc
            results.append(StepResult(name, "failed", time.monotonic() - started))
        else:
            status = ctx.out.steps[-1].status if ctx.out.steps else "ok"  # "skipped": nothing to run
            results.append(StepResult(name, status, time.monotonic() - started))
    for line in summary(the_plan, results):
        ctx.out.say(line)
    if failure is not None:
        raise failure
    return results


def summary(the_plan: plan.Plan, results: list[StepResult]) -> list[str]:
    """The table CI ends with: step, status, duration."""
    lines = [f"ci {the_plan.kind} {the_plan.ref} → {the_plan.environment or 'no environment'}"]
    lines.append(f"  {'step':<12} {'status':<8} {'duration':>9}")
    lines += [f"  {r.name:<12} {r.status:<8} {r.seconds:>8.1f}s" for r in results]
    verdict = "failed" if any(r.status == "failed" for r in results) else "passed"
    lines.append(f"  {'total':<12} {verdict:<8} {sum(r.seconds for r in results):>8.1f}s")
    lines += [f"  left out: {step} ({why})" for step, why in the_plan.left_out]
    return lines
