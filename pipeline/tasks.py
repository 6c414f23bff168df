"""The Invoke collection `ns`: one thin task per verb; the work lives in the verbs.

A service repository's tasks.py is `from pipeline.tasks import ns` (it may add its own
tasks to `ns`); the `ecs-pipeline` console script runs the same collection with no
tasks.py at all. The project is the nearest directory, from the working directory up,
whose pyproject.toml has a [tool.pipeline] section. Errors become one line and an exit
code (pipeline/errors.py); PIPELINE_DEBUG=1 shows tracebacks instead.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Collection, Exit, task

from .clients import Clients
from .errors import PipelineError, first_line
from .init import HELP as INIT_HELP
from .output import Output

if TYPE_CHECKING:  # config (its validation patterns) loads when a task runs, not for --list
    from .context import Context


def project_root() -> Path:
    """The service repository the tasks act on, found from the working directory."""
    from . import config

    return config.find_root(Path.cwd())


_JSON_LOGS = (
    "also print one JSON line per finished step (step, service, environment, sha, status, "
    "duration, error) for CI log search; PIPELINE_JSON_LOGS=1 does the same"
)


def _context(
    json_logs: bool = False, sha: str | None = None, environment: str | None = None, prefix: str | None = None
) -> Context:
    from . import config
    from .context import Context

    environ = os.environ if prefix is None else {"AWS_RESOURCE_NAME_PREFIX": prefix, **os.environ}
    settings = config.load(environ, project_root())
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
    return {"service": ctx.settings.prefix, "environment": environment, "sha": commit}


def verb(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn pipeline errors into one line on stderr and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PipelineError as exc:
            if os.environ.get("PIPELINE_DEBUG"):
                raise
            raise Exit(f"error: {exc.message}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
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


@task(help={"json_logs": _JSON_LOGS})
@verb
def build(c, json_logs=False):
    """Run the service's build step (the seed's build.sh; `build_command` in [tool.pipeline])."""
    from pipeline import verbs

    ctx = _context(json_logs)
    with ctx.out.step("build"):
        verbs.build(ctx)


@task(help={"json_logs": _JSON_LOGS})
@verb
def test(c, json_logs=False):
    """Run the service's unit tests (the seed's test.sh; `test_command` in [tool.pipeline])."""
    from pipeline import verbs

    ctx = _context(json_logs)
    with ctx.out.step("test"):
        verbs.test(ctx)


@task(
    help={
        "sha": "commit to tag the image with (default: CIRCLE_SHA1, else git HEAD; "
        "a dirty tree tags <sha>-dirty-<hash of the changes>)",
        "cache_from_ecr": "pull the newest image in ECR first and reuse its layers (CI machines "
        "start with an empty cache)",
        "json_logs": _JSON_LOGS,
    }
)
@verb
def dockerize(c, sha=None, cache_from_ecr=False, json_logs=False):
    """Build the service's image, tagged <repository>:<sha> (the seed's dockerize.sh)."""
    from pipeline import verbs

    ctx = _context(json_logs, sha)
    revision = ctx.revision(sha)
    with ctx.out.step(f"dockerize {revision.tag}"):
        verbs.dockerize(ctx, revision, verbs.cache_from_ecr(ctx) if cache_from_ecr else ())


@task(help={"sha": "commit whose image to push (default as for dockerize)", "json_logs": _JSON_LOGS})
@verb
def push(c, sha=None, json_logs=False):
    """Log in to ECR and push the image for a commit; prints the pushed digest."""
    from pipeline import verbs

    ctx = _context(json_logs, sha)
    revision = ctx.revision(sha)
    with ctx.out.step(f"push {revision.tag}"):
        verbs.push(ctx, revision)


@task(
    help={
        "branch": "plan for this branch (default: CIRCLE_TAG / CIRCLE_BRANCH, else git's tag or branch)",
        "tag": "plan for this tag",
        "sha": "commit the printed commands name (default: CIRCLE_SHA1, else git HEAD)",
        "json": 'print {"ref", "kind", "environment", "steps"} as JSON, for scripts',
    }
)
@verb
def plan(c, branch=None, tag=None, sha=None, json=False):
    """Show what CI does for a branch or tag: the steps, the environment, each step's command."""
    import json as jsonlib

    from pipeline import config, migrate
    from pipeline import plan as policy

    found, commit, dirty = policy.for_ci(
        project_root(), os.environ, config.load_policy(project_root()), branch, tag, sha
    )
    migration = migrate.commands(config.read_project_file(project_root())).get(found.environment or "", "")
    print(
        jsonlib.dumps(policy.to_json(found))
        if json
        else "\n".join(policy.describe(found, commit, dirty, migration))
    )


_DEPLOY_HELP = {
    "env": "environment to deploy to (prod, staging, or one from [tool.pipeline.environments])",
    "sha": "commit whose image to deploy (default: CIRCLE_SHA1, else git HEAD); it must be in ECR",
    "timeout": "seconds to wait for the rollout before failing (default 600)",
    "dry_run": "print the rendered task definition and its diff against the live one; change nothing",
    "no_rollback": "on failure leave the new revision in place instead of rolling back",
    "no_smoke": "skip the smoke test after the rollout",
    "smoke_url": "smoke-test this URL instead of discovering the ALB's (e.g. http://127.0.0.1:8080/orders/)",
    "wait": "when another rollout of the service is in progress, wait for it to end (within --timeout), then go",
    "force": "when another rollout of the service is in progress, replace it (default: refuse and name it)",
    "json_logs": _JSON_LOGS,
}


@task(help=_DEPLOY_HELP)
@verb
def deploy(
    c,
    env,
    sha=None,
    timeout=600,
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

    ctx = _context(json_logs, sha, env)
    options = deploying.DeployOptions(
        env,
        sha,
        timeout=float(timeout),
        dry_run=dry_run,
        rollback=not no_rollback,
        smoke=not no_smoke,
        smoke_url=smoke_url,
        wait=wait,
        force=force,
    )
    deploying.deploy(ctx, options)


@task(
    help={
        "env": "environment to release to (every service's own settings for it)",
        "file": "the release file (TOML): one [[service]] table per service with prefix and sha",
        "parallel": "update at most this many services at once (default 4)",
        "timeout": "seconds to wait for all rollouts, and again for the rollbacks (default 600)",
        "no_smoke": "skip the smoke tests after the rollouts",
        "dry_run": "print the release plan; register and update nothing",
        "json": "print the plan (dry run) or the result table as JSON on stdout; progress goes to stderr",
        "json_logs": _JSON_LOGS,
    }
)
@verb
def release(
    c, env, file, parallel=4, timeout=600, no_smoke=False, dry_run=False, json=False, json_logs=False
):
    """Release several services as one: validate all, update all, wait batched, roll all back on failure."""
    import json as jsonlib

    from pipeline import release as releasing

    options = releasing.ReleaseOptions(
        env, Path(file), int(parallel), float(timeout), smoke=not no_smoke, dry_run=dry_run
    )
    ctx = _context(json_logs, environment=env, prefix=releasing.first_prefix(options.file))
    if json:
        ctx.out = Output(stream=sys.stderr, json_logs=ctx.out.json_logs, context=ctx.out.context)
    try:
        result = releasing.release(ctx, options)
    except PipelineError as exc:
        if json and getattr(exc, "rows", None):
            print(jsonlib.dumps(releasing.to_json(exc.rows), indent=2))  # type: ignore[attr-defined]
        raise
    if json:
        shown = result.to_json() if isinstance(result, releasing.ReleasePlan) else releasing.to_json(result)
        print(jsonlib.dumps(shown, indent=2))


@task(
    help={
        "env": "environment to roll back",
        "to": "revision to return to: a number, family:revision or ARN (default: the last verified one)",
        "timeout": _DEPLOY_HELP["timeout"],
        "no_smoke": _DEPLOY_HELP["no_smoke"],
        "smoke_url": _DEPLOY_HELP["smoke_url"],
        "dry_run": "print which revision it would return to; change nothing",
        "wait": _DEPLOY_HELP["wait"],
        "force": _DEPLOY_HELP["force"],
        "json_logs": _JSON_LOGS,
    }
)
@verb
def rollback(
    c,
    env,
    to=None,
    timeout=600,
    no_smoke=False,
    smoke_url=None,
    dry_run=False,
    wait=False,
    force=False,
    json_logs=False,
):
    """Redeploy an earlier revision (default: the last verified one) through the deploy path."""
    from pipeline import deploy as deploying

    ctx = _context(json_logs, environment=env)
    options = deploying.DeployOptions.rollback_to(
        env,
        to,
        timeout=float(timeout),
        smoke=not no_smoke,
        smoke_url=smoke_url,
        dry_run=dry_run,
        wait=wait,
        force=force,
    )
    deploying.deploy(ctx, options)


@task(
    help={
        "env": "environment whose service to test",
        "url": "test this URL instead of discovering the ALB's",
        "timeout": "seconds to keep retrying (default: [tool.pipeline.smoke] timeout, 60)",
        "json_logs": _JSON_LOGS,
    }
)
@verb
def smoke(c, env, url=None, timeout=None, json_logs=False):
    """Smoke-test an environment through its ALB: GET the base path, expect the configured answer."""
    from pipeline import smoke as smoking

    ctx = _context(json_logs, environment=env)
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
        "json_logs": _JSON_LOGS,
    }
)
@verb
def integration(c, env, url=None, json_logs=False):
    """Run the project's integration tests (`integration_command`) against an environment's base URL."""
    from pipeline import smoke as smoking
    from pipeline import verbs

    ctx = _context(json_logs, environment=env)
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

    from pipeline import ecs

    ctx = _context()
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
    for event in report["events"]:
        print(f"  {event['at']}  {event['message']}")


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
    from pipeline import runtask

    # Invoke joins the words after `--` into one string; the raw argv keeps them apart.
    command = runtask.command_words(sys.argv)
    ctx = _context(environment=env)
    options = runtask.RunOptions(env, command, sha, float(timeout), not no_wait, stop_on_interrupt)
    result = runtask.run(ctx, options)
    if isinstance(result, runtask.Finished) and result.exit_code:
        raise Exit(code=result.exit_code)


@task(
    help={
        "env": "environment whose service's logs to show",
        "since": "how far back: 30s, 10m, 2h, 1d (default 10m)",
        "follow": "keep printing new lines (and new tasks') until Ctrl-C",
        "task": "only this task's lines (its id or ARN)",
    }
)
@verb
def logs(c, env, since="10m", follow=False, task=None):
    """Show a service's recent log lines from CloudWatch Logs, with task id and container on each."""
    from pipeline import logs as reading

    reading.show(_context(environment=env), env, since, follow, task)


# --- local debugging -------------------------------------------------------------


@task(
    auto_shortflags=False,  # -h would be --highest-version, not help
    help={
        "sha": "run the image of this commit: a full sha or a unique prefix",
        "latest": "run the most recently pushed image (its local copy is removed first)",
        "highest_version": "run the image with the highest semantic-version tag (v1.10.0 beats v1.9.2)",
        "env_file": "KEY=VALUE file for the container (default local.env; see local.env.example)",
        "port": "answer on 127.0.0.1:PORT (default: container_port from [tool.pipeline])",
        "detach": "leave the container running and print how to stop it",
        "dry_run": "print which image would run and how; pull and start nothing",
    },
)
@verb
def pull_and_run(
    c, sha=None, latest=False, highest_version=False, env_file=None, port=None, detach=False, dry_run=False
):
    """Run an image from ECR on this machine (the seed's local-docker.sh): select, pull, verify, run."""
    from pipeline import local, selection

    selector = selection.parse_selector(sha, latest, highest_version)
    local.pull_and_run(_context(), selector, env_file, port, detach, dry_run)


@task(help={"json": "print a JSON list of {tags, digest, pushed_at, size}, for scripts"})
@verb
def images(c, json=False):
    """List the images ECR holds for the repository: tags, digest, push time, size; newest first."""
    from pipeline import local

    local.show_images(_context(), json)


@task(help={"env_file": "KEY=VALUE file to load (default local.env; see local.env.example)"})
@verb
def serve(c, env_file=None):
    """Run the service without Docker, with local.env loaded (`serve_command` in [tool.pipeline])."""
    from pipeline import local

    local.serve(_context(), env_file)


# --- infrastructure (CloudFormation) ----------------------------------------------


@task(
    help={
        "env": "also set up this environment's stack (prod, staging...); without it only the project stack",
        "dry_run": "show the change sets (and parameters), then delete them; change nothing",
        "image_tag": "image the service starts with when setup creates it (default: the newest in ECR)",
        "timeout": "seconds to wait for CloudFormation per stack (default 3600)",
        "json": "print what each stack did (changes, outputs) as JSON on stdout; progress goes to stderr",
    }
)
@verb
def setup(c, env=None, dry_run=False, image_tag=None, timeout=3600, json=False):
    """Create or update the project's AWS infrastructure through CloudFormation change sets."""
    import json as jsonlib

    from pipeline import infra

    ctx = _context()
    if json:
        ctx.out = Output(stream=sys.stderr)
    result = infra.setup(ctx, env, dry_run, image_tag, float(timeout))
    if json:
        print(jsonlib.dumps(result, indent=2))


@task(
    help={
        "env": "environment whose stack to delete (the project stack goes with the last one); "
        "without it only the project stack, once no environment is left",
        "yes": "do not ask for confirmation (for scripts)",
        "force": "also delete the ECR repository and its images when the project stack goes",
        "timeout": "seconds to wait for CloudFormation per stack (default 3600)",
    }
)
@verb
def teardown(c, env=None, yes=False, force=False, timeout=3600):
    """Delete an environment's stack after confirmation; ECR images are kept unless --force."""
    from pipeline import infra

    ctx = _context()
    infra.teardown(ctx, env, force, infra.ask(yes), float(timeout))


@task(
    help={
        "branch": "run the plan for this branch instead of CIRCLE_BRANCH",
        "tag": "run the plan for this tag instead of CIRCLE_TAG",
        "sha": "commit to build or deploy instead of CIRCLE_SHA1",
        "dry_run": "print the plan and each step's command; run nothing",
        "base_url": "smoke-test and integration-test this base URL instead of discovering the ALB's",
        "timeout": "seconds a deploy may wait for its rollout (default 600)",
        "json_logs": _JSON_LOGS,
    }
)
@verb
def ci(c, branch=None, tag=None, sha=None, dry_run=False, base_url=None, timeout=600, json_logs=False):
    """Run the CI plan for the current ref (CircleCI's variables) step by step, with a summary."""
    from pipeline import ci as running
    from pipeline import plan as planning
    from pipeline.git import Revision

    kind, ref, commit = running.ci_ref(os.environ, branch, tag, sha)
    ctx = _context(json_logs, sha=commit)
    the_plan = planning.make(kind, ref, ctx.settings.ci)  # type: ignore[arg-type]
    if dry_run:
        migration = (
            ctx.settings.environment(the_plan.environment).migrate_command if the_plan.environment else ""
        )
        print("\n".join(planning.describe(the_plan, commit, migrate_command=migration)))
        return
    running.run(ctx, the_plan, Revision(commit), running.Options(float(timeout), base_url))


@task(
    help={
        "port": "port on 127.0.0.1 where the deployed image answers at the end (default 8080)",
        "failure": "then deploy a broken image (exits 3 at start): see it caught and rolled back",
    }
)
@verb
def demo(c, port=8080, failure=False):
    """Run the whole mainline flow for this service on the local stack, no AWS account needed."""
    from pipeline import demo as demoing
    from pipeline import stack

    cfg = stack.config_from(os.environ)
    stack.up(cfg)
    os.environ.update(stack.env(cfg, os.environ))
    if not os.environ.get("AWS_RESOURCE_NAME_PREFIX", "").strip():
        # The local stack sets no prefix (it would name another service's resources).
        os.environ["AWS_RESOURCE_NAME_PREFIX"] = demoing.default_prefix(project_root())
        print(
            f"AWS_RESOURCE_NAME_PREFIX is not set: the demo uses {os.environ['AWS_RESOURCE_NAME_PREFIX']} "
            "(from the project's name); export it to choose another"
        )
    demoing.run(_context(), int(port), failure=failure)


# --- the local stack ------------------------------------------------------------


@task(name="up")
@verb
def stack_up(c):
    """Install where missing and start the local stack: Docker engine, registry, AWS emulator."""
    from pipeline import stack

    stack.up(stack.config_from(os.environ))
    print('ready: eval "$(invoke stack.env)" points the tasks at it')


@task(name="down")
@verb
def stack_down(c):
    """Stop what `stack.up` started (never a Docker engine it found running)."""
    from pipeline import stack

    stack.down(stack.config_from(os.environ))


@task(name="env")
def stack_env(c):
    """Print the variables that point the tasks at the local stack: eval "$(invoke stack.env)"."""
    from pipeline import stack

    variables = stack.env(stack.config_from(os.environ), os.environ)
    sys.stdout.write("".join(f"export {key}={value}\n" for key, value in variables.items()))


@task(help=INIT_HELP)
@verb
def init(
    c,
    service_dir=".",
    port=None,  # a string, checked by init itself: a bad value gets its one-line error
    base_path="/",
    health_path=None,
    smoke_text=None,
    build_command=None,
    test_command=None,
    force=False,
):
    """Scaffold this repository for the pipeline: tasks.py, settings, templates, Dockerfile, CI."""
    from pipeline import init as scaffolding
    from pipeline.cli import version as installed

    flags = (service_dir, port, base_path, health_path, smoke_text, build_command, test_command, force)
    scaffolding.run(Path.cwd(), scaffolding.InitOptions(*flags), installed())


@task
def version(c):
    """Print the installed ecs-pipeline version (pin it in your CI config and requirements)."""
    from pipeline.cli import version as installed

    print(f"ecs-pipeline {installed()}")


stack_ns = Collection("stack", stack_up, stack_down, stack_env)
ns = Collection(
    build,
    test,
    dockerize,
    push,
    deploy,
    release,
    rollback,
    smoke,
    integration,
    status,
    run_task,
    logs,
    ci,
    demo,
    plan,
    pull_and_run,
    images,
    serve,
    setup,
    teardown,
    init,
    version,
    stack_ns,
)
