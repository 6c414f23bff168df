"""pipeline/config/policy.py: [tool.pipeline.ci] checked against the steps and the environments."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline import config
from pipeline.config import CIPolicy
from pipeline.errors import ConfigError
from tests.helpers import ROOT

BASE = {"AWS_RESOURCE_NAME_PREFIX": "shop", "AWS_DEFAULT_REGION": "eu-west-1"}


def test_the_repository_policy_is_the_default() -> None:
    """This repository's pyproject.toml keeps the seed's flow (the CircleCI config relies on it)."""
    assert config.load_policy(ROOT) == CIPolicy()


@pytest.mark.parametrize(
    ("ci", "environments", "expected"),
    [
        ({"mainline_steps": ["test", "deploi"]}, {}, "mainline_steps: unknown step 'deploi'"),
        ({"mainline_environment": "qa"}, {}, "mainline_environment: 'qa' is not an environment"),
        ({"tag_environments": {"-qa": "qa"}}, {}, "tag_environments '-qa': 'qa' is not an environment"),
        ({"tag_environments": {"-qa": "qa"}}, {"qa": {}}, None),
        ({"tag_environments": ["-prod"]}, {}, "tag_environments: must map a tag suffix"),
        ({"branch_steps": ["test", "deploy"]}, {}, "branch_steps: 'deploy' needs an environment"),
        ({"dev_steps": ["integration"]}, {}, "dev_steps: 'integration' needs an environment"),
        ({"mainline_environment": ""}, {}, "mainline_steps: 'deploy' needs an environment"),
        ({"mainline_environment": "", "mainline_steps": ["test"]}, {}, None),
        ({"tag_steps": ["dockerize", "push", "deploy"]}, {}, "tag_steps: 'dockerize' would rebuild"),
        ({"mainline_branches": ["ma in"]}, {}, "mainline_branches: 'ma in' is not a branch name"),
        ({"mainline_branches": "main"}, {}, "mainline_branches: must be a list of strings"),
        ({"dev_suffix": False}, {}, "dev_suffix: must be a string"),
        ({"deploy_on": "main"}, {}, "[tool.pipeline.ci] deploy_on: unknown setting"),
    ],
)
def test_policy_problems(ci: dict[str, Any], environments: dict[str, Any], expected: str | None) -> None:
    project = {"ci": ci, "environments": environments}
    if expected is None:
        config.load_policy(ROOT, project)
        return
    with pytest.raises(ConfigError) as err:
        config.load_policy(ROOT, project)
    assert expected in err.value.message
    assert "\n" not in err.value.message


def test_full_settings_report_policy_problems_with_the_rest() -> None:
    """config.load checks the policy with the same rules, every problem at once."""
    project = {"container_port": 0, "ci": {"tag_steps": ["deploi"], "mainline_environment": "qa"}}
    with pytest.raises(ConfigError) as err:
        config.load({"AWS_RESOURCE_NAME_PREFIX": "plan-test"}, ROOT, project)
    assert [p.split(":")[0] for p in err.value.problems] == [
        "[tool.pipeline] container_port",
        "[tool.pipeline.ci] tag_steps",
        "[tool.pipeline.ci] mainline_environment",
    ]


def test_ci_policy_must_name_defined_environments() -> None:
    with pytest.raises(ConfigError) as info:
        config.load(BASE, ROOT, {"ci": {"mainline_environment": "production"}})
    (problem,) = info.value.problems
    assert problem.startswith(
        "[tool.pipeline.ci] mainline_environment: 'production' is not an environment; known: prod, staging"
    )
