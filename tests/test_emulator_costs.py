"""The emulator's shortcuts around moto's fixed per-request work change no answer."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers import ROOT


def test_cached_template_parsing_builds_moto_s_own_documents_and_hands_out_copies() -> None:
    # In a process of its own: install() patches moto's modules for the rest of the process.
    script = textwrap.dedent(
        """
        import yaml
        from importlib import resources
        from moto import backends
        from moto.cloudformation import models, responses
        from moto.cloudformation.utils import yaml_tag_constructor

        texts = [(resources.files("pipeline") / "templates" / n).read_text()
                 for n in ("project.yaml", "environment.yaml")]
        yaml.add_multi_constructor("", yaml_tag_constructor)
        expected = [yaml.load(t, Loader=yaml.Loader) for t in texts]  # moto's own way
        modules = list(backends.list_of_moto_modules())

        from pipeline.stack.emulator import moto_costs
        moto_costs.install()
        assert [models.Stack.parse_template(t) for t in texts] == expected
        assert [responses.yaml.load(t, Loader=yaml.Loader) for t in texts] == expected
        assert any("Fn::Sub" in str(d) or "Ref" in str(d) for d in expected)  # tags were parsed
        first = models.Stack.parse_template(texts[0])
        first["Resources"].clear()
        assert models.Stack.parse_template(texts[0]) == expected[0]  # a copy each time
        assert list(backends.list_of_moto_modules()) == modules
        print("same")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "same", proc.stdout + proc.stderr
