"""Real datasets for the data tests, loaded once per session.

Where they are, and what a test does when they are not there (fail in CI or with
``REVGNN_DGL_DATA`` set, skip on a user's checkout), is the root ``tests/conftest.py``'s
``shared_data_dir`` and ``dataset_dir`` fixtures.
"""

from __future__ import annotations

from typing import Callable, Dict

import pytest
import torch

from revgnn_dgl.data import NodeDataset, load_dataset

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
