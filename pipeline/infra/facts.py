"""What setup knows before it changes anything (stacks, network, shared listener) and the pure rules over it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .. import ecr
from ..config import Settings
from ..errors import ConfigError, Unavailable
from .names import TAG_PREFIX


@dataclass(frozen=True)
class StackState:
    """One stack as CloudFormation describes it; status None: there is no such stack."""

    name: str
    stack_id: str | None = None
    status: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, str] = field(default_factory=dict)  # logical id -> physical id

    @property
    def exists(self) -> bool:
        """Created (maybe failed); a stack still in review holds nothing yet."""
        return self.status not in (None, "REVIEW_IN_PROGRESS")


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: bool


@dataclass(frozen=True)
class ListenerRule:
    arn: str
    priority: int | None  # None: the listener's default rule
    paths: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class SharedListener:
    arn: str
    security_group: str
    dns_name: str
    hosted_zone_id: str
    rules: tuple[ListenerRule, ...]


@dataclass(frozen=True)
class Facts:
    """Everything setup looked up and checked, before it changes anything."""

    account_id: str
    partition: str
    registry: str
    cluster: str
    project: StackState
    create_repository: bool
    oidc_provider_arn: str  # "": the project stack creates CircleCI's provider
    environment: StackState | None = None
    network: Network | None = None
    listener: SharedListener | None = None
    rule_priority: int = 1
    hosted_zone_id: str = ""
    live_task_definition: str = ""  # "": the service does not exist yet
    image: str = ""  # the first revision's image, when the service is created
    missing_image: str = ""  # no image to create the service with: what to push (a dry run only notes it)
    notes: tuple[str, ...] = ()


def check_stack(settings: Settings, state: StackState) -> None:
    """Refuse stacks that are not this project's, or that another run is changing now."""
    if state.status is None:
        return
    owner = state.tags.get(TAG_PREFIX)
    if owner != settings.prefix:
        raise ConfigError(
            f"stack {state.name} exists but was not made by `invoke setup` for prefix {settings.prefix!r} "
            f"(its {TAG_PREFIX} tag: {owner!r}); use another AWS_RESOURCE_NAME_PREFIX or remove that stack"
        )
    if state.status.endswith("_IN_PROGRESS") and state.status != "REVIEW_IN_PROGRESS":
        raise Unavailable(
            f"stack {state.name} is busy ({state.status}): another setup or teardown is running; "
            "wait for it and try again"
        )


def project_cluster(settings: Settings, env_name: str | None, project: StackState) -> str:
    """The project stack's cluster: the environment's, and the same for every environment."""
    held = project.parameters.get("ClusterName") if project.exists else None
    if env_name is None:
        clusters = {e.cluster for e in settings.environments.values()}
        if held:
            return held
        if len(clusters) == 1:
            return clusters.pop()
        listed = ", ".join(f"{e.name}: {e.cluster}" for e in settings.environments.values())
        raise ConfigError(
            f"environments use different clusters ({listed}); run `invoke setup --env ENV`: "
            "the project stack takes that environment's cluster"
        )
    cluster = settings.environment(env_name).cluster
    if held and held != cluster:
        raise ConfigError(
            f"environment {env_name} uses cluster {cluster} but the project stack {project.name} holds "
            f"cluster {held}: environments in one account share the project's cluster; give them the same "
            "cluster (ECS_CLUSTER_NAME, or `cluster` in [tool.pipeline.environments.*])"
        )
    return cluster


def choose_priority(
    rules: Iterable[ListenerRule], ours: str | None, configured: int | None, current: int | None
) -> int:
    """A listener rule priority no other rule holds: configured, else the stack's own, else the lowest free."""
    taken = {r.priority: r.arn for r in rules if r.priority is not None and r.arn != ours}
    free = next(p for p in range(1, 50001) if p not in taken)
    if configured is not None:
        if configured in taken:
            raise ConfigError(
                f"rule_priority {configured}: another rule on the shared listener holds it ({taken[configured]}); "
                f"choose a free one, e.g. {free}"
            )
        return configured
    if current is not None and current not in taken:
        return current
    return free


def conflicting_rule(
    rules: Iterable[ListenerRule], ours: str | None, paths: Sequence[str], host: str | None
) -> ListenerRule | None:
    """Another rule matching the same paths for the same hosts: one of the two would never see traffic."""
    hosts = {host} if host else set()
    for rule in rules:
        if rule.arn == ours or rule.priority is None or not set(rule.paths) & set(paths):
            continue
        if not rule.hosts or not hosts or set(rule.hosts) & hosts:
            return rule
    return None


def zone_for(domain: str, zones: Iterable[tuple[str, str, bool]]) -> str | None:
    """The id of the hosted zone (id, name, private) that holds domain: the longest matching name, public first."""
    best: tuple[int, bool, str] | None = None
    for zone_id, name, private in zones:
        name = name.rstrip(".").lower()
        if domain == name or domain.endswith("." + name):
            key = (len(name), not private, zone_id)
            best = key if best is None or key[:2] > best[:2] else best
    return best[2].rsplit("/", 1)[-1] if best else None


def newest_tag(images: Iterable[ecr.ImageRecord]) -> str | None:
    tagged = [i for i in images if i.tags]
    if not tagged:
        return None
    newest = max(tagged, key=lambda i: i.pushed_at or datetime.min.replace(tzinfo=UTC))
    return sorted(newest.tags)[0]
