"""The deployment strategy protocol and the table the engine picks one from, by name.

A strategy knows how ECS carries out one kind of deployment: how to start it, what one
DescribeServices answer says about it, and the way back after a failure. ECS names the
strategy in the service's `deploymentConfiguration.strategy` (ROLLING when absent); a new
one (BLUE_GREEN, LINEAR, CANARY) is one module with a class like rolling.Rolling, one
line in STRATEGIES, and its stand-in in the emulator.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..clients import Clients
from ..errors import ConfigError
from .model import Outcome, Unit, Watch, Way
from .rolling import Rolling


class Strategy(Protocol):
    name: str

    def start(self, clients: Clients, unit: Unit) -> Watch:
        """Start putting `unit.arn` into service (the one change); what to watch.
        Raises StartedNothing when the service changed but shows no deployment of ours."""
        ...

    def observe(self, answer: dict[str, Any], watch: Watch) -> Outcome:
        """What one DescribeServices answer says about the watched deployment. Pure."""
        ...

    def recover(
        self, clients: Clients, unit: Unit, outcome: Outcome, allowed: bool
    ) -> tuple[Way, Watch] | None:
        """After `outcome` failed: start the way back (or find the one ECS started) and say
        what to watch; None when there is none (`allowed` False: the caller said no rollback)."""
        ...


STRATEGIES: dict[str, Strategy] = {"ROLLING": Rolling()}


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
