"""Shared test set-up."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# OGB checks PyPI for a newer version at import; offline that only produces a warning.
os.environ.setdefault("OUTDATED_IGNORE", "1")
# The profiler behind revgnn_dgl.profiling prints progress lines unless told not to.
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

import torch  # noqa: E402

# One intra-op thread: tiny graphs run faster without OpenMP spin contention, and
# floating-point reductions are reproducible from run to run.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real datasets folder (env ``REVGNN_DGL_DATA``, default ``../shared/data``)."""
    path = Path(os.environ.get("REVGNN_DGL_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"real datasets not found at {path}; set REVGNN_DGL_DATA to the shared data folder")
    return path
