"""Per-environment blast radius (issue 19): each environment's execution role reads its own
secrets only, and its deploy role deploys, runs tasks and reads logs of its own service.
`invoke setup` makes the stacks on the emulator's CloudFormation; the policies are read
back from its IAM with the real aws CLI and evaluated by the emulator's own IAM policy
engine (moto's, the one its access control uses): moto has no SimulatePrincipalPolicy."""

from __future__ import annotations

import ast
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto.iam.access_control import IAMPolicy, PermissionResult

from pipeline import config, infra
from pipeline.context import Context
from tests.helpers import ROOT, put_image_record

Aws = Callable[[str], Any]
ARN = "arn:aws:{}:us-east-1:123456789012:{}".format


@pytest.fixture
def circleci(aws: Aws) -> Iterator[dict[str, str]]:
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    arn = aws("iam").create_open_id_connect_provider(
        Url=f"https://oidc.circleci.com/org/{org}", ClientIDList=[org], ThumbprintList=["9" * 40]
    )["OpenIDConnectProviderArn"]
    yield {"org": org, "project": project}
    aws("iam").delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)


def allows(documents: list[Any], action: str, resource: str) -> bool:
    """Whether any of the identity policies allows `action` on `resource` (no Deny is written)."""
    return any(
        IAMPolicy(json.dumps(document)).is_action_permitted(action, resource) == PermissionResult.PERMITTED
        for document in documents
    )


def inline_policies(aws_cli: Callable[..., Any], role: str) -> list[Any]:
    names = aws_cli("iam", "list-role-policies", "--role-name", role)["PolicyNames"]
    documents = [
        aws_cli("iam", "get-role-policy", "--role-name", role, "--policy-name", name)["PolicyDocument"]
        for name in names
    ]
    # The CLI decodes a URL-encoded JSON document. moto 5.2's CloudFormation stores a role's
    # inline `Policies` as Python's repr of the document (found here): read that back as data.
    return [ast.literal_eval(d) if isinstance(d, str) else d for d in documents]


@pytest.mark.heavy
def test_each_environment_reads_deploys_and_runs_only_its_own(
    make_context: Callable[..., Context],
    aws: Aws,
    aws_cli: Callable[..., Any],
    prefix: str,
    circleci: dict[str, str],
) -> None:
    table = {"circleci_org_id": circleci["org"], "circleci_project_id": circleci["project"]}
    ctx = make_context(project={**config.read_project_file(ROOT), "infra": table})
    infra.setup(ctx)
    put_image_record(aws, prefix, "abc1234")
    outputs = {env: infra.setup(ctx, env)["stacks"][1]["outputs"] for env in ("prod", "staging")}

    for env, other in (("prod", "staging"), ("staging", "prod")):
        execution = f"{prefix}-{env}-ecs-execution-role"
        assert outputs[env]["ExecutionRoleArn"] == f"arn:aws:iam::123456789012:role/{execution}"
        assert outputs[env]["TaskRoleArn"] == f"arn:aws:iam::123456789012:role/{prefix}-{env}-ecs-task-role"
        reads = inline_policies(aws_cli, execution)
        assert allows(reads, "ssm:GetParameters", ARN("ssm", f"parameter/{prefix}/{env}/db-password"))
        assert allows(
            reads, "secretsmanager:GetSecretValue", ARN("secretsmanager", f"secret:{prefix}/{env}/db-x1")
        )
        assert not allows(reads, "ssm:GetParameters", ARN("ssm", f"parameter/{prefix}/{other}/db-password"))
        assert not allows(
            reads, "secretsmanager:GetSecretValue", ARN("secretsmanager", f"secret:{prefix}/{other}/x")
        )
        assert not allows(reads, "ssm:GetParameters", ARN("ssm", f"parameter/{prefix}-other/{env}/x"))

        deploys = inline_policies(aws_cli, f"{prefix}-deploy-{env}")
        mine, theirs = ctx.settings.environment(env), ctx.settings.environment(other)
        assert allows(deploys, "ecs:UpdateService", ARN("ecs", f"service/{mine.cluster}/{mine.service}"))
        assert not allows(
            deploys, "ecs:UpdateService", ARN("ecs", f"service/{theirs.cluster}/{theirs.service}")
        )
        assert allows(deploys, "iam:PassRole", outputs[env]["ExecutionRoleArn"])
        assert not allows(deploys, "iam:PassRole", outputs[other]["ExecutionRoleArn"])
        assert not allows(deploys, "iam:PassRole", outputs[other]["TaskRoleArn"])
        # migrate_command and the failure report's log lines work from CI: RunTask, StopTask, logs.
        assert allows(deploys, "ecs:RunTask", ARN("ecs", f"task-definition/{mine.family}:7"))
        assert not allows(deploys, "ecs:RunTask", ARN("ecs", f"task-definition/{theirs.family}:7"))
        assert allows(deploys, "ecs:StopTask", ARN("ecs", f"task/{mine.cluster}/0123abcd"))
        stream = f"log-group:/ecs/{prefix}:log-stream:{env}/{mine.container}/0123abcd"
        assert allows(deploys, "logs:GetLogEvents", ARN("logs", stream))
        assert not allows(
            deploys,
            "logs:GetLogEvents",
            ARN("logs", f"log-group:/ecs/{prefix}:log-stream:{other}/x/0123abcd"),
        )
        assert allows(deploys, "logs:FilterLogEvents", ARN("logs", f"log-group:/ecs/{prefix}:*"))
