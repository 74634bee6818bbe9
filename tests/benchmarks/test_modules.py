"""benchmarks/ holds the experiments: every module there imports, and the package imports none."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import revgnn_dgl

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
MODULES = sorted(p.stem for p in BENCHMARKS.glob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_every_benchmark_module_imports(module: str) -> None:
    # Entry scripts run their suite under ``if __name__ == "__main__"`` only.
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
