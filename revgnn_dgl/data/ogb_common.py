"""What the OGB loaders share: OGB's meta data, its folders, a split read without ``torch.load``,
and a bounded network wait."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator

import pandas as pd
import torch

from ..errors import DatasetError
from .safe_torch import load_torch_file

#: Seconds a single network operation of a download may stall.
DOWNLOAD_TIMEOUT_S = 30.0


def ogb_meta(ogb_name: str) -> pd.Series:
    """OGB's meta data for ``ogb_name`` (``ogbn-proteins``...), from the master table it ships."""
    import ogb.nodeproppred

    master = Path(ogb.nodeproppred.__file__).parent / "master.csv"
    return pd.read_csv(master, index_col=0, keep_default_na=False)[ogb_name]


def ogb_dataset_folder(root: Path, ogb_name: str) -> Path:
    """The folder OGB reads under ``root``: ``<name>_dgl`` if present, as OGB does, else ``<name>``."""
    name = ogb_name.replace("-", "_")
    legacy = root / f"{name}_dgl"
    return legacy if legacy.exists() else root / name


def read_ogb_split(folder: Path, ogb_name: str) -> Dict[str, torch.Tensor]:
    """OGB's split, read as ``get_idx_split`` does but never with ``torch.load``.

    OGB's method calls a bare ``torch.load`` on a cached ``split_dict.pt``, which runs any code
    the file holds: the cached file goes through our reader instead, else the split's csv files
    are read.
    """
    parts = ("train", "valid", "test")
    path = folder / "split" / str(ogb_meta(ogb_name)["split"])
    cached = path / "split_dict.pt"
    if not cached.is_file():
        tables = {part: pd.read_csv(path / f"{part}.csv.gz", compression="gzip", header=None) for part in parts}
        return {part: torch.tensor(table.to_numpy()[:, 0], dtype=torch.int64) for part, table in tables.items()}
    split = load_torch_file(cached, what="OGB's cached split")
    if not isinstance(split, dict) or not all(isinstance(split.get(part), torch.Tensor) for part in parts):
        raise DatasetError(f"{cached}: OGB's cached split is not a dict of 'train', 'valid' and 'test' index tensors")
    return split


@contextmanager
def network_timeout(seconds: float = DOWNLOAD_TIMEOUT_S) -> Iterator[None]:
    """Bound each socket operation (OGB's ``urlopen`` calls set no timeout), so an unreachable
    server fails instead of hanging."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def missing_ogb_message(ogb_name: str, root: Path, reason: str) -> str:
    """The one-line answer when an OGB dataset is not under ``root``, in the command line's terms
    (``--root``, ``--dataset-option``), the same for every OGB loader."""
    from .paths import DATA_ENV_VAR

    folder = ogb_name.replace("-", "_")
    url = ogb_meta(ogb_name)["url"]
    zipped = ogb_name.split("-", 1)[1]
    return (
        f"{ogb_name} is not under {root} ({reason}). With network access OGB downloads it by default "
        f"(--dataset-option download=false turns that off); offline, download {url}, unzip it and rename the "
        f"folder '{zipped}' to {root / folder}; or pass --root DIR or set {DATA_ENV_VAR}=DIR, DIR being the "
        f"folder that holds {folder}/. Offline alternatives: 'synthetic-proteins', or the path of a DGL graph file"
    )
