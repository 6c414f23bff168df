"""`invoke setup` of BLUE_GREEN, LINEAR and CANARY environments on the emulator: the
alternate target group, the test listener and its rule, the infrastructure role ECS
moves traffic with (read back with the aws CLI), the service's deployment configuration
with the smoke gate, and a live environment moved from ROLLING to BLUE_GREEN and back.

What the service carries is read back from the emulator's ECS (describe-services), which
keeps what the CloudFormation stand-in passed to CreateService/UpdateService
(pipeline/stack/emulator/cloudformation.py); the traffic shifting itself is the emulator's
ECS scheduler's (not exercised here).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pipeline import infra
from pipeline.context import Context
from tests.helpers import put_image_record

Aws = Callable[[str], Any]
MakeCtx = Callable[..., Context]


def service_of(aws_cli: Callable[..., Any], ctx: Context, env: str) -> dict[str, Any]:
    e = ctx.settings.environment(env)
    [service] = aws_cli("ecs", "describe-services", "--cluster", e.cluster, "--services", e.service)["services"]
    return dict(service)


def test_blue_green_setup_creates_the_test_listener_the_alternate_group_and_a_role_scoped_to_them(
    infra_ctx: MakeCtx, aws: Aws, aws_cli: Callable[..., Any], prefix: str
) -> None:
    ctx = infra_ctx({"environments": {"staging": {"strategy": "BLUE_GREEN", "test_port": 9100, "gate_timeout_minutes": 20}}})
    infra.setup(ctx)
    put_image_record(aws, prefix, "abc1234")
    [_, staging] = infra.setup(ctx, "staging")["stacks"]
    outputs = staging["outputs"]
    print(json.dumps(outputs, indent=1))
    print(json.dumps(service_of(aws_cli, ctx, "staging"), indent=1, default=str))
