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


def imports_of(name: str) -> set[str]:
    """The package's modules `name` imports anywhere: at module level, inside functions and
    under TYPE_CHECKING alike (a function-level import is a cycle deferred, not removed)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
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


def tangles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's import cycles, as groups of modules that each reach all the others. Pure."""
    reach: dict[str, set[str]] = {}
    for name in graph:
        seen: set[str] = set()
        todo = list(graph[name])
        while todo:
            other = todo.pop()
            if other not in seen:
                seen.add(other)
                todo.extend(graph.get(other, ()))
        reach[name] = seen
    groups = {frozenset({name, *(o for o in reach[name] if name in reach[o])}) for name in graph}
    return sorted(sorted(g) for g in groups if len(g) > 1)


def test_tangles_finds_a_cycle_through_three_modules() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert tangles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_at_module_or_function_level() -> None:
    graph = {name: imports_of(name) for name in MODULES}
    assert tangles(graph) == []
    assert "pipeline.infra.lookups" in graph["pipeline.infra.apply"]  # the graph is really read
    assert "pipeline.tasks" in graph["pipeline.cli"]  # function-level imports are read too
