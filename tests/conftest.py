"""Shared test set-up."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real datasets folder (env ``REVGNN_DGL_DATA``, default ``../shared/data``)."""
    path = Path(os.environ.get("REVGNN_DGL_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"real datasets not found at {path}; set REVGNN_DGL_DATA to the shared data folder")
    return path
