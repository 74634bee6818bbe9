"""benchmarks/ holds the experiments: every module there imports, and the package imports none."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import revgnn_dgl

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
MODULES = sorted(p.stem for p in BENCHMARKS.glob("*.py"))


#: Module-level calls that only register something (no work, no global state of torch or DGL).
REGISTRATIONS = {"register_variant", "sys.path.insert"}  # and the scripts' own import path
#: Calls allowed in a module-level assignment: paths and plain containers.
CHEAP_CALLS = {
    "Path",
    "Path(__file__).resolve",
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "sorted",
    "FAMILIES.items",
}


def _side_effects(path: Path) -> list:
    """Module-level statements of a benchmark script that would do work on import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    wrong = []
    for i, node in enumerate(tree.body):
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and i == 0:
            continue  # the docstring
        if isinstance(node, ast.If) and ast.unparse(node.test).replace("'", '"') == '__name__ == "__main__"':
            continue
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and ast.unparse(node.value.func) in REGISTRATIONS
        ):
            continue
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            value = node.value
            calls = {ast.unparse(c.func) for c in ast.walk(value) if isinstance(c, ast.Call)} if value else set()
            if calls <= CHEAP_CALLS:
                continue
        wrong.append(f"{path.name}:{node.lineno}: {ast.unparse(node).splitlines()[0][:70]}")
    return wrong


def test_no_benchmark_script_runs_on_import() -> None:
    """A test that imports a script must not run it: the work goes under ``if __name__ == "__main__"``
    (a script that ran on import once set torch to one thread and patched GENConv for the rest of
    the suite)."""
    wrong = [line for module in MODULES for line in _side_effects(BENCHMARKS / f"{module}.py")]
    assert not wrong, wrong


def test_the_side_effect_check_catches_a_script_that_runs(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        '"""doc"""\nimport torch\ntorch.set_num_threads(1)\nx = torch.randn(3)\nfor i in range(2):\n    pass\n'
    )
    assert [line.split(": ", 1)[1] for line in _side_effects(script)] == [
        "torch.set_num_threads(1)",
        "x = torch.randn(3)",
        "for i in range(2):",
    ]


@pytest.mark.parametrize("module", MODULES)
def test_every_benchmark_module_imports(module: str) -> None:
    # Entry scripts run their suite under ``if __name__ == "__main__"`` only (checked above).
    importlib.import_module(module)


def test_the_package_never_imports_the_benchmarks() -> None:
    package = Path(revgnn_dgl.__file__).resolve().parent
    wrong = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            wrong += [f"{path.relative_to(package)}: {n}" for n in names if n.split(".")[0] in MODULES + ["benchmarks"]]
    assert MODULES and not wrong, wrong
