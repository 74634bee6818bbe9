"""One home per mechanism: whole-file writes and locks live in revgnn_dgl/files.py, signal
handlers in revgnn_dgl/signals.py; a copy anywhere else in the package fails here."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import List

from suite_env import REPO_ROOT

PACKAGE = REPO_ROOT / "revgnn_dgl"
HOMES = {"os.replace": "files.py", "os.rename": "files.py", "fcntl.flock": "files.py", "signal.signal": "signals.py"}


def copies(package: Path = PACKAGE) -> List[str]:
    """Calls of a homed mechanism outside its home (code only: a script inside a string is not a call)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                home = HOMES.get(name)
                if home and path.relative_to(package).as_posix() != home:
                    found.append(
                        f"{path.relative_to(package).as_posix()}:{node.lineno}: {name} (its home is revgnn_dgl/{home})"
                    )
    return found


def test_each_mechanism_has_one_home() -> None:
    assert not copies()


def test_the_check_finds_a_copy(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(
        "import os, fcntl\nos.replace('a', 'b')\nfcntl.flock(3, 2)\ntext = 'os.replace(x, y)'\n"
    )
    assert [line.split(": ", 1)[1] for line in copies(tmp_path)] == [
        "os.replace (its home is revgnn_dgl/files.py)",
        "fcntl.flock (its home is revgnn_dgl/files.py)",
    ]
