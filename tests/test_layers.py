"""The package's wings import one way: classifier <- methods <- study <- chapters, and the command line on top
(imported by nothing). Read from the source (every import, inside functions too, relative or absolute), so a
lazy import cannot hide a loop; and every name has one home (no ``import *``, no re-export)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xai_helpers"
#: The wings, lowest first: a module may import its own wing and the wings before it.
WINGS = ("classifier", "methods", "study", "chapters", "cli")
#: The longest function a module may hold without a comment that says why (lines, parameters).
MAX_FUNCTION_LINES, MAX_PARAMETERS = 60, 8


def modules() -> dict[str, Path]:
    """``{"study.rows": path, ...}`` for every module of the package (``__init__`` of a wing as the wing)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"] = path
    return found


def imported(path: Path) -> set[str]:
    """The package's modules that ``path`` imports, as ``modules()`` names them."""
    here = path.relative_to(PACKAGE).with_suffix("").parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[:len(here) - node.level + 1])
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "xai_helpers":
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                candidate = ".".join(target + [alias.name])
                found.add(candidate if candidate in modules() else ".".join(target) or "__init__")
        elif isinstance(node, ast.Import):
            found.update(".".join(a.name.split(".")[1:]) for a in node.names if a.name.startswith("xai_helpers."))
    return {m for m in found if m in modules()}


def wing(module: str) -> str | None:
    return module.split(".")[0] if module.split(".")[0] in WINGS else None


def test_every_module_lives_in_a_wing():
    loose = [m for m in modules() if wing(m) is None and m not in ("__init__", "__main__")]
    assert not loose, f"modules outside the wings {WINGS}: {loose}"


@pytest.mark.parametrize("module", sorted(m for m in modules() if wing(m)))
def test_a_wing_imports_only_itself_and_the_wings_below_it(module):
    rank = WINGS.index(wing(module))
    upward = sorted(m for m in imported(modules()[module]) if wing(m) and WINGS.index(wing(m)) > rank)
    assert not upward, f"{module} ({wing(module)}) imports {upward}, above it"


def test_nothing_but_the_entry_point_imports_the_command_line():
    offenders = {m: sorted(t) for m, p in modules().items()
                 if wing(m) != "cli" and m != "__main__" and (t := {x for x in imported(p) if wing(x) == "cli"})}
    assert not offenders


def test_the_import_graph_has_no_cycle():
    graph = {m: imported(p) - {m} for m, p in modules().items() if m != "__init__"}
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


def test_no_star_import_and_no_re_export():
    """Every name a module imports from the package is used there: a module that imports a name only to
    offer it again (a re-export) gives the name a second home. ``__all__`` lists only what a module defines."""
    problems = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text())
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        used |= {n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("xai_helpers")):
                for alias in node.names:
                    name = alias.asname or alias.name
                    if alias.name == "*":
                        problems.append(f"{module}: import *")
                    elif name not in used and module != "__init__":
                        problems.append(f"{module}: imports {name} without using it")
            if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
                    and isinstance(node.value, (ast.List, ast.Tuple))):
                listed = {e.value for e in node.value.elts}
                assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                            if isinstance(t, ast.Name)}
                assigned |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)
                             and isinstance(n.target, ast.Name)}
                foreign = listed - defined - assigned
                if foreign:
                    problems.append(f"{module}: __all__ lists {sorted(foreign)}, defined elsewhere")
    assert not problems, problems


def test_no_module_passes_470_lines():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > 470}
    assert not long


def long_functions() -> list[str]:
    """Functions over ``MAX_FUNCTION_LINES`` lines of code (the docstring left out) or ``MAX_PARAMETERS``
    parameters without a comment just above it that says why ("# long: ...")."""
    found = []
    for module, path in modules().items():
        source = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(source))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            lines = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant):
                lines -= first.end_lineno - first.lineno + 1   # (the docstring is prose, not code to take in)
            a = node.args
            parameters = len(a.posonlyargs + a.args + a.kwonlyargs) - int(bool(a.args) and a.args[0].arg in ("self", "cls"))
            head = source[node.lineno - 2] if node.lineno > 1 else ""   # a comment just above the def
            if (lines > MAX_FUNCTION_LINES or parameters > MAX_PARAMETERS) and "long:" not in head:
                found.append(f"{module}.{node.name}: {lines} lines, {parameters} parameters")
    return found


def test_functions_a_reader_takes_in_at_once():
    assert not long_functions()
