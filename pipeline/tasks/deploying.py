"""Deploys and what surrounds them: release, rollback, smoke, integration, status, one-off tasks, logs."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from invoke import Exit

from ..output import Output
from ._base import JSON_LOGS, context, project_root, task, verb

_DEPLOY_HELP = {
    "env": "environment to deploy to (prod, staging, or one from [tool.pipeline.environments])",
    "sha": "commit whose image to deploy (default: CIRCLE_SHA1, else git HEAD); it must be in ECR",
    "timeout": "seconds to wait for the rollout before failing (default 600)",
    "rollback_timeout": "seconds to wait for the rollback after a failure (default 0: as long as --timeout)",
    "dry_run": "print the rendered task definition and its diff against the live one; change nothing",
    "no_rollback": "on failure leave the new revision in place instead of rolling back",
    "no_smoke": "skip the smoke test after the rollout",
    "smoke_url": "smoke-test this URL instead of discovering the ALB's (e.g. http://127.0.0.1:8080/orders/)",
    "wait": "when another rollout of the service is in progress, wait for it to end (within --timeout), then go",
    "force": "when another rollout of the service is in progress, replace it (default: refuse and name it)",
    "json_logs": JSON_LOGS,
}


@task(help=_DEPLOY_HELP)
@verb
def deploy(
    c,
    env,
    sha=None,
    timeout=600,
    rollback_timeout=0.0,
    dry_run=False,
    no_rollback=False,
    no_smoke=False,
    smoke_url=None,
    wait=False,
    force=False,
    json_logs=False,
):
    """Deploy a pushed image to an ECS environment: render, register, update, wait, smoke-test."""
    from pipeline import deploy as deploying
    from pipeline import interrupts
    from pipeline.safety import Busy

    ctx = context(json_logs, sha, env)
    options = deploying.DeployOptions(
        env,
        sha,
        timeout=float(timeout),
        rollback_timeout=float(rollback_timeout) or None,
        dry_run=dry_run,
        rollback=not no_rollback,
        smoke=not no_smoke,
        smoke_url=smoke_url,
        busy=Busy.from_flags(wait, force),
    )
    with interrupts.cancellable():  # SIGTERM before the wait (a migration, say) as Ctrl-C
        deploying.deploy(ctx, options)


@task(
    help={
        "env": "environment to release to (every service's own settings for it)",
        "file": "the release file (TOML): one [[service]] table per service with prefix and sha",
        "parallel": "update at most this many services at once (default 4)",
        "timeout": "seconds to wait for all rollouts (default 600)",
        "rollback_timeout": "seconds to wait for the rollbacks after a failure (default 0: as long as --timeout)",
        "no_smoke": "skip the smoke tests after the rollouts",
        "dry_run": "print the release plan; register and update nothing",
        "json": "print the plan (dry run) or the result table as JSON on stdout; progress goes to stderr",
        "json_logs": JSON_LOGS,
    }
)
@verb
def release(
    c,
    env,
    file,
    parallel=4,
    timeout=600,
    rollback_timeout=0.0,
    no_smoke=False,
    dry_run=False,
    json=False,
    json_logs=False,
):
    """Release several services as one: validate all, update all, wait batched, roll all back on failure."""
    import json as jsonlib

    from pipeline import release as releasing
    from pipeline.errors import ConfigError

    prefix, project = releasing.first_service(Path(file))
    try:
        home: Path | None = project_root()
    except ConfigError:
        if project is None:
            raise
        home = None  # a third directory: every service names its repository
    options = releasing.ReleaseOptions(
        env,
        Path(file),
        int(parallel),
        float(timeout),
        float(rollback_timeout) or None,
        smoke=not no_smoke,
        dry_run=dry_run,
        home=home,
        in_repository=home is not None,
    )
    # The release's own settings (region, markers) are its first service's.
    ctx = context(json_logs, environment=env, prefix=prefix, root=(project or home))
    if json:
        ctx.out = Output(stream=sys.stderr, json_logs=ctx.out.json_logs, context=ctx.out.context)
    from pipeline import interrupts

    try:
        with interrupts.cancellable():  # CircleCI's cancel (SIGTERM) is handled as Ctrl-C is
            result = releasing.release(ctx, options)
    except releasing.ReleaseFailed as exc:
        if json:
            print(jsonlib.dumps(releasing.to_json(exc.rows), indent=2))
        raise
    if json:
        shown = result.to_json() if isinstance(result, releasing.ReleasePlan) else releasing.to_json(result)
        print(jsonlib.dumps(shown, indent=2))


@task(
    help={
        "env": "environment to roll back",
        "to": "revision to return to: a number, family:revision or ARN (default: the last verified one)",
        "timeout": _DEPLOY_HELP["timeout"],
        "rollback_timeout": _DEPLOY_HELP["rollback_timeout"],
        "no_smoke": _DEPLOY_HELP["no_smoke"],
        "smoke_url": _DEPLOY_HELP["smoke_url"],
        "dry_run": "print which revision it would return to; change nothing",
        "wait": _DEPLOY_HELP["wait"],
        "force": _DEPLOY_HELP["force"],
        "json_logs": JSON_LOGS,
    }
)
@verb
def rollback(
    c,
    env,
    to=None,
    timeout=600,
    rollback_timeout=0.0,
    no_smoke=False,
    smoke_url=None,
    dry_run=False,
    wait=False,
    force=False,
    json_logs=False,
):
    """Redeploy an earlier revision (default: the last verified one) through the deploy path."""
    from pipeline import deploy as deploying
    from pipeline import interrupts
    from pipeline.safety import Busy

    ctx = context(json_logs, environment=env)
    options = deploying.DeployOptions.rollback_to(
        env,
        to,
        timeout=float(timeout),
        rollback_timeout=float(rollback_timeout) or None,
        smoke=not no_smoke,
        smoke_url=smoke_url,
        dry_run=dry_run,
        busy=Busy.from_flags(wait, force),
    )
    with interrupts.cancellable():  # SIGTERM before the wait (a migration, say) as Ctrl-C
        deploying.deploy(ctx, options)


@task(
    help={
        "env": "environment whose service to test",
        "url": "test this URL instead of discovering the ALB's",
        "timeout": "seconds to keep retrying (default: [tool.pipeline.smoke] timeout, 60)",
        "json_logs": JSON_LOGS,
    }
)
@verb
def smoke(c, env, url=None, timeout=None, json_logs=False):
    """Smoke-test an environment through its ALB: GET the base path, expect the configured answer."""
    from pipeline import smoke as smoking

    ctx = context(json_logs, environment=env)
    with ctx.out.step(f"smoke test {env}"):
        target = url or smoking.discover_url(ctx.settings, ctx.settings.environment(env), ctx.clients)
        expect = (
            ctx.settings.smoke if timeout is None else replace(ctx.settings.smoke, timeout=float(timeout))
        )
        smoking.check(target, expect, ctx.out.detail)


@task(
    help={
        "env": "environment to test",
        "url": "base URL to test instead of discovering the ALB's",
        "json_logs": JSON_LOGS,
    }
)
@verb
def integration(c, env, url=None, json_logs=False):
    """Run the project's integration tests (`integration_command`) against an environment's base URL."""
    from pipeline import smoke as smoking
    from pipeline import verbs

    ctx = context(json_logs, environment=env)
    with ctx.out.step(f"integration tests against {env}"):
        # Without an integration_command there is nothing to point at a URL: skipped.
        needed = bool(ctx.settings.integration_command)
        target = url or (
            smoking.discover_url(ctx.settings, ctx.settings.environment(env), ctx.clients) if needed else ""
        )
        verbs.integration(ctx, target)


@task(help={"env": "environment to show", "json": "print one JSON object instead of text"})
@verb
def status(c, env, json=False):
    """Show what runs in an environment: revision, image, sha, rollout state, counts, last events."""
    import json as jsonlib
    from datetime import datetime

    from pipeline import ecs
    from pipeline.output import when

    ctx = context()
    environment = ctx.settings.environment(env)
    report = ecs.status(ctx.clients, environment.cluster, environment.service)
    if json:
        print(jsonlib.dumps(report, indent=2))
        return
    print(f"{env}: {report['service']} in {report['cluster']} runs {report['revision']}")
    print(f"  image  {', '.join(report['images'])}")
    print(f"  sha    {report['sha'] or 'unknown'} (verified: {report['verifiedAt'] or 'no'})")
    print(
        f"  tasks  running {report['runningCount']}/{report['desiredCount']}, pending {report['pendingCount']}, rollout {report['rolloutState'] or 'n/a'}"
    )
    for line in report["deployments"]:
        print(f"  deployment {line}")
    found = report["serviceDeployment"]
    if found:
        why = found["rollbackReason"] or found["statusReason"]
        print(
            f"  {report['strategy']} service deployment {found['status']} at {found['lifecycleStage']}"
            + (f": {why}" if why else "")
            + f" ({found['arn']})"
        )
    for event in report["events"]:
        at = when(datetime.fromisoformat(event["at"])) if event["at"] else "(no time)"
        print(f"  {at}  {event['message']}")


@task(
    help={
        "env": "environment whose task definition, cluster and network configuration to use",
        "sha": "run the image of this commit: render and register its revision (tagged as a deploy's) "
        "without touching the service (default: the revision the service runs now)",
        "timeout": "seconds to wait for the task to stop (default 600); it keeps running after",
        "no_wait": "print the task ARN and return; do not wait or stream its log",
        "stop_on_interrupt": "on Ctrl-C stop the task without asking",
    }
)
@verb
def run_task(c, env, sha=None, timeout=600, no_wait=False, stop_on_interrupt=False):
    """Run a one-off task: `invoke run-task --env prod -- COMMAND...`; exits with its exit code."""
    from pipeline import interrupts, runtask

    # Invoke joins the words after `--` into one string; the raw argv keeps them apart.
    command = runtask.command_words(sys.argv)
    ctx = context(environment=env)
    options = runtask.RunOptions(env, command, sha, float(timeout), not no_wait, stop_on_interrupt)
    with interrupts.cancellable():  # CircleCI's cancel (SIGTERM) is handled as Ctrl-C is
        result = runtask.run(ctx, options)
    if isinstance(result, runtask.Finished) and result.exit_code:
        raise Exit(code=result.exit_code)


@task(
    help={
        "env": "environment whose service's logs to show",
        "since": "how far back: 30s, 10m, 2h, 1d (default 10m)",
        "follow": "keep printing new lines (and new tasks') until Ctrl-C",
        "task": "only this task's lines (its id or ARN)",
        "json": "one JSON object a line on stdout: time, task, container, message (notes go to stderr)",
    }
)
@verb
def logs(c, env, since="10m", follow=False, task=None, json=False):
    """Show a service's recent log lines from CloudWatch Logs, with task id and container on each."""
    from pipeline import logs as reading

    reading.show(context(environment=env), env, since, follow, task, as_json=json)
