"""One home per mechanism: whole-file writes and locks live in revgnn_dgl/files.py, signal
handlers in revgnn_dgl/signals.py, the starting of processes in revgnn_dgl/processes.py; a copy
anywhere else in the package fails here."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional

from suite_env import REPO_ROOT

PACKAGE = REPO_ROOT / "revgnn_dgl"
HOMES = {"os.replace": "files.py", "os.rename": "files.py", "fcntl.flock": "files.py", "signal.signal": "signals.py"}
#: The calls that start a process: these names on any object (``context.Process``), and ``os``'s and
#: ``subprocess``'s helpers.
PROCESS_HOME = "processes.py"
STARTS = {"Popen", "Process", "start_processes", "fork", "forkpty", "posix_spawn", "posix_spawnp"}
MODULE_STARTS = {"os.system", "os.execv", "os.execve", "os.execvp", "os.execvpe", "os.execl", "os.execlp",
                 "os.spawnv", "os.spawnl", "os.spawnlp", "os.spawnvp", "os.popen", "subprocess.run",
                 "subprocess.call", "subprocess.check_call", "subprocess.check_output", "subprocess.getoutput",
                 "subprocess.getstatusoutput"}  # fmt: skip
#: The process starts that stay outside the supervisor, each with its reason.
ALLOWED_STARTS = {
    ("data/graph_file.py", "os.fork"): "a fork without exec that reads a graph file whose damage aborts the "
    "process (DGL's C++ reader); the supervisor starts fresh interpreters, which would have to import DGL again",
    ("env.py", "subprocess.run"): "`git rev-parse` for the environment record: output read, bounded by a "
    "timeout, nothing outlives the call",
}


def _home_of(name: str) -> Optional[str]:
    if name in HOMES:
        return HOMES[name]
    if name in MODULE_STARTS or name.rpartition(".")[2] in STARTS:
        return PROCESS_HOME
    return None


def copies(package: Path = PACKAGE, allowed: Optional[Dict[tuple, str]] = None) -> List[str]:
    """Calls of a homed mechanism outside its home (code only: a script inside a string is not a call)."""
    allowed = ALLOWED_STARTS if allowed is None else allowed
    found = []
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                home = _home_of(name)
                if home and where != home and (where, name) not in allowed:
                    found.append(f"{where}:{node.lineno}: {name} (its home is revgnn_dgl/{home})")
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


def test_the_check_finds_a_process_started_outside_the_supervisor(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(
        "import multiprocessing, os, subprocess\nfrom subprocess import Popen\n"
        "subprocess.Popen(['true'])\nPopen(['true'])\nsubprocess.run(['true'])\nos.fork()\n"
        "multiprocessing.get_context('spawn').Process(target=print)\ncontext.Process(target=print)\n"
        "text = 'subprocess.Popen(x)'\nrun(['true'])\n"
    )
    assert [line.split(": ", 1)[1] for line in copies(tmp_path)] == [
        f"{name} (its home is revgnn_dgl/processes.py)"
        for name in (
            "subprocess.Popen",
            "Popen",
            "subprocess.run",
            "os.fork",
            "multiprocessing.get_context('spawn').Process",
            "context.Process",
        )  # fmt: skip
    ]


def test_every_allowed_start_is_still_there() -> None:
    """An exception whose call has gone (moved into the supervisor) leaves the list too."""
    for where, name in ALLOWED_STARTS:
        assert f"{name}(" in (PACKAGE / where).read_text(encoding="utf-8"), (where, name)
