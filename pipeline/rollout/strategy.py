"""The deployment strategy protocol and the table the engine picks one from, by name.

A strategy knows how ECS carries out one kind of deployment: how to start it, what one
DescribeServices answer says about it, and the way back after a failure. ECS names the
strategy in the service's `deploymentConfiguration.strategy` (ROLLING when absent).
ROLLING is rolling.Rolling, judged from DescribeServices alone; BLUE_GREEN, LINEAR and
CANARY are native.Native, which ECS runs as a service deployment the engine also reads
(`reads_service_deployments`) and whose PAUSE hook the engine answers (the smoke gate).
A new strategy is one module, one line in STRATEGIES, and its stand-in in the emulator.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..clients import Clients
from ..errors import ConfigError
from .model import Outcome, Unit, Watch, Way
from .native import Native
from .rolling import Rolling


class Strategy(Protocol):
    name: str
    reads_service_deployments: bool  # the engine passes observe the service deployment

    def start(self, clients: Clients, unit: Unit) -> Watch:
        """Start putting `unit.arn` into service (the one change); what to watch.
        Raises StartedNothing when the service changed but shows no deployment of ours."""
        ...

    def observe(
        self, answer: dict[str, Any], watch: Watch, deployment: dict[str, Any] | None = None
    ) -> Outcome:
        """What one DescribeServices answer (and, for a strategy that reads them, the watched
        service deployment's description) says about the watched deployment. Pure."""
        ...

    def recover(
        self, clients: Clients, unit: Unit, outcome: Outcome, allowed: bool
    ) -> tuple[Way, Watch] | None:
        """After `outcome` failed: start the way back (or find the one ECS started) and say
        what to watch; None when there is none (`allowed` False: the caller said no rollback)."""
        ...


STRATEGIES: dict[str, Strategy] = {
    "ROLLING": Rolling(),
    **{name: Native(name) for name in ("BLUE_GREEN", "LINEAR", "CANARY")},
}


def named(service: dict[str, Any]) -> str:
    """The strategy a live service deploys with; ConfigError (before any change) for one this
    tool does not drive. Pure."""
    controller = (service.get("deploymentController") or {}).get("type", "ECS")
    name = str((service.get("deploymentConfiguration") or {}).get("strategy") or "ROLLING")
    where = f"service {service.get('serviceName', '?')}"
    if controller != "ECS":
        raise ConfigError(
            f"{where} uses the {controller} deployment controller; ecs-pipeline drives only ECS's own "
            "(deploy it with that controller's tools, or recreate the service with the ECS controller)"
        )
    if name not in STRATEGIES:
        raise ConfigError(
            f"{where} deploys with the {name} strategy; ecs-pipeline drives {', '.join(STRATEGIES)} "
            "(set the service's deploymentConfiguration.strategy to one of them)"
        )
    return name
