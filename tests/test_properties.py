"""Inputs at scale (hypothesis): every parser users feed either accepts its input or
refuses it with a ConfigError whose one-line message names the input. Nothing else
escapes: no KeyError, TypeError or traceback reaches a person."""

from __future__ import annotations

import json
import re
import string
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import ci_identity, config, plan, selection, taskdef
from pipeline.audit import verdict
from pipeline.errors import ConfigError
from pipeline.git import validate_sha
from pipeline.local import read_env_file

ROOT = Path(__file__).resolve().parent.parent
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text a person might type or paste: printable, unicode, control characters, separators.
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
ref_like = st.text(alphabet=string.ascii_letters + string.digits + "-_./@{}~^:?*[\\ \x7f\t", max_size=30)


def refused_clearly(exc: ConfigError) -> None:
    assert exc.message and "\n" not in exc.message and "Traceback" not in exc.message


def or_valid(*examples: str) -> st.SearchStrategy[str]:
    """Random text, or one of the valid values: both sides of the parser get exercised."""
    return st.one_of(text, st.sampled_from(examples))


@FAST
@given(
    prefix=st.one_of(text, st.from_regex(r"[a-z][a-z0-9-]{1,20}", fullmatch=True)),
    region=or_valid("us-east-1", "eu-west-1"),
    account=or_valid("123456789012", ""),
    endpoint=or_valid("127.0.0.1:5000", "123456789012.dkr.ecr.us-east-1.amazonaws.com", ""),
    repository=or_valid("app", "team/app", ""),
    base_path=or_valid("/hello/", "/"),
    port=st.one_of(st.integers(-5, 70000), text, st.none(), st.booleans()),
    pass_env=st.one_of(st.lists(text, max_size=3), text, st.integers()),
)
def test_settings_values(
    prefix: str,
    region: str,
    account: str,
    endpoint: str,
    repository: str,
    base_path: str,
    port: Any,
    pass_env: Any,
) -> None:
    environ = {
        "AWS_RESOURCE_NAME_PREFIX": prefix,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCOUNT_ID": account,
        "ECR_ENDPOINT": endpoint,
        "ECR_REPOSITORY_NAME": repository,
    }
    project = {"base_path": base_path, "container_port": port, "pass_env": pass_env}
    try:
        loaded = config.load(environ, ROOT, project)
    except ConfigError as exc:
        refused_clearly(exc)
        return
    assert loaded.prefix == prefix.strip() and 1 <= loaded.container_port <= 65535
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) for name in loaded.pass_env)


env_lines = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}=[^\n]{0,12}", fullmatch=True),
        st.sampled_from(["# a comment", "", "FROM_SHELL", "export A=1", "B='quoted'", 'C="x\\"y"']),
    ),
    max_size=6,
).map("\n".join)


@FAST
@given(content=env_lines)
def test_env_files(content: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "local.env"
        path.write_text(content)
        try:
            values = read_env_file(path, {"FROM_SHELL": "x"}, ROOT / "local.env.example")
        except ConfigError as exc:
            refused_clearly(exc)
            return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=10)
    | st.sampled_from(["${family}", "${nope}", "${port}", "x${image}y"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
template_like = st.fixed_dictionaries(
    {},
    optional={
        "family": json_values,
        "containerDefinitions": st.one_of(
            json_values,
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "name": json_values,
                        "image": json_values,
                        "portMappings": json_values,
                        "environment": json_values,
                    },
                ),
                max_size=2,
            ),
        ),
        "cpu": json_values,
        "networkMode": json_values,
        "tags": json_values,
    },
)

INPUTS = taskdef.RenderInputs(
    family="fam",
    container="web",
    image="127.0.0.1:5000/app:abc1234",
    sha="abc1234",
    environment="prod",
    region="us-east-1",
    account_id="123456789012",
    prefix="app",
    cluster="app-cluster",
    service="app-service",
    execution_role_arn="arn:aws:iam::123456789012:role/x",
    log_group="/ecs/app",
    port=8080,
    base_path="/hello/",
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)


@FAST
@given(
    template=template_like,
    values=st.one_of(
        json_values,
        st.dictionaries(
            st.sampled_from(["values", "environment", "secrets", "env"]), json_values, max_size=3
        ),
    ),
)
def test_templates_and_values_files(template: dict[str, Any], values: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        template_path, values_path = Path(tmp) / "taskdef.json", Path(tmp) / "prod.json"
        template_path.write_text(json.dumps(template))
        values_path.write_text(json.dumps(values))
        try:
            loaded = taskdef.load_values(values_path)
            request = taskdef.render(taskdef.load_template(template_path), loaded, INPUTS, "taskdef.json")
            taskdef.validate_request(request, "taskdef.json")
        except ConfigError as exc:
            refused_clearly(exc)
            return
    assert isinstance(request["containerDefinitions"], list) and request["containerDefinitions"]


@FAST
@given(content=st.text(max_size=80))
def test_template_files_that_are_not_json(content: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "taskdef.json"
        path.write_text(content)
        try:
            loaded = taskdef.load_template(path)
        except ConfigError as exc:
            refused_clearly(exc)
            return
    # Accepted only when the text is a JSON object.
    assert isinstance(loaded, dict) and content.strip().startswith("{")


@FAST
@given(name=st.one_of(ref_like, text), kind=st.sampled_from(["branch", "tag"]))
def test_git_refs(name: str, kind: Any) -> None:
    try:
        made = plan.make(kind, name, config.CIPolicy())
    except ConfigError as exc:
        refused_clearly(exc)
        assert repr(name) in exc.message
        return
    assert made.ref == name
    # A ref the policy maps to an environment is exactly a ref its deploy role trusts.
    if made.environment:
        wanted = f"refs/{'heads' if kind == 'branch' else 'tags'}/{name}"
        patterns = ci_identity.trusted_refs(config.CIPolicy(), made.environment)
        assert any(re.fullmatch(re.escape(p).replace(r"\*", ".*"), wanted) for p in patterns)


@FAST
@given(value=st.one_of(text, st.text(alphabet="0123456789abcdefABCDEF-dirty", max_size=50)))
def test_sha_prefixes(value: str) -> None:
    try:
        sha = validate_sha(value)
    except ConfigError as exc:
        refused_clearly(exc)
    else:
        assert re.fullmatch(r"[0-9a-f]{7,40}", sha)
    try:
        chosen = selection.parse_selector(value, False, False)
    except ConfigError as exc:
        refused_clearly(exc)
    else:
        assert chosen.sha == value.strip().lower()


@FAST
@given(
    tag=st.one_of(
        text, st.from_regex(r"v?[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(-[0-9a-z.]{0,8})?", fullmatch=True)
    )
)
def test_version_tags(tag: str) -> None:
    key = selection.semver_key(tag)
    assert key is None or (len(key) == 5 and all(isinstance(n, int) for n in key[:4]))


@FAST
@given(
    report=st.fixed_dictionaries(
        {
            "dependencies": st.lists(
                st.one_of(
                    st.fixed_dictionaries({"name": st.text(max_size=5), "skip_reason": st.text(max_size=5)}),
                    st.fixed_dictionaries(
                        {
                            "name": st.text(max_size=5),
                            "version": st.text(max_size=5),
                            "vulns": st.lists(
                                st.fixed_dictionaries(
                                    {
                                        "id": st.text(max_size=5),
                                        "fix_versions": st.lists(st.text(max_size=4), max_size=2),
                                    }
                                ),
                                max_size=2,
                            ),
                        }
                    ),
                ),
                max_size=5,
            )
        }
    )
)
def test_audit_reports(report: dict[str, Any]) -> None:
    found = verdict(report)
    assert found.audited + found.skipped == len(report["dependencies"])
    assert len(found.vulnerable) == sum(len(d.get("vulns", [])) for d in report["dependencies"])
