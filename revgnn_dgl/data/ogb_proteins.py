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

import zipfile
from pathlib import Path

import dgl
import pandas as pd
import torch

from .base import DatasetError, NodeDataset, as_index, sum_incident_edge_feats
from .ogb_common import (
    DOWNLOAD_TIMEOUT_S,
    missing_ogb_message,
    network_timeout,
    ogb_dataset_folder,
    ogb_meta,
    read_ogb_split,
)
from .paths import DATA_ENV_VAR, DEFAULT_OGB_ROOT, ogb_root  # noqa: F401 (DEFAULT_OGB_ROOT: kept public here)

OGB_NAME = "ogbn-proteins"


def load_ogbn_proteins(root: str | Path | None = None, download: bool = True) -> NodeDataset:
    """Load ogbn-proteins, downloading it with OGB when absent.

    Parameters
    ----------
    root : str or Path, optional
        The data root, the folder that holds ``ogbn_proteins/`` (OGB's own
        root convention), or the ``ogbn_proteins`` folder itself. Default:
        ``$REVGNN_DGL_DATA``, else ``~/.cache/revgnn_dgl/datasets`` (see
        :func:`revgnn_dgl.data.paths.ogb_root`).
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

    root = ogb_root("ogbn_proteins", root)
    folder = ogb_dataset_folder(root, OGB_NAME)
    raw = folder / "raw" / "edge.csv.gz"
    processed = folder / "processed" / "dgl_data_processed"
    have_data = raw.is_file() or processed.is_file()
    if folder.is_dir() and not (folder / f"RELEASE_v{ogb_meta(OGB_NAME)['version']}.txt").is_file():
        raise DatasetError(
            f"{folder} exists but lacks RELEASE_v{ogb_meta(OGB_NAME)['version']}.txt: it is an outdated or "
            "incomplete copy of ogbn-proteins (OGB would stop to ask what to do). Delete the "
            "folder to download afresh, or replace it with the unzipped proteins.zip"
        )
    if not have_data and not download:
        raise DatasetError(_missing_message(root, "the option download=false turns downloads off"))
    try:
        with network_timeout(DOWNLOAD_TIMEOUT_S):
            ogb_data = DglNodePropPredDataset(name=OGB_NAME, root=str(root))
        split = read_ogb_split(folder, OGB_NAME)
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


def _missing_message(root: Path, reason: str) -> str:
    return missing_ogb_message(OGB_NAME, root, reason)
