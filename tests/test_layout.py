"""The package's layout stays what the README's architecture section draws: every module
opens with a one-line summary, none grows past about 500 lines, no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "pipeline"
MAX_LINES = 500
# The emulator's stand-ins follow moto's internals, not this layout.
OWN_LAYOUT = [p for p in sorted(PACKAGE.rglob("*.py")) if "emulator" not in p.relative_to(PACKAGE).parts]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_opens_with_a_one_line_summary() -> None:
    for path in OWN_LAYOUT:
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=False)
        assert doc, f"{path.relative_to(ROOT)}: no docstring"
        lines = doc.strip("\n").splitlines()
        assert len(lines) == 1 or not lines[1].strip(), f"{path.relative_to(ROOT)}: summary is not one line"


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n for p in OWN_LAYOUT if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def imports_at_load(name: str) -> set[str]:
    """The package's modules `name` imports while it loads (module level, not TYPE_CHECKING)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else str(node.module)
            candidates = [f"{target}.{alias.name}" for alias in node.names] + [target]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in MODULES:
                candidate = candidate.rsplit(".", 1)[0] if "." in candidate else ""
            # A submodule importing its own package's __init__ is how packages work, not a cycle.
            if candidate and candidate != name and not name.startswith(candidate + "."):
                found.add(candidate)
    return found


def test_no_import_cycle() -> None:
    graph = {name: imports_at_load(name) for name in MODULES}
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycles.append([*path[path.index(name) :], name])
            return
        if name in done:
            return
        for dependency in sorted(graph[name]):
            visit(dependency, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])
    assert cycles == []
    assert "pipeline.infra.lookups" in graph["pipeline.infra.apply"]  # the graph is really read
