"""A release's plan: the release file, what is live, and the decision. Nothing changes here.

check → plan (this module) → execute (pipeline/release.py). `check` reads the release file and everything live it needs
(images in ECR, services, their task definitions, smoke URLs), and `make_plan` — pure —
turns those facts into a ReleasePlan or one ConfigError listing every problem, before
anything changes. Executing registers every revision, updates every service (bounded
parallelism), waits for all of them with batched polling (pipeline/rollout/), smoke-tests
those with a URL, and on any failure returns every service this release changed to the
revision it ran before — waiting on ECS's own rollback where the circuit breaker already
started one. It ends with one table and one Honeycomb marker.

The release file (TOML):

    [[service]]
    project = "../orders"  # its repository: that [tool.pipeline] (prefix, environments, smoke)
    prefix = "orders"    # names repository, cluster, service, family, container as the settings do
    sha = "<commit>"     # the image tag to release, or a unique prefix of it (7+ characters)
    # optional: cluster, service, family, container, url (smoke test), smoke_text,
    # base_path, smoke_path, template + values (paths relative to the file); without a
    # template the live task definition is kept, field for field, with only the
    # container's image replaced.
    # migrate_command: this service's migration ("" for none); default: the environment's.

A service's settings come from its `project` (relative to the file), else from the
repository the release runs in; `prefix` is needed only where those settings name none.
Each service is smoke-tested with its own settings: its smoke text, and a URL from its
own load balancer listener rule (the rule's path pattern gives the path; smoke_path
overrides it).

Migrations run one at a time, in the file's order, after every revision is registered
and before the first UpdateService: a failing one stops the release with no service
updated (those that ran before it have run; migrations must suit the old code too).
"""

from __future__ import annotations

import copy
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import config, ecr, ecs, migrate, prepare, safety, selection, smoke, taskdef
from .arns import short
from .context import Context
from .errors import ConfigError, NotFound, PipelineError
from .rollout import strategy
from .rollout.engine import each

_KEYS = (
    "project",
    "prefix",
    "sha",
    "cluster",
    "service",
    "family",
    "container",
    "template",
    "values",
    "url",
    "smoke_text",
    "base_path",
    "smoke_path",
    "migrate_command",
)
_PATHS = ("project", "template", "values")  # relative to the release file
# The seed's single-service overrides would name the same resource for every prefix; the
# prefix comes from the entry or the service's own settings, never the invoking shell.
_SINGLE_SERVICE_VARIABLES = (
    "AWS_RESOURCE_NAME_PREFIX",
    "ECR_REPOSITORY_NAME",
    "ECS_CLUSTER_NAME",
    "ECS_SERVICE_NAME",
    "ECS_TASK_FAMILY_NAME",
    "ECS_CONTAINER_DEFINITION_NAME",
)


@dataclass(frozen=True)
class Entry:
    """One [[service]] of the release file, as written (paths made relative to the file)."""

    sha: str
    prefix: str | None = None  # None: the project's prefix setting
    project: Path | None = None  # None: the repository the release runs in
    cluster: str | None = None
    service: str | None = None
    family: str | None = None
    container: str | None = None
    template: Path | None = None
    values: Path | None = None
    url: str | None = None
    smoke_text: str | None = None  # None: the service's [tool.pipeline.smoke] text
    base_path: str | None = None  # None: the service's base_path
    smoke_path: str | None = None  # None: the listener rule's path, else base_path
    migrate_command: str | None = None  # None: the environment's

    @property
    def name(self) -> str:
        """How problems name the entry before its settings are read."""
        return self.prefix or (self.project.name if self.project else "?")


@dataclass(frozen=True)
class ReleaseOptions:
    env: str
    file: Path
    parallel: int = 4
    timeout: float = 600.0
    rollback_timeout: float | None = None  # the rollbacks' wait (None: `timeout` again)
    smoke: bool = True
    dry_run: bool = False
    sleep: Callable[[float], None] = time.sleep
    # The repository a service without `project` takes its settings from (None: the
    # context's), and whether there is one (outside any, every service names its project).
    home: Path | None = None
    in_repository: bool = True


def read_file(path: Path) -> list[Entry]:
    """The release file's services; every problem at once."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"release file {path}: not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"release file {path}: not valid TOML: {exc}") from None
    problems = [f"{path}: unknown key {k!r}; use [[service]] tables" for k in sorted(set(data) - {"service"})]
    tables = data.get("service")
    if not isinstance(tables, list) or not tables:
        raise ConfigError([*problems, f"{path}: no [[service]] tables; name at least one service"])
    entries: list[Entry] = []
    for index, table in enumerate(tables, 1):
        where = f"{path}: service {index}"
        problems += [
            f"{where}: unknown key {k!r}; use {', '.join(_KEYS)}" for k in sorted(set(table) - set(_KEYS))
        ]
        if not isinstance(table.get("sha"), str) or not table["sha"].strip():
            problems.append(f"{where}: sha must be a non-empty string")
        bad = [k for k in _KEYS if k in table and not isinstance(table[k], str)]
        problems += [f"{where}: {k} must be a string" for k in bad]
        if "values" in table and "template" not in table:
            problems.append(f"{where}: values needs a template")
        for key in ("base_path", "smoke_path"):
            value = table.get(key)
            if isinstance(value, str) and not (value.startswith("/") and " " not in value):
                problems.append(f"{where}: {key} {value!r} must be a path starting with '/'")
        if isinstance(table.get("base_path"), str) and not table["base_path"].endswith("/"):
            problems.append(f"{where}: base_path {table['base_path']!r} must end with '/' (e.g. /audit/)")
        project = path.parent / table["project"] if isinstance(table.get("project"), str) else None
        if project is not None and not (project / config.PROJECT_FILE).is_file():
            problems.append(f"{where}: project {table['project']!r}: no {config.PROJECT_FILE} in {project}")
        if isinstance(table.get("migrate_command"), str):
            problems += config.command_problems(f"{where}: migrate_command", table["migrate_command"])
        if problems:
            continue
        paths = {k: path.parent / table[k] for k in _PATHS if k in table}
        entries.append(Entry(**{k: v for k, v in table.items() if k not in paths}, **paths))
    if problems:
        raise ConfigError(problems)
    return entries


def first_service(path: Path) -> tuple[str | None, Path | None]:
    """The first service's prefix and project, for the settings the release itself runs
    under (its clients' region, the markers' dataset); (None, None) for a file `check`
    will reject, which then names the problem."""
    try:
        first = tomllib.loads(path.read_text())["service"][0]
        prefix, project = first.get("prefix"), first.get("project")
    except (OSError, tomllib.TOMLDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return None, None
    return (
        prefix if isinstance(prefix, str) and prefix else None,
        path.parent / project if isinstance(project, str) and project else None,
    )


@dataclass(frozen=True)
class Facts:
    """What `check` found for one entry; `make_plan` decides from these alone."""

    entry: Entry
    environment: config.Environment
    settings: config.Settings
    image: ecr.ImageRecord | None
    service: dict[str, Any] | None
    live: dict[str, Any] | None = None  # the running task definition (no template)
    live_tags: list[dict[str, str]] = field(default_factory=list)
    template: dict[str, Any] | None = None
    values: taskdef.EnvironmentValues | None = None
    url: str | None = None
    problems: tuple[str, ...] = ()  # found while looking (a missing repository, a broken template)
    tag: str = ""  # the image tag the sha resolved to ("": the sha as written)
    back_image_gone: str | None = None  # the rollback target's image, no longer in ECR
    test_url: str | None = None  # a native strategy's smoke gate: the test listener


@dataclass(frozen=True)
class ServicePlan:
    name: str
    cluster: str
    service: str
    sha: str
    image: str
    current: str  # the task definition running now
    previous: str  # what a rollback returns to: the last revision that COMPLETED
    request: dict[str, Any]  # RegisterTaskDefinition
    url: str | None
    smoke: config.SmokeSettings = field(repr=False)  # this service's own expectations
    # For the migration's one-off task: the command (environment.migrate_command), and the
    # cluster and network configuration, read from the live service.
    environment: config.Environment = field(repr=False)
    live_service: dict[str, Any] = field(repr=False)
    strategy: str = "ROLLING"  # the service's deployment strategy (rollout/strategy.py)
    test_url: str | None = None  # a native strategy's smoke gate: the test listener

    @property
    def migrate_command(self) -> str:
        return self.environment.migrate_command

    def to_json(self) -> dict[str, Any]:
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        return {**shown, "migrate_command": self.migrate_command, "smoke_text": self.smoke.text}


@dataclass(frozen=True)
class ReleasePlan:
    environment: str
    services: tuple[ServicePlan, ...]

    def to_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "services": [s.to_json() for s in self.services]}


def from_live(
    definition: dict[str, Any],
    tags: list[dict[str, str]],
    container: str,
    image: str,
    sha: str,
    created: datetime,
) -> dict[str, Any]:
    """The live definition as a new request: only `container`'s image and the pipeline's tags
    change; every other field is kept as registered. Pure."""
    request = copy.deepcopy(taskdef.comparable(definition))
    matching = [c for c in request.get("containerDefinitions", []) if c.get("name") == container]
    if not matching:
        names = [c.get("name") for c in request.get("containerDefinitions", [])]
        raise ConfigError(
            f"no container named {container!r} in {short(definition.get('taskDefinitionArn', ''))}; it has {names}"
        )
    matching[0]["image"] = image
    outcome = (taskdef.TAG_VERIFIED, taskdef.TAG_ROLLED_OUT)  # the new revision earns its own
    kept = {t["key"]: t["value"] for t in tags if t["key"] not in outcome}
    kept.update({taskdef.TAG_SHA: sha, taskdef.TAG_CREATED: created.isoformat(timespec="seconds")})
    request["tags"] = [{"key": k, "value": v} for k, v in sorted(kept.items())]
    return request


def make_plan(env: str, facts: list[Facts], created: datetime, model: Any = None) -> ReleasePlan:
    """Decide the release from what `check` found; every problem at once. Pure."""
    problems: list[str] = []
    plans: list[ServicePlan] = []
    names: dict[tuple[str, str], str] = {}
    for fact in facts:
        entry, environment, settings = fact.entry, fact.environment, fact.settings
        name = environment.service
        where = f"{settings.prefix} ({name} in {environment.cluster})"
        if (environment.cluster, name) in names:
            problems.append(f"{where}: listed twice in the release file")
        names[(environment.cluster, name)] = name
        problems += [f"{where}: {p}" for p in fact.problems]
        tag = fact.tag or entry.sha
        if fact.image is None and not fact.problems:
            problems.append(f"{where}: no image {settings.repository}:{tag} in ECR; push it first")
        if fact.service is None:
            problems.append(f"{where}: ECS service {name!r} not found in cluster {environment.cluster!r}")
        if fact.image is None or fact.service is None or fact.problems:
            continue
        current = str(fact.service.get("taskDefinition", ""))
        previous = ecs.last_known_good(fact.service)
        primary = next((d for d in ecs.deployments(fact.service) if d.status == "PRIMARY"), None)
        if primary and primary.rollout_state == "IN_PROGRESS":
            problems.append(
                f"{where}: a deployment of {short(primary.task_definition)} is still rolling out; wait for it"
            )
        elif previous is None:
            problems.append(
                f"{where}: no deployment ever COMPLETED, so there is nothing safe to roll back to"
            )
        elif fact.back_image_gone:
            # All or nothing needs a way back that can start: ECS could not pull this image.
            problems.append(
                f"{where}: its rollback target {short(previous)} runs {fact.back_image_gone}, which is no "
                "longer in ECR, so a failed release could not roll it back; push that image again, or "
                "deploy this service on its own (`invoke deploy` leaves it as it runs if it fails)"
            )
        try:
            strategy_name = strategy.named(fact.service)
        except ConfigError as exc:
            problems += [f"{where}: {p}" for p in exc.problems]
            continue
        account = fact.image.registry_id or settings.account_id or ""
        image = f"{settings.ecr_endpoint or settings.registry(account)}/{settings.repository}:{tag}"
        try:
            if fact.template is not None:
                request = taskdef.render(
                    fact.template,
                    fact.values or taskdef.EnvironmentValues(),
                    _inputs(fact, image, account, created),
                    str(entry.template),
                )
            else:
                request = from_live(
                    fact.live or {}, fact.live_tags, environment.container, image, tag, created
                )
            taskdef.validate_request(request, where, model)
        except ConfigError as exc:
            problems += [f"{where}: {p}" for p in exc.problems]
            continue
        plans.append(
            ServicePlan(
                name,
                environment.cluster,
                name,
                tag,
                image,
                current,
                previous or current,
                request,
                fact.url,
                settings.smoke,
                environment,
                fact.service,
                strategy_name,
                fact.test_url,
            )
        )
    if problems:
        raise ConfigError(problems)
    return ReleasePlan(env, tuple(plans))


def _inputs(fact: Facts, image: str, account: str, created: datetime) -> taskdef.RenderInputs:
    return prepare.render_inputs(
        fact.settings, fact.environment, image, fact.tag or fact.entry.sha, account, created
    )


def _settings_for(
    ctx: Context, entry: Entry, env: str, home: Path | None = None
) -> tuple[config.Settings, config.Environment]:
    """The service's own settings (its project's, else the invoking repository's), with the
    entry's overrides."""
    environ = {k: v for k, v in ctx.environ.items() if k not in _SINGLE_SERVICE_VARIABLES}
    if entry.prefix:
        environ["AWS_RESOURCE_NAME_PREFIX"] = entry.prefix
    settings = config.load(environ, (entry.project or home or ctx.settings.root).resolve())
    if entry.base_path is not None:
        settings = replace(settings, base_path=entry.base_path)
    if entry.smoke_text is not None:
        settings = replace(settings, smoke=replace(settings.smoke, text=entry.smoke_text))
    environment = settings.environment(env)
    overrides: dict[str, str] = {
        k: getattr(entry, k) for k in ("cluster", "service", "family", "container") if getattr(entry, k)
    }
    if entry.migrate_command is not None:
        overrides["migrate_command"] = entry.migrate_command
    return settings, config.Environment(**{**environment.__dict__, **overrides})


def check(ctx: Context, options: ReleaseOptions) -> ReleasePlan:
    """Read everything the plan needs; nothing changes. One ConfigError lists every problem."""
    entries = read_file(options.file)
    problems: list[str] = []
    named: list[tuple[Entry, config.Settings, config.Environment]] = []
    for index, entry in enumerate(entries, 1):
        if entry.project is None and not options.in_repository:
            problems.append(
                f"{options.file}: service {index} ({entry.name}): no project, and the release runs "
                'outside a service repository; add project = "<path to its repository>"'
            )
            continue
        try:
            named.append((entry, *_settings_for(ctx, entry, options.env, options.home)))
        except ConfigError as exc:
            problems += [f"{entry.name}: {p}" for p in exc.problems]
    if problems:
        raise ConfigError(problems)
    for name in ("ecs", "ecr", "elbv2"):  # made here: creating boto3 clients is not thread-safe
        ctx.clients.aws(name)
    services = ecs.describe_many(ctx.clients, [(e.cluster, e.service) for _, _, e in named])

    def gather(item: tuple[Entry, config.Settings, config.Environment]) -> Facts:
        entry, settings, environment = item
        found: list[str] = []  # problems that do not stop the other look-ups
        service = services[(environment.cluster, environment.service)]
        image = template = values = live = None
        tag = entry.sha
        tags: list[dict[str, str]] = []
        try:
            image, tag = resolve_image(settings, ctx, entry.sha)
        except NotFound as exc:  # no repository: its message says how to create it
            found.append(exc.message)
        except ConfigError as exc:  # a short sha that matches several images
            found += exc.problems
        try:
            if entry.template is not None:
                template = taskdef.load_template(entry.template)
                values = taskdef.load_values(entry.values) if entry.values else None
            elif service is not None:
                revision = ecs.describe_revision(ctx.clients, str(service.get("taskDefinition")))
                live, tags = revision.definition, revision.raw_tags
        except ConfigError as exc:
            found += exc.problems
        previous = ecs.last_known_good(service) if service is not None else None
        gone = safety.missing_image(ctx, previous, settings) if previous and image is not None else None
        url = entry.url if options.smoke else None
        if options.smoke and url is None and service is not None and service.get("loadBalancers"):
            url = smoke.discover_url(settings, environment, ctx.clients, path=entry.smoke_path)
        test_url = smoke.test_listener_url(ctx.clients, service, url) if url and service else None
        return Facts(
            entry,
            environment,
            settings,
            image,
            service,
            live,
            tags,
            template,
            values,
            url,
            tuple(found),
            tag if image is not None else "",
            gone,
            test_url,
        )

    facts = []
    for entry_facts in each(gather, named, options.parallel):
        if isinstance(entry_facts, PipelineError):
            problems.append(entry_facts.message)
        else:
            facts.append(entry_facts)
    if problems:
        raise ConfigError(problems)
    return make_plan(options.env, facts, datetime.now(UTC), ctx.clients.aws("ecs").meta.service_model)


def resolve_image(settings: config.Settings, ctx: Context, sha: str) -> tuple[ecr.ImageRecord | None, str]:
    """The image for a sha as pull-and-run finds it: the exact tag, else the one image whose
    sha tag starts with it (a short sha); several are refused, naming them. (None, sha)
    when nothing matches."""
    exact = ecr.find_image(settings, ctx.clients, sha)
    if exact is not None or not selection.SHORT_SHA_RE.match(sha):
        return exact, sha
    try:
        chosen = selection.select(
            ecr.list_images(settings, ctx.clients),
            selection.Selector(selection.SHA, sha),
            settings.repository,
            f"sha {sha}",
        )
    except NotFound:
        return None, sha
    return chosen.record, chosen.tag or sha


def describe(plan: ReleasePlan) -> list[str]:
    """What executing the plan would do, for --dry-run."""
    lines = [f"release to {plan.environment}: {len(plan.services)} services"]
    for s in plan.services:
        lines.append(
            f"  {s.name} in {s.cluster}: {short(s.current)} → new revision of {s.request['family']} "
            f"with {s.image}; rollback target {short(s.previous)}; smoke {s.url or 'none'}"
            + (f" expecting {s.smoke.text!r}" if s.url and s.smoke.text else "")
        )
        if s.migrate_command:
            lines.append(f"    first {migrate.describe(s.migrate_command)}")
    lines.append("dry run: nothing was registered or updated")
    return lines
