"""The layout table of docs/architecture.md is the truth: every import between the package's
parts is one the table allows (a new import that breaks the layering fails here, naming it)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

from suite_env import REPO_ROOT

TABLE = REPO_ROOT / "docs" / "architecture.md"
PACKAGE = REPO_ROOT / "revgnn_dgl"


def unit_of(module: str) -> str:
    """``revgnn_dgl.train.loop`` -> ``train``; ``revgnn_dgl.errors`` -> ``errors``; the package -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layout_rules(text: str) -> Dict[str, Set[str]]:
    """Each part of the package (``train``, ``errors``, ...) -> the parts it may import, from the table."""
    rows: List[Tuple[List[str], str]] = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`revgnn_dgl/"):
            continue
        names = [Path(name.rstrip("/")).stem for name in re.findall(r"`([^`]+)`", cells[0])]
        rows.append((names, cells[-1]))
    units = [name for names, _ in rows for name in names]
    rules: Dict[str, Set[str]] = {}
    for i, (names, allowed) in enumerate(rows):
        if allowed.startswith("everything below"):
            may = {name for later, _ in rows[i + 1 :] for name in later}
        else:
            may = {token for token in re.findall(r"`([^`]+)`", allowed) if token in units}
        for name in names:
            rules[name] = may
    return rules


def package_imports() -> Dict[str, Set[Tuple[str, str]]]:
    """Each part -> the (part it imports, importing file) pairs of its import statements."""
    found: Dict[str, Set[Tuple[str, str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                targets = (
                    [".".join(base + [node.module])] if node.module else [".".join(base + [a.name]) for a in node.names]
                )
            elif isinstance(node, ast.ImportFrom):
                targets = [node.module or ""]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                if target == "revgnn_dgl" or target.startswith("revgnn_dgl."):
                    source, imported = unit_of(module), unit_of(target)
                    if imported not in (source, "__version__"):
                        found.setdefault(source, set()).add((imported, str(path.relative_to(REPO_ROOT))))
    return found


def violations(rules: Dict[str, Set[str]], imports: Dict[str, Set[Tuple[str, str]]]) -> List[str]:
    wrong = []
    for source, pairs in sorted(imports.items()):
        if source not in rules:
            wrong.append(f"{source}: not in the layout table")
            continue
        wrong += [f"{where} imports {imported}, which the table does not allow for {source}"
                  for imported, where in sorted(pairs) if imported not in rules[source]]  # fmt: skip
    return wrong


def test_every_import_is_one_the_layout_table_allows() -> None:
    rules = layout_rules(TABLE.read_text(encoding="utf-8"))
    assert {"cli", "train", "zoo", "models", "nn", "data", "errors"} <= set(rules)
    assert not violations(rules, package_imports())


def test_the_check_fails_when_an_import_breaks_the_table() -> None:
    rules = layout_rules(TABLE.read_text(encoding="utf-8"))
    imports = package_imports()
    imports.setdefault("models", set()).add(("train", "revgnn_dgl/models/deepgcn.py"))  # models may not import train
    assert violations(rules, imports) == [
        "revgnn_dgl/models/deepgcn.py imports train, which the table does not allow for models"
    ]
