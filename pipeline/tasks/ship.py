"""The seed's build, test, dockerize and push, and the CI plan and run."""

from __future__ import annotations

import os

from ._base import JSON_LOGS, context, project_root, task, verb


@task(help={"json_logs": JSON_LOGS})
@verb
def build(c, json_logs=False):
    """Run the service's build step (the seed's build.sh; `build_command` in [tool.pipeline])."""
    from pipeline import verbs

    ctx = context(json_logs, aws=False)
    with ctx.out.step("build"):
        verbs.build(ctx)


@task(help={"json_logs": JSON_LOGS})
@verb
def test(c, json_logs=False):
    """Run the service's unit tests (the seed's test.sh; `test_command` in [tool.pipeline])."""
    from pipeline import verbs

    ctx = context(json_logs, aws=False)
    with ctx.out.step("test"):
        verbs.test(ctx)


@task(
    help={
        "sha": "commit to tag the image with (default: CIRCLE_SHA1, else git HEAD; "
        "a dirty tree tags <sha>-dirty-<hash of the changes>)",
        "cache_from_ecr": "pull the newest image in ECR first and reuse its layers (CI machines "
        "start with an empty cache)",
        "json_logs": JSON_LOGS,
    }
)
@verb
def dockerize(c, sha=None, cache_from_ecr=False, json_logs=False):
    """Build the service's image, tagged <repository>:<sha> (the seed's dockerize.sh)."""
    from pipeline import verbs

    ctx = context(json_logs, sha).for_job()
    revision = ctx.revision(sha)
    with ctx.out.step(f"dockerize {revision.tag}"):
        verbs.dockerize(ctx, revision, verbs.cache_from_ecr(ctx) if cache_from_ecr else ())


@task(help={"sha": "commit whose image to push (default as for dockerize)", "json_logs": JSON_LOGS})
@verb
def push(c, sha=None, json_logs=False):
    """Log in to ECR and push the image for a commit; prints the pushed digest (a -dev branch's CI job: to <repository>-dev)."""
    from pipeline import verbs

    ctx = context(json_logs, sha).for_job()
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


@task(
    help={
        "branch": "run the plan for this branch instead of CIRCLE_BRANCH",
        "tag": "run the plan for this tag instead of CIRCLE_TAG",
        "sha": "commit to build or deploy instead of CIRCLE_SHA1",
        "dry_run": "print the plan and each step's command; run nothing",
        "base_url": "smoke-test and integration-test this base URL instead of discovering the ALB's",
        "timeout": "seconds a deploy may wait for its rollout (default 600)",
        "json_logs": JSON_LOGS,
    }
)
@verb
def ci(c, branch=None, tag=None, sha=None, dry_run=False, base_url=None, timeout=600, json_logs=False):
    """Run the CI plan for the current ref (CircleCI's variables) step by step, with a summary."""
    from pipeline import ci as running
    from pipeline import plan as planning
    from pipeline.git import Revision

    kind, ref, commit = running.ci_ref(os.environ, branch, tag, sha)
    ctx = context(json_logs, sha=commit)
    the_plan = planning.make(kind, ref, ctx.settings.ci)  # type: ignore[arg-type]
    if dry_run:
        migration = (
            ctx.settings.environment(the_plan.environment).migrate_command if the_plan.environment else ""
        )
        print("\n".join(planning.describe(the_plan, commit, migrate_command=migration)))
        return
    running.run(ctx.for_job(), the_plan, Revision(commit), running.Options(float(timeout), base_url))


@task(
    help={
        "port": "port on 127.0.0.1 where the deployed image answers at the end (default 8080)",
        "failure": "then deploy a broken image (exits 3 at start): see it caught and rolled back",
        "strategy": "deploy prod with ECS's BLUE_GREEN, LINEAR or CANARY strategy (its own stack: the prefix "
        "gets the strategy's name) and watch the smoke gate stop a wrong-answering revision while "
        "production keeps answering",
    }
)
@verb
def demo(c, port=8080, failure=False, strategy=None):
    """Run the whole mainline flow for this service on the local stack, no AWS account needed."""
    from pipeline import config, stack
    from pipeline import demo as demoing

    chosen = demoing.strategy_named(strategy) if strategy is not None else None

    cfg = stack.config_from(os.environ)
    stack.up(cfg)
    os.environ.update(stack.env(cfg))
    root = project_root()
    if not (
        os.environ.get("AWS_RESOURCE_NAME_PREFIX", "").strip() or config.read_project_file(root).get("prefix")
    ):
        # The local stack sets no prefix (it would name another service's resources).
        os.environ["AWS_RESOURCE_NAME_PREFIX"] = config.name_from_project(root)
        print(
            f"no prefix set: the demo uses {os.environ['AWS_RESOURCE_NAME_PREFIX']} (from the "
            "project's name); set prefix in [tool.pipeline] or AWS_RESOURCE_NAME_PREFIX to choose another"
        )
    if chosen is not None:
        # Its own stack beside the plain demo's: switching strategies back and forth never
        # converts a live environment (moving production off the alternate target group).
        suffix = chosen.lower().replace("_", "-")
        base = os.environ.get("AWS_RESOURCE_NAME_PREFIX", "").strip() or str(
            config.read_project_file(root)["prefix"]
        )
        os.environ["AWS_RESOURCE_NAME_PREFIX"] = f"{base}-{suffix}"
    demoing.run(context(), int(port), failure=failure, strategy=chosen)
