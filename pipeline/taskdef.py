"""Task definitions: template + environment values → the RegisterTaskDefinition request.

The template is the source of truth. Every field the user writes is passed through
as written (executionRoleArn, runtimePlatform, ephemeralStorage, volumes, tags...);
rendering only fills `${placeholders}`, adds the environment's plain variables and
secret references to the service's container, and tags the revision with where it
came from. Nothing here does I/O beyond reading the two files.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# ECS accepts a Secrets Manager or SSM ARN, or (same region) an SSM parameter name.
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:(ssm|secretsmanager):[a-z0-9-]+:\d{12}:(parameter/.+|secret:.+)$")
_SSM_NAME = re.compile(r"^/?[A-Za-z0-9_.\-/]{1,2048}$")
# Names of credentials (DB_PASS, SECRET_KEY, GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY...), and values
# that carry one (a URL with a password, a private key, an AWS access key id).
_LOOKS_SECRET = re.compile(
    r"(^|_)(PASSWORD|PASSWD|PASS|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIALS?|SIGNING_KEY)$"
    r"|(^|_)SECRETS?(_|$)"
)
_SECRET_VALUE = re.compile(
    r"://[^/\s:@]*:[^/\s@]+@|-----BEGIN [A-Z ]*PRIVATE KEY|\b(AKIA|ASIA)[0-9A-Z]{16}\b"
)
_ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Fields DescribeTaskDefinition returns that RegisterTaskDefinition does not take:
# dropped, so a definition copied from the console or the CLI works as a template.
_READ_ONLY = {
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
}
TAG_SHA, TAG_BUILD, TAG_CREATED, TAG_VERIFIED, TAG_ROLLED_OUT = (
    "pipeline:git-sha",
    "pipeline:ci-build-url",
    "pipeline:created-at",
    "pipeline:verified-at",  # rolled out and passed its smoke test: a rollback target
    "pipeline:rolled-out-at",  # rolled out without a smoke test: never a rollback target
)


@dataclass(frozen=True)
class EnvironmentValues:
    """One environment's file: template values, plain variables, secret references."""

    values: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)


# Deeper than any task definition needs (ECS's own nest about 5); Python's JSON parser would
# otherwise recurse until RecursionError.
_MAX_DEPTH = 32


def _read_json(path: Path, what: str) -> Any:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: not found; create it (`ecs-pipeline init` writes one)") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path}: not UTF-8 (byte {exc.start}); save it as UTF-8 JSON") from None
    # Brackets before parsing: the parser recurses per level, and a deep enough file exhausts the stack.
    if _nesting(text) > _MAX_DEPTH:
        raise ConfigError(
            f"{what} {path}: nested deeper than {_MAX_DEPTH} levels; no task definition needs that"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    return data


def _nesting(text: str) -> int:
    """The deepest bracket nesting in JSON text, outside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def load_template(path: Path) -> dict[str, Any]:
    data = _read_json(path, "task definition template")
    if not isinstance(data, dict):
        raise ConfigError(f"task definition template {path}: must be a JSON object")
    return data


def load_values(path: Path) -> EnvironmentValues:
    """The environment's values file; a missing file means no extra values."""
    if not path.exists():
        return EnvironmentValues()
    data = _read_json(path, "environment values")
    problems = []
    if not isinstance(data, dict):
        raise ConfigError(f"environment values {path}: must be a JSON object")
    for key in sorted(set(data) - {"values", "environment", "secrets"}):
        problems.append(f"{path}: unknown key {key!r}; use values, environment, secrets")
    for key in ("values", "environment", "secrets"):
        if not isinstance(data.get(key, {}), dict):
            problems.append(f"{path}: {key} must be an object of NAME: value")
    values = data.get("values", {})
    for key in sorted(set(values) & BUILT_IN if isinstance(values, dict) else ()):
        problems.append(
            f"{path}: values.{key}: set by the pipeline (the settings and the checked sha), "
            "never by a values file; remove it"
        )
    for key in sorted(values if isinstance(values, dict) else ()):
        # A template reaches a value only as ${NAME}: any other key is a typo nothing uses.
        if not _PLACEHOLDER.fullmatch(f"${{{key}}}"):
            problems.append(f"{path}: values: {key!r} is not a placeholder name; use letters, digits and _")
    if problems:
        raise ConfigError(problems)
    return EnvironmentValues(
        values=dict(data.get("values", {})),
        environment={k: str(v) for k, v in data.get("environment", {}).items()},
        secrets={k: str(v) for k, v in data.get("secrets", {}).items()},
    )


def _substitute(node: Any, values: dict[str, Any], missing: set[str]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, values, missing) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, values, missing) for v in node]
    if not isinstance(node, str):
        return node
    whole = _PLACEHOLDER.fullmatch(node)
    if whole:  # "${port}" keeps the value's type, so numbers stay numbers
        name = whole[1]
        if name not in values:
            missing.add(name)
            return node
        return values[name]

    def one(match: re.Match[str]) -> str:
        if match[1] not in values:
            missing.add(match[1])
            return match[0]
        return str(values[match[1]])

    return _PLACEHOLDER.sub(one, node)


def check_secret_reference(name: str, value_from: str) -> str | None:
    """None when value_from is an ARN or parameter name ECS accepts, else the problem.

    The problem names the key, never the value: a secret's value put there by mistake
    must not reach an error line or a JSON log."""
    if _SECRET_ARN.match(value_from) or (not value_from.startswith("arn:") and _SSM_NAME.match(value_from)):
        return None
    return (
        f"secret {name}: its value is not a Secrets Manager/SSM ARN or an SSM parameter name "
        "(e.g. arn:aws:ssm:us-east-1:123456789012:parameter/app/prod/key or /app/prod/key); "
        "if it is the secret itself, store it in SSM and rotate it"
    )


# The placeholders the pipeline fills: the identity the checks checked (image, family,
# container, roles...) and names from the settings. A values file may not set them.
BUILT_IN = frozenset(
    {
        "family",
        "container",
        "image",
        "sha",
        "environment",
        "region",
        "account_id",
        "prefix",
        "cluster",
        "service",
        "execution_role_arn",
        "task_role_arn",
        "log_group",
        "port",
        "base_path",
    }
)


@dataclass(frozen=True)
class RenderInputs:
    """What a template may refer to as ${name}, besides its environment's `values`."""

    family: str
    container: str
    image: str
    sha: str
    environment: str
    region: str
    account_id: str
    prefix: str
    cluster: str
    service: str
    execution_role_arn: str
    log_group: str
    port: int
    base_path: str
    created_at: datetime
    build_url: str = ""
    task_role_arn: str = ""  # the role `invoke setup` creates for the service's code

    def placeholders(self) -> dict[str, Any]:  # keys: BUILT_IN
        return {
            "family": self.family,
            "container": self.container,
            "image": self.image,
            "sha": self.sha,
            "environment": self.environment,
            "region": self.region,
            "account_id": self.account_id,
            "prefix": self.prefix,
            "cluster": self.cluster,
            "service": self.service,
            "execution_role_arn": self.execution_role_arn,
            "log_group": self.log_group,
            "port": self.port,
            "base_path": self.base_path,
        } | ({"task_role_arn": self.task_role_arn} if self.task_role_arn else {})


def render(
    template: dict[str, Any],
    env_values: EnvironmentValues,
    inputs: RenderInputs,
    where: str,
    values_where: str | None = None,
) -> dict[str, Any]:
    """The RegisterTaskDefinition request for one environment and image. Pure.

    Problems are named against the file they are in: the template (`where`) or the
    environment's values file (`values_where`)."""
    problems: list[str] = []
    in_values = values_where or where
    values = {**inputs.placeholders(), **env_values.values}
    known = ", ".join(sorted(values))
    missing: set[str] = set()
    # Values may use the built-in placeholders (e.g. a secret ARN naming ${region}).
    # A value that is one placeholder keeps its type ("${port}" → 8080): ECS wants strings here.
    env_values = EnvironmentValues(
        values=env_values.values,
        environment={k: str(v) for k, v in _substitute(env_values.environment, values, missing).items()},
        secrets={k: str(v) for k, v in _substitute(env_values.secrets, values, missing).items()},
    )
    for name in sorted(missing):
        problems.append(f"{in_values}: unknown placeholder ${{{name}}}; known: {known}")
    missing = set()
    request = _substitute({k: v for k, v in template.items() if k not in _READ_ONLY}, values, missing)
    for name in sorted(missing):
        problems.append(f"{where}: unknown placeholder ${{{name}}}; known: {known}")

    request.setdefault("family", inputs.family)
    containers = request.get("containerDefinitions")
    if not isinstance(containers, list) or not containers:
        problems.append(f"{where}: containerDefinitions must list at least one container")
        containers = []
    for index, container in enumerate(containers):
        if not isinstance(container, dict) or not container.get("name") or not container.get("image"):
            problems.append(f"{where}: containerDefinitions[{index}] needs a name and an image")
    names = [c.get("name") for c in containers if isinstance(c, dict)]
    if containers and inputs.container not in names:
        problems.append(
            f"{where}: no container named {inputs.container!r} (the service's container); "
            f'the template has {names}; name it "${{container}}"'
        )

    for name in env_values.environment:
        if not _ENV_VAR_NAME.match(name):
            problems.append(f"{in_values}: environment variable name {name!r} is not valid")
        elif _LOOKS_SECRET.search(name.upper()) or _SECRET_VALUE.search(env_values.environment[name]):
            problems.append(
                f"{in_values}: {name} looks like a secret but is a plain environment value; "
                'move it to "secrets" as an SSM parameter or Secrets Manager reference'
            )
    for name, value_from in env_values.secrets.items():
        # The container sees a secret as an environment variable of this name.
        if not _ENV_VAR_NAME.match(name):
            problems.append(f"{in_values}: secret name {name!r} is not a valid environment variable name")
            continue
        problem = check_secret_reference(name, value_from)
        if problem:
            problems.append(f"{in_values}: {problem}")
    problems += port_problems(containers, inputs.container, inputs.port, where)
    problems += identity_problems(request, containers, inputs, where)
    if problems:
        raise ConfigError(problems)

    for container in containers:
        if container["name"] != inputs.container:
            continue
        env = {e["name"]: str(e["value"]) for e in container.get("environment", [])}
        env.update(env_values.environment)
        if env:
            container["environment"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
        secrets = {s["name"]: s["valueFrom"] for s in container.get("secrets", [])}
        secrets.update(env_values.secrets)
        if secrets:
            container["secrets"] = [{"name": k, "valueFrom": v} for k, v in sorted(secrets.items())]
    for container in containers:  # the API wants strings; "${port}" made a number
        for entry in container.get("environment", []):
            entry["value"] = str(entry["value"])

    tags = {t["key"]: t["value"] for t in request.get("tags", [])}
    tags[TAG_SHA] = inputs.sha
    tags[TAG_CREATED] = inputs.created_at.isoformat(timespec="seconds")
    if inputs.build_url:
        tags[TAG_BUILD] = inputs.build_url
    request["tags"] = [{"key": k, "value": v} for k, v in sorted(tags.items())]
    return request


def identity_problems(
    request: dict[str, Any], containers: list[Any], inputs: RenderInputs, where: str
) -> list[str]:
    """What the checks checked is what registers: the family, the service container's image
    (the sha's image in ECR) and the roles (the environment's own). A template that writes
    another one literally would deploy what nothing checked."""
    checked = (
        ("family", inputs.family, "family"),
        ("executionRoleArn", inputs.execution_role_arn, "execution_role_arn"),
        ("taskRoleArn", inputs.task_role_arn, "task_role_arn"),
    )
    problems = [
        f'{where}: {key} is {request[key]!r}, not the checked {want!r}; write "${{{name}}}"'
        for key, want, name in checked
        if key in request and want and request[key] != want
    ]
    for definition in containers:
        service_container = isinstance(definition, dict) and definition.get("name") == inputs.container
        if service_container and definition.get("image") != inputs.image:
            problems.append(
                f"{where}: container {inputs.container} runs {definition.get('image')!r}, not the checked "
                f'image {inputs.image}; write "image": "${{image}}"'
            )
    return problems


def port_problems(containers: list[Any], container: str, port: int, where: str) -> list[str]:
    """The service's container must map container_port, where the load balancer and the
    health check send traffic: a template that maps another port would deploy a service
    nothing can reach."""
    for definition in containers:
        if not isinstance(definition, dict) or definition.get("name") != container:
            continue
        mapped = [m.get("containerPort") for m in definition.get("portMappings") or [] if isinstance(m, dict)]
        if mapped and port not in mapped:
            shown = ", ".join(str(p) for p in mapped)
            return [
                f"{where}: container {container} maps port {shown}, but container_port in "
                f'[tool.pipeline] is {port}; write "containerPort": "${{port}}" or fix container_port'
            ]
    return []


def validate_request(request: dict[str, Any], where: str, model: Any = None) -> None:
    """Check the request against the ECS API's own model (names, types, required fields).

    `model`: an ECS client's `meta.service_model`, already loaded; without it a new botocore
    session loads the model again (about 0.1-0.3 s on a deploy's path)."""
    import botocore.session
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    model = model or botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    try:
        validate_parameters(request, shape)
    except ParamValidationError as exc:
        lines = [line.strip() for line in str(exc.kwargs.get("report", exc)).splitlines() if line.strip()]
        raise ConfigError([f"{where}: {line}" for line in lines]) from None


def comparable(definition: dict[str, Any] | None, tags: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A live definition (DescribeTaskDefinition) in request form, for diffs."""
    if not definition:
        return {}
    result = {k: v for k, v in definition.items() if k not in _READ_ONLY}
    if tags:
        result["tags"] = tags
    return result


_BOOKKEEPING_TAGS = {TAG_CREATED, TAG_VERIFIED, TAG_ROLLED_OUT}


def _prune(node: Any) -> Any:
    """Drop what carries no meaning in a diff: empty values the API echoes back, and
    the pipeline's own time stamps."""
    if isinstance(node, dict):
        pruned = {k: _prune(v) for k, v in node.items()}
        if "tags" in pruned and isinstance(pruned["tags"], list):
            pruned["tags"] = sorted(
                (t for t in pruned["tags"] if t.get("key") not in _BOOKKEEPING_TAGS), key=lambda t: t["key"]
            )
        return {k: v for k, v in pruned.items() if v not in ([], {}, None)}
    if isinstance(node, list):
        return [_prune(v) for v in node]
    return node


def diff(live: dict[str, Any], rendered: dict[str, Any], label: str) -> str:
    def lines(data: dict[str, Any]) -> list[str]:
        return json.dumps(_prune(data), indent=2, sort_keys=True, default=str).splitlines(keepends=True)

    changes = difflib.unified_diff(lines(live), lines(rendered), f"live {label}", "rendered", n=2)
    return "".join(changes) or "(no differences)\n"
