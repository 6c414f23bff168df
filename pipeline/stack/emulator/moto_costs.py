"""moto server's per-request costs that do not change a single answer.

Measured with py-spy on the emulator during a full test run: for every request moto's
dispatcher lists its package directory (an isdir per backend) to match the Host header,
and lists the response class's methods (inspect.getmembers) to find the action's; and
CloudFormation parses the same two templates with PyYAML's pure-Python loader on every
CreateChangeSet, ExecuteChangeSet and DescribeStacks. These answers are fixed once the
stand-ins have added their methods (before the server starts), so they are computed once.
Werkzeug's line per request (through colorama) was 4 % of the emulator's CPU, and ECS
calls all go to one path: it logs warnings only.
"""

from __future__ import annotations

import copy
import functools
import types
from typing import Any


def install() -> None:
    import logging

    import yaml
    from moto import backends
    from moto.cloudformation import models, responses
    from moto.cloudformation.utils import yaml_tag_constructor
    from moto.core import responses as core_responses
    from moto.core.utils import method_names_from_class

    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    @functools.cache
    def method_names(clazz: object) -> frozenset[str]:
        return frozenset(method_names_from_class(clazz))

    core_responses.method_names_from_class = method_names  # type: ignore[assignment]

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]

    # libyaml's parser with moto's own constructor for !Ref, !Sub, !GetAtt...: the same
    # document as yaml.Loader builds. Callers get a copy, since moto keeps and edits them.
    class TemplateLoader(yaml.CLoader):  # type: ignore[misc,name-defined]
        pass

    TemplateLoader.add_multi_constructor("", yaml_tag_constructor)

    @functools.lru_cache(maxsize=32)
    def parse(text: str) -> Any:
        return yaml.load(text, Loader=TemplateLoader)  # noqa: S506 (moto's constructor, its loader's power)

    def load(stream: Any, Loader: Any = None) -> Any:  # noqa: N803 (PyYAML's keyword)
        if not isinstance(stream, str):
            return yaml.load(stream, Loader=Loader)  # noqa: S506
        return copy.deepcopy(parse(stream))

    cached = types.ModuleType("yaml")
    cached.__dict__.update(vars(yaml))
    cached.load = load  # type: ignore[attr-defined]
    models.yaml = cached  # type: ignore[attr-defined]
    responses.yaml = cached  # type: ignore[attr-defined]
