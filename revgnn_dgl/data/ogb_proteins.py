"""ogbn-proteins through OGB's own ``DglNodePropPredDataset``.

Node inputs are built as in the released RevGNN code: the sum of the
incident edges' 8 features (on the full graph, once per load) and the
species as a one-hot.

OGB can block on ``input()`` in two places; neither may happen here (CI has
no stdin):

* when the dataset folder exists without its ``RELEASE_v<version>.txt``
  (OGB asks whether to re-download): checked first, answered with a
  :class:`DatasetError`;
* before downloading more than 1 GB: the ogbn-proteins zip is 0.2 GB.
"""
from __future__ import annotations

import socket
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dgl
import pandas as pd
import torch

from .base import DatasetError, NodeDataset, as_index, sum_incident_edge_feats
from .safe_torch import load_torch_file

OGB_NAME = "ogbn-proteins"
DEFAULT_OGB_ROOT = Path("~/.cache/revgnn_dgl/datasets")
#: Seconds a single network operation of the download may stall.
DOWNLOAD_TIMEOUT_S = 30.0


def load_ogbn_proteins(root: str | Path | None = None, download: bool = True) -> NodeDataset:
    """Load ogbn-proteins, downloading it with OGB when absent.

    Parameters
    ----------
    root : str or Path, optional
        Folder OGB stores the dataset in (it uses ``<root>/ogbn_proteins``).
        Default: ``~/.cache/revgnn_dgl/datasets``.
    download : bool
        Let OGB download the data when it is not under ``root``. With False
        a missing dataset raises at once, without touching the network.

    Returns
    -------
    NodeDataset
        132,534 nodes; ``ndata['feat']`` (N, 8) summed incident edge
        features; ``ndata['species']`` (N, 8) one-hot, species taxonomy ids
        mapped to 0..7 in sorted order; ``edata['feat']`` (E, 8); float
        labels (N, 112); OGB's species split.

    Raises
    ------
    DatasetError
        When the data is absent and cannot be downloaded, or is damaged.
    """
    from ogb.nodeproppred import DglNodePropPredDataset

    root = (Path(root) if root is not None else DEFAULT_OGB_ROOT).expanduser()
    folder = _dataset_folder(root)
    raw = folder / "raw" / "edge.csv.gz"
    processed = folder / "processed" / "dgl_data_processed"
    have_data = raw.is_file() or processed.is_file()
    if folder.is_dir() and not (folder / f"RELEASE_v{_ogb_version()}.txt").is_file():
        raise DatasetError(
            f"{folder} exists but lacks RELEASE_v{_ogb_version()}.txt: it is an outdated or "
            "incomplete copy of ogbn-proteins (OGB would stop to ask what to do). Delete the "
            "folder to download afresh, or replace it with the unzipped proteins.zip"
        )
    if not have_data and not download:
        raise DatasetError(_missing_message(root, "download=False"))
    try:
        with _network_timeout(DOWNLOAD_TIMEOUT_S):
            ogb_data = DglNodePropPredDataset(name=OGB_NAME, root=str(root))
        split = _split(folder)
    except (OSError, RuntimeError, zipfile.BadZipFile, pd.errors.ParserError, dgl.DGLError) as err:
        if have_data:
            raise DatasetError(
                f"ogbn-proteins under {folder} is damaged ({type(err).__name__}: {err}). "
                "Delete the folder and load again to download afresh"
            ) from err
        raise DatasetError(_missing_message(root, f"the download failed: {type(err).__name__}: {err}")) from err

    graph, labels = ogb_data[0]
    graph.ndata["feat"] = sum_incident_edge_feats(graph)
    # Species come as NCBI taxonomy ids; their sorted order gives 0..S-1.
    _, species = torch.unique(graph.ndata["species"].reshape(-1), sorted=True, return_inverse=True)
    graph.ndata["species"] = torch.nn.functional.one_hot(species).float()
    graph.edata["feat"] = graph.edata["feat"].float()
    return NodeDataset(
        name=OGB_NAME,
        graph=graph,
        labels=labels.float(),
        train_idx=as_index(split["train"]),
        val_idx=as_index(split["valid"]),
        test_idx=as_index(split["test"]),
        task="multilabel",
    )


def _ogb_meta() -> pd.Series:
    """OGB's meta data for ogbn-proteins, from the master table it ships."""
    import ogb.nodeproppred

    master = Path(ogb.nodeproppred.__file__).parent / "master.csv"
    return pd.read_csv(master, index_col=0, keep_default_na=False)[OGB_NAME]


def _ogb_version() -> str:
    return str(_ogb_meta()["version"])


def _dataset_folder(root: Path) -> Path:
    """The folder OGB reads: ``ogbn_proteins_dgl`` if present, as OGB does."""
    legacy = root / "ogbn_proteins_dgl"
    return legacy if legacy.exists() else root / "ogbn_proteins"


def _split(folder: Path) -> dict[str, torch.Tensor]:
    """OGB's split, read as ``get_idx_split`` does but never with ``torch.load``.

    OGB's method calls a bare ``torch.load`` on a cached ``split_dict.pt``,
    which runs any code the file holds: the cached file goes through our
    reader instead, else the split's csv files are read.
    """
    parts = ("train", "valid", "test")
    path = folder / "split" / str(_ogb_meta()["split"])
    cached = path / "split_dict.pt"
    if not cached.is_file():
        tables = {part: pd.read_csv(path / f"{part}.csv.gz", compression="gzip", header=None) for part in parts}
        return {part: torch.tensor(table.to_numpy()[:, 0], dtype=torch.int64) for part, table in tables.items()}
    split = load_torch_file(cached, what="OGB's cached split")
    if not isinstance(split, dict) or not all(isinstance(split.get(part), torch.Tensor) for part in parts):
        raise DatasetError(f"{cached}: OGB's cached split is not a dict of 'train', 'valid' and 'test' index tensors")
    return split


def _missing_message(root: Path, reason: str) -> str:
    url = _ogb_meta()["url"]
    return (
        f"ogbn-proteins is not under {root} and could not be fetched ({reason}). "
        f"Run once with network access to let OGB download it, or download {url}, unzip it "
        f"and rename the folder 'proteins' to {root / 'ogbn_proteins'}; or pass root=<folder> "
        "holding ogbn_proteins/. Offline alternatives: 'synthetic-proteins', or the path of a "
        "DGL graph file"
    )


@contextmanager
def _network_timeout(seconds: float) -> Iterator[None]:
    """Bound each socket operation (OGB's ``urlopen`` calls set no timeout),
    so an unreachable server fails instead of hanging."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
