"""`invoke setup` on the aws seam: each stack through a change set, shown, executed and followed by its events."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import ci_identity
from ..clients import Clients, aws_errors
from ..context import Context
from ..errors import ConfigError, NotFound, StepFailed, Unavailable
from .changesets import (
    DONE,
    NO_CHANGES,
    Change,
    changes_from,
    event_line,
    failure_message,
    is_no_change,
    summary,
)
from .facts import StackState
from .lookups import describe_stack, gather
from .names import ci_dev_name, ci_name, project_stack_name
from .parameters import StackRequest, stack_requests, template_body

POLL_SECONDS = 5.0


Sleep = Callable[[float], None]


@dataclass(frozen=True)
class StackResult:
    name: str
    action: str  # created, updated, unchanged, previewed
    changes: tuple[Change, ...] = ()
    outputs: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.name,
            "action": self.action,
            "changes": [c.to_json() for c in self.changes],
            "outputs": dict(self.outputs),
        }


def _shown_events(clients: Clients, stack_id: str) -> set[str]:
    """The newest event so far: what happens next is what a person has not seen yet."""
    with aws_errors("cloudformation:DescribeStackEvents"):
        events = clients.aws("cloudformation").describe_stack_events(StackName=stack_id)["StackEvents"]
    return {events[0]["EventId"]} if events else set()


def _new_events(clients: Clients, stack_id: str, seen: set[str]) -> list[dict[str, Any]]:
    """Events not shown yet, oldest first (the API pages newest first)."""
    fresh: list[dict[str, Any]] = []
    with aws_errors("cloudformation:DescribeStackEvents"):
        for page in (
            clients.aws("cloudformation").get_paginator("describe_stack_events").paginate(StackName=stack_id)
        ):
            for event in page["StackEvents"]:
                if event["EventId"] in seen:
                    break
                fresh.append(event)
            else:
                continue
            break
    seen.update(e["EventId"] for e in fresh)
    return fresh[::-1]


def wait_for_stack(
    ctx: Context, stack_id: str, name: str, seen: set[str], timeout: float, sleep: Sleep
) -> tuple[str, list[dict[str, Any]]]:
    """Show the stack's events as they arrive until it settles; returns its status and those events.

    Settled means the stack itself reported a final status since `seen`: right after
    ExecuteChangeSet or DeleteStack, DescribeStacks may still show the previous one.
    """
    cfn = ctx.clients.aws("cloudformation")
    deadline = time.monotonic() + timeout
    shown: list[dict[str, Any]] = []
    while True:
        with aws_errors("cloudformation:DescribeStacks"):
            status = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"]
        fresh = _new_events(ctx.clients, stack_id, seen)
        for event in fresh:
            ctx.out.detail(event_line(event))
        shown += fresh
        reported = {
            e["ResourceStatus"] for e in shown if e.get("ResourceType") == "AWS::CloudFormation::Stack"
        }
        if not status.endswith("_IN_PROGRESS") and status in reported:
            return status, shown
        if time.monotonic() > deadline:
            raise Unavailable(
                f"{name}: still {status} after {timeout:.0f}s; CloudFormation carries on: follow it with "
                f"`aws cloudformation describe-stack-events --stack-name {name}`"
            )
        sleep(POLL_SECONDS)


def _change_set(ctx: Context, arn: str, timeout: float, sleep: Sleep) -> dict[str, Any]:
    """The change set once CloudFormation has worked it out, with every page of changes."""
    cfn = ctx.clients.aws("cloudformation")
    deadline = time.monotonic() + timeout
    while True:
        with aws_errors("cloudformation:DescribeChangeSet"):
            found = cfn.describe_change_set(ChangeSetName=arn)
        if found["Status"] in ("CREATE_COMPLETE", "FAILED"):
            break
        if time.monotonic() > deadline:
            raise Unavailable(f"change set {arn} still {found['Status']} after {timeout:.0f}s")
        sleep(POLL_SECONDS / 2)
    changes = list(found.get("Changes", []))
    token = found.get("NextToken")
    while token:
        with aws_errors("cloudformation:DescribeChangeSet"):
            page = cfn.describe_change_set(ChangeSetName=arn, NextToken=token)
        changes += page.get("Changes", [])
        token = page.get("NextToken")
    return {**found, "Changes": changes}


def _discard(ctx: Context, arn: str, stack_id: str, created_stack: bool) -> None:
    """Delete a change set that will not run, and the empty stack a CREATE change set made."""
    cfn = ctx.clients.aws("cloudformation")
    with aws_errors("cloudformation:DeleteChangeSet"):
        cfn.delete_change_set(ChangeSetName=arn)
    if created_stack:
        with aws_errors("cloudformation:DeleteStack"):
            cfn.delete_stack(StackName=stack_id)


def delete_stack(ctx: Context, state: StackState, timeout: float, sleep: Sleep) -> None:
    if state.stack_id is None:
        return
    seen = _shown_events(ctx.clients, state.stack_id)
    with aws_errors("cloudformation:DeleteStack"):
        ctx.clients.aws("cloudformation").delete_stack(StackName=state.stack_id)
    status, events = wait_for_stack(ctx, state.stack_id, state.name, seen, timeout, sleep)
    if status != "DELETE_COMPLETE":
        raise StepFailed(failure_message(state.name, status, events))


@dataclass(frozen=True)
class ChangeSetPlan:
    """What setup would do to one stack, decided and shown before anything runs.

    action: create or update (a change set waits, unexecuted, with its `changes`),
    unchanged (nothing to do), or recreate (a stack whose first creation failed is
    deleted and made afresh; what it will hold is known only after the deletion).
    """

    request: StackRequest
    state: StackState
    action: str
    change_set: str = ""  # its name; "" when no change set waits
    arn: str = ""
    stack_id: str = ""
    changes: tuple[Change, ...] = ()

    def lines(self, parameters: bool = False) -> list[str]:
        """The plan as a person reads it; with the parameters the stack gets (for --dry-run)."""
        lines = [f"{k} = {v}" for k, v in self.request.parameters.items()] if parameters else []
        if self.action == "recreate":
            return lines + [
                f"{self.state.name} is ROLLBACK_COMPLETE (its first creation failed): it is deleted and made afresh"
            ]
        if self.action == "unchanged":
            return lines + ["no changes: the stack already matches"]
        lines.append(f"change set {self.change_set} ({self.action} {self.request.name}):")
        return lines + [f"  {line}" for line in summary(self.changes)]


def propose(
    ctx: Context, request: StackRequest, state: StackState, timeout: float, sleep: Sleep
) -> ChangeSetPlan:
    """Decide what one stack needs: a change set CloudFormation has worked out (and left
    unexecuted), or that nothing changes, or that a failed first creation is replaced."""
    cfn = ctx.clients.aws("cloudformation")
    if state.status == "ROLLBACK_COMPLETE":
        return ChangeSetPlan(request, state, "recreate")
    kind = "UPDATE" if state.exists else "CREATE"
    name = f"setup-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with aws_errors("cloudformation:CreateChangeSet", handled=("ValidationError",)):
        try:
            created = cfn.create_change_set(
                StackName=request.name,
                ChangeSetName=name,
                ChangeSetType=kind,
                TemplateBody=template_body(request.template),
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in request.parameters.items()],
                Capabilities=["CAPABILITY_NAMED_IAM"],
                Tags=[{"Key": k, "Value": v} for k, v in request.tags.items()],
                Description="invoke setup",
            )
        except cfn.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != "ValidationError":
                raise
            message = exc.response["Error"].get("Message", "")
            if any(words in message for words in NO_CHANGES):
                return ChangeSetPlan(request, state, "unchanged")
            raise ConfigError(f"{request.name}: CloudFormation refused the change set: {message}") from None
    found = _change_set(ctx, created["Id"], timeout, sleep)
    created_stack = kind == "CREATE"
    if found["Status"] == "FAILED":
        reason = found.get("StatusReason", "")
        _discard(ctx, created["Id"], created["StackId"], created_stack)
        if is_no_change(found["Status"], reason):
            return ChangeSetPlan(request, state, "unchanged")
        raise ConfigError(f"{request.name}: CloudFormation refused the change set: {reason}")
    changes = tuple(changes_from(found["Changes"]))
    action = "create" if created_stack else "update"
    return ChangeSetPlan(request, state, action, name, created["Id"], created["StackId"], changes)


def withdraw(ctx: Context, plan: ChangeSetPlan) -> StackResult:
    """A dry run's end: delete the change set (and the empty stack a CREATE made)."""
    if plan.action == "unchanged":
        return StackResult(plan.request.name, "unchanged", outputs=plan.state.outputs)
    if plan.arn:
        _discard(ctx, plan.arn, plan.stack_id, plan.action == "create")
        return StackResult(plan.request.name, "previewed", plan.changes, plan.state.outputs)
    return StackResult(plan.request.name, "previewed")


def execute(ctx: Context, plan: ChangeSetPlan, timeout: float, sleep: Sleep) -> StackResult:
    """Carry the plan out: execute the change set and follow the stack's events to the end."""
    out = ctx.out
    request = plan.request
    if plan.action == "unchanged":
        return StackResult(request.name, "unchanged", outputs=plan.state.outputs)
    if plan.action == "recreate":
        delete_stack(ctx, plan.state, timeout, sleep)
        afresh = propose(ctx, request, StackState(plan.state.name), timeout, sleep)
        for line in afresh.lines():
            out.detail(line)
        return execute(ctx, afresh, timeout, sleep)
    seen = _shown_events(ctx.clients, plan.stack_id)
    with aws_errors("cloudformation:ExecuteChangeSet"):
        ctx.clients.aws("cloudformation").execute_change_set(ChangeSetName=plan.arn)
    status, events = wait_for_stack(ctx, plan.stack_id, request.name, seen, timeout, sleep)
    if status not in DONE:
        raise StepFailed(failure_message(request.name, status, events))
    outputs = describe_stack(ctx.clients, request.name).outputs
    return StackResult(
        request.name, "created" if plan.action == "create" else "updated", plan.changes, outputs
    )


def apply(
    ctx: Context, request: StackRequest, state: StackState, dry_run: bool, timeout: float, sleep: Sleep
) -> StackResult:
    """One stack: decide its change set and show it; a dry run withdraws it, a real run executes it."""
    plan = propose(ctx, request, state, timeout, sleep)
    for line in plan.lines(parameters=dry_run):
        ctx.out.detail(line)
    return withdraw(ctx, plan) if dry_run else execute(ctx, plan, timeout, sleep)


def setup(
    ctx: Context,
    env_name: str | None = None,
    dry_run: bool = False,
    image_tag: str | None = None,
    timeout: float = 3600.0,
    sleep: Sleep = time.sleep,
) -> dict[str, Any]:
    """Create or update the project stack, then the environment's; returns what each did."""
    with ctx.out.step(f"check setup{' of ' + env_name if env_name else ''}"):
        facts = gather(ctx, env_name, image_tag)
        if facts.missing_image and not dry_run:
            raise NotFound(facts.missing_image)
        requests = stack_requests(ctx.settings, env_name, facts)
        for note in facts.notes + ((facts.missing_image,) if facts.missing_image else ()):
            ctx.out.detail(note)
    states = [facts.project] + ([facts.environment] if facts.environment else [])
    results = []
    for request, state in zip(requests, states, strict=True):
        with ctx.out.step(f"stack {request.name}"):
            results.append(apply(ctx, request, state, dry_run, timeout, sleep))
    if dry_run:
        ctx.out.say("dry run: the change sets were shown and deleted; nothing was changed")
    elif env_name:
        _wait_for_the_services_rollout(ctx, env_name, timeout, sleep)
    # Always the stacks' outputs, changed or not: a second setup is how people look them up.
    for result in results:
        if result.outputs:
            ctx.out.say(f"outputs of {result.name} ({result.action}):")
            for key, value in result.outputs.items():
                ctx.out.say(f"  {key} = {value}")
    trusts = {} if dry_run else read_trusts(ctx, env_name)
    if env_name:  # the CircleCI side of the environment's CI identity, which no API here sets
        role = results[-1].outputs.get("CiDeployRoleArn")
        deploy_role = ci_identity.role_name(ctx.settings.prefix, env_name)
        for line in ci_identity.setup_lines(ctx.settings, env_name, role, trusts.get(deploy_role, {})):
            ctx.out.say(line)
    project_outputs = next((r.outputs for r in results if r.name == project_stack_name(ctx.settings)), {})
    for dev, role in ((False, ci_name(ctx.settings)), (True, ci_dev_name(ctx.settings))):
        if role in trusts:
            arn = project_outputs.get("CiDevRoleArn" if dev else "CiRoleArn")
            for line in ci_identity.push_setup_lines(ctx.settings, dev, role, arn, trusts[role]):
                ctx.out.say(line)
    moves_traffic = None if dry_run or not env_name else read_infrastructure_role(ctx, env_name)
    if moves_traffic:
        name = moves_traffic["roleName"]
        ctx.out.say(f"ECS moves {env_name}'s traffic with {name} (read back from IAM):")
        ctx.out.say(f"  trust policy of {name}: {json.dumps(moves_traffic['trust'], sort_keys=True)}")
        ctx.out.say(f"  permissions of {name}: {json.dumps(moves_traffic['permissions'], sort_keys=True)}")
    return {
        "dryRun": dry_run,
        "stacks": [r.to_json() for r in results],
        "trust": trusts,
        "infrastructureRole": moves_traffic,
    }


def read_infrastructure_role(ctx: Context, env_name: str) -> dict[str, Any] | None:
    """The role ECS moves traffic with (strategies other than ROLLING), as IAM holds it:
    its trust and inline permissions; None where the environment has none."""
    if ctx.settings.infra.environment(env_name).strategy == "ROLLING":
        return None
    name = ctx.settings.infrastructure_role_name(env_name)
    iam = ctx.clients.aws("iam")
    with aws_errors("iam:GetRole"):
        trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    with aws_errors("iam:GetRolePolicy"):
        permissions = {
            policy: iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]
        }
    return {"roleName": name, "trust": trust, "permissions": permissions}


def read_trusts(ctx: Context, env_name: str | None) -> dict[str, Any]:
    """The trust policies of the CI roles setup made, as IAM holds them (what is printed and
    returned is what IAM enforces, whatever the templates meant)."""
    settings = ctx.settings
    if settings.infra.ci_identity != "oidc":
        return {}
    roles = [ci_name(settings)]
    roles += [ci_dev_name(settings)] if ci_identity.dev_push_refs(settings.ci) else []
    roles += [ci_identity.role_name(settings.prefix, env_name)] if env_name else []
    iam = ctx.clients.aws("iam")
    trusts = {}
    for role in roles:
        with aws_errors("iam:GetRole"):
            trusts[role] = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    return trusts


def _wait_for_the_services_rollout(ctx: Context, env_name: str, timeout: float, sleep: Sleep) -> None:
    """CloudFormation on AWS reports an ECS service complete only once it is steady; where
    the stack is done sooner (the local stack), wait here, so the next deploy finds no
    rollout in progress."""
    from .. import ecs
    from ..safety import Busy, idle_service

    env = ctx.settings.environment(env_name)
    with ctx.out.step(f"wait for {env.service} to be steady"):
        service = ecs.describe_service(ctx.clients, env.cluster, env.service)
        idle_service(ctx, env, service, Busy.WAIT, timeout=timeout, sleep=sleep)
