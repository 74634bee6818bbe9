"""Shared test set-up: where the real datasets are, and what happens when they are not there.

Tests that read the shared data folder (Cora, CiteSeer, HumLoc, Amazon Computers, ...) take the
``shared_data_dir`` fixture, or ``dataset_dir(folder)`` for one dataset's folder. When a folder
is missing they **fail**, naming it, when ``CI`` is set to a non-empty value or
``REVGNN_DGL_DATA`` is set explicitly, and skip with the reason only on a user's checkout (see
``suite_env.py``). The fixtures only look for the folder: a loader that cannot read data that
is there raises, and the test errors. ``tests/test_suite_env.py`` runs pytest on a small test
file to check this behaviour.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest

# The helper modules of this folder (suite_env.py, grad_check.py) import also under
# ``--import-mode=importlib``, which does not put the folder on sys.path.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
# The experiments in benchmarks/ are scripts, not a package: their modules import one another by
# name, as the scripts do (a script's folder is on sys.path); tests/benchmarks/ imports them the
# same way, and so do the fresh processes they start (which get this sys.path). Here rather than
# in a tests/benchmarks/conftest.py: --doctest-modules imports every conftest.py as the module
# "conftest", and two of them in folders without __init__.py collide.
_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(_BENCHMARKS) not in sys.path:
    sys.path.append(str(_BENCHMARKS))

from suite_env import missing_data, shared_data_root  # noqa: E402


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real datasets folder (env ``REVGNN_DGL_DATA``, default ``../shared/data``)."""
    path = shared_data_root()
    if not path.is_dir():
        missing_data(path, "the real datasets folder")
    return path


@pytest.fixture(scope="session")
def dataset_dir(request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``dataset_dir('coauthor_cs')``: that folder of the shared data, failing or skipping like
    ``shared_data_dir`` when it is missing."""

    def folder(name: str) -> Path:
        path = request.getfixturevalue("shared_data_dir") / name
        if not path.is_dir():
            missing_data(path, f"the dataset folder {name}/")
        return path

    return folder


@pytest.fixture(autouse=True)
def _one_thread_again():
    """Commands run in-process (click's CliRunner) set torch's thread count as a command may (the
    default picks the free cores): put the suite's one thread back, so that no later test computes
    with another reduction order than it expects."""
    import torch

    yield
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@pytest.fixture
def emulated_hosts(request: pytest.FixtureRequest, tmp_path: Path):
    """``emulated_hosts(n=2)``: ``n`` emulated hosts (``tests/hosts.py``: a network namespace each,
    joined by a bridge, each with its own /dev/shm and hostname), torn down when the test ends,
    also when it fails. Where namespaces cannot be made, the test fails in CI and skips elsewhere,
    with the reason in one line."""
    from hosts import EmulatedHosts, unavailable

    why = unavailable()
    if why:
        from suite_env import missing_requirement

        missing_requirement(why, "run the suite as root on Linux with iproute2 and util-linux")
    made = []

    def make(n: int = 2) -> EmulatedHosts:
        hosts = EmulatedHosts(n, folder=tmp_path / f"hosts{len(made)}")
        made.append(hosts)
        return hosts.__enter__()

    try:
        yield make
    finally:
        for hosts in made:
            hosts.close()
