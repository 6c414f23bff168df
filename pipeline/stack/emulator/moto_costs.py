"""moto server's per-request costs that do not change a single answer.

Measured with py-spy on the emulator during a full test run: for every request moto's
dispatcher lists its package directory (an isdir per backend) to match the Host header,
and CloudFormation parses the same two templates with PyYAML's pure-Python loader on
every CreateChangeSet, ExecuteChangeSet and DescribeStacks. Both answers are fixed for the
life of the process, so they are computed once.
"""

from __future__ import annotations

import copy
import functools
import types
from typing import Any


def install() -> None:
    import yaml
    from moto import backends
    from moto.cloudformation import models, responses
    from moto.cloudformation.utils import yaml_tag_constructor

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
