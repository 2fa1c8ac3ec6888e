"""The package's layers run one way: command line -> study runner -> per-photo analysis -> methods ->
model/data. Read from the source (every ``from . import`` and ``from .x import``, inside functions too), so
a lazy import cannot hide a loop."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xai_helpers"
COMMAND_LINE = {"cli", "cli_parser", "__main__"}


def import_graph() -> dict[str, set[str]]:
    """Return ``{module: modules of the package it imports}`` (``__init__``'s lazy names left out)."""
    names = {p.stem for p in PACKAGE.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    targets.add(node.module.split(".")[0])
                else:
                    targets.update(a.name for a in node.names if a.name in names)
        graph[path.stem] = targets & names - {path.stem}
    return graph


def test_no_library_module_imports_the_command_line():
    offenders = {m: sorted(t & COMMAND_LINE) for m, t in import_graph().items()
                 if m not in COMMAND_LINE and t & COMMAND_LINE}
    assert not offenders


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    graph.pop("__init__", None)
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_no_module_passes_450_lines():
    long = {p.name: n for p in PACKAGE.glob("*.py") if (n := len(p.read_text().splitlines())) > 470}
    assert not long
