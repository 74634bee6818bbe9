"""The package's modules form a one-way dependency graph: every module imports, and no import
statement (function-level ones included) closes a cycle between two modules."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Dict, List, Set

import pytest

import revgnn_dgl

PACKAGE_DIR = Path(revgnn_dgl.__file__).resolve().parent


def _modules() -> Dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = ("revgnn_dgl",) + path.relative_to(PACKAGE_DIR).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imported(name: str, path: Path) -> Set[str]:
    """The package modules that ``name`` imports, resolved to the deepest existing module."""
    is_package = path.name == "__init__.py"
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    # A package importing its own submodules, or a module importing its parent package's
    # __init__ (which Python runs anyway), is not a dependency between two rooms.
    return {t for t in found if not t.startswith(name + ".") and not name.startswith(t + ".")}


def import_graph() -> Dict[str, Set[str]]:
    return {name: _imported(name, path) for name, path in MODULES.items()}


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Every strongly connected component of more than one module (Tarjan), sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_cycle_finder_finds_a_cycle() -> None:
    # The check itself must be able to fail.
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_function_level_and_relative_imports() -> None:
    graph = import_graph()
    # zoo.factory imports the checkpoint format inside create_model only.
    assert "revgnn_dgl.zoo.checkpoint" in graph["revgnn_dgl.zoo.factory"]
    assert "revgnn_dgl.errors" in graph["revgnn_dgl.zoo.registry"]  # a relative "from ..errors"


def test_no_import_cycle_between_modules() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_models_and_layers_do_not_import_the_zoo_or_the_trainer() -> None:
    graph = import_graph()
    upper = ("revgnn_dgl.zoo", "revgnn_dgl.train", "revgnn_dgl.bench", "revgnn_dgl.cli")
    for name, deps in graph.items():
        if name.startswith(("revgnn_dgl.nn", "revgnn_dgl.models", "revgnn_dgl.data")):
            wrong = sorted(d for d in deps if d.startswith(upper))
            assert not wrong, f"{name} imports {wrong}: layers, models and data sit below the zoo and trainer"


# __main__ modules run a command when imported: they are only checked for cycles.
@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_no_public_name_is_shadowed_by_a_submodule() -> None:
    """No package exports a name that is also one of its submodules.

    Once that submodule is imported, Python binds the package attribute to the module (or a
    ``from .mod import mod`` rebinds it the other way), so ``package.name`` is sometimes the
    function and sometimes the module: this broke ``revgnn-dgl train`` after
    ``revgnn_dgl.train.launch`` had been imported, and ``revgnn_dgl.models.revgat.X`` once
    raised AttributeError because ``revgat`` was the builder. Checked for eager and lazy
    (PEP 562 ``_EXPORTS``) exports alike, after importing every submodule."""
    checked = 0
    for name, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        package = importlib.import_module(name)
        submodules = {p.stem for p in path.parent.glob("*.py") if p.stem not in ("__init__", "__main__")}
        submodules |= {p.parent.name for p in path.parent.glob("*/__init__.py")}
        exports = set(getattr(package, "_EXPORTS", {})) | set(getattr(package, "__all__", []))
        assert not exports & submodules, f"{name} exports {sorted(exports & submodules)}, also submodule names"
        for sub in sorted(submodules):
            importlib.import_module(f"{name}.{sub}")
        for export in sorted(exports):  # after the submodules: the order that used to shadow
            assert not isinstance(getattr(package, export), type(package)), f"{name}.{export} is a module"
        for sub in sorted(submodules):
            assert isinstance(getattr(package, sub), type(package)), f"{name}.{sub} is not the submodule"
        checked += 1
    assert checked
