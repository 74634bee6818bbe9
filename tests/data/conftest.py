"""Real datasets for the data tests: found, or skipped, or (under CI) failed.

The shared data folder is ``$REVGNN_DGL_DATA``, else ``../shared/data`` next
to the project. Without it (a user's checkout) the tests that need it skip
with the reason; when the environment variable ``CI`` is set the folder must
be there, and a missing folder fails the test, naming it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict

import pytest
import torch

from revgnn_dgl.data import NodeDataset, load_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]


def _require(path: Path, what: str) -> Path:
    if path.is_dir():
        return path
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {what} is missing: {path} (the real-data tests must run in CI)")
    pytest.skip(f"{what} not found at {path}; set REVGNN_DGL_DATA to the shared data folder to run this test")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real datasets folder (env ``REVGNN_DGL_DATA``, default ``../shared/data``)."""
    env = os.environ.get("REVGNN_DGL_DATA")
    return _require(Path(env) if env else REPO_ROOT.parent / "shared" / "data", "the real datasets folder")


@pytest.fixture(scope="session")
def dataset_dir(shared_data_dir) -> Callable[[str], Path]:
    """``dataset_dir('coauthor_cs')``: that folder of the shared data, or skip/fail as above."""
    return lambda folder: _require(shared_data_dir / folder, f"the dataset folder {folder}/")


_LOADED: Dict[str, NodeDataset] = {}


@pytest.fixture(scope="session")
def real_dataset(dataset_dir) -> Callable[[str, str], NodeDataset]:
    """``real_dataset('coauthor-cs', 'coauthor_cs')``: loaded once per session (default options)."""

    def load(name: str, folder: str) -> NodeDataset:
        if name not in _LOADED:
            torch.set_num_threads(1)
            _LOADED[name] = load_dataset(name, root=dataset_dir(folder).parent)
        return _LOADED[name]

    return load
