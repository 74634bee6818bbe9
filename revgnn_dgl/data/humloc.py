"""HumLoc: a multi-label protein interaction graph (Zhao et al., TMLR 2023).

The closest offline stand-in for ogbn-proteins: multi-label binary targets
scored by ROC-AUC and 21 edge-feature channels (interaction confidence
scores in [0, 0.99]).

Edge handling (the file lists each interaction in one direction, some pairs
twice and 530 self-loops):

* every pair is kept once per direction, with the same features both ways;
* rows that repeat a pair are merged with an element-wise maximum, the
  strongest evidence reported for each interaction type;
* self-loops are dropped by default (the README's 15,978 undirected edges
  exclude them); ``keep_self_loops=True`` keeps one loop per listed node.
"""

from __future__ import annotations

from pathlib import Path

import dgl
import numpy as np
import pandas as pd
import torch

from .base import DatasetError, NodeDataset, as_index, undirected_edges
from .paths import dataset_folder, root_hint
from .safe_torch import load_torch_file

_FILES = ("edge_list.csv", "features.csv", "labels.csv", "split.pt")
_SPLIT_KEYS = {"train_idx": "train_mask", "val_idx": "val_mask", "test_idx": "test_mask"}


def load_humloc(root: str | Path | None = None, keep_self_loops: bool = False) -> NodeDataset:
    """Load the HumLoc dataset.

    Parameters
    ----------
    root : str or Path, optional
        The data root, holding ``humloc/`` with ``edge_list.csv``,
        ``features.csv``, ``labels.csv`` and ``split.pt``, or the ``humloc``
        folder itself. Default: ``$REVGNN_DGL_DATA``, else ``../shared/data``
        next to the project (see :mod:`revgnn_dgl.data.paths`).
    keep_self_loops : bool
        Keep the listed self-interactions as one self-loop each.

    Returns
    -------
    NodeDataset
        Multilabel dataset (14 tasks) with 32 node and 21 edge features and
        the standard split from ``split.pt``.
    """
    folder = dataset_folder("humloc", root, files=_FILES)
    missing = [f for f in _FILES if not (folder / f).is_file()]
    if missing:
        raise DatasetError(
            f"humloc: files not found in {folder} (missing {', '.join(missing)}). Put the "
            f"HumLoc files (github.com/Tianqi-py/MLGNC, data/HumanGo) there, or {root_hint('humloc')}"
        )
    # Our own reader: torch.load (even weights_only) runs the code of a TorchScript file.
    split = load_torch_file(folder / "split.pt", what="the HumLoc split")
    try:
        edges = pd.read_csv(folder / "edge_list.csv")
        feats = pd.read_csv(folder / "features.csv", header=None).to_numpy(np.float32)
        labels = pd.read_csv(folder / "labels.csv", header=None).to_numpy(np.float32)
    except Exception as err:  # any parse failure means a bad file
        raise DatasetError(f"humloc: cannot read the files in {folder}: {err}") from err

    num_nodes = feats.shape[0]
    if labels.shape[0] != num_nodes:
        raise DatasetError(f"humloc: labels.csv has {labels.shape[0]} rows, features.csv {num_nodes}")
    # Node ids are written as floats ("2746.0").
    ends = edges.iloc[:, :2].to_numpy(np.float64)
    if (ends != np.round(ends)).any() or ends.min() < 0 or ends.max() >= num_nodes:
        raise DatasetError(f"humloc: edge_list.csv holds node ids that are not integers in [0, {num_nodes})")
    src, dst, edge_feat = undirected_edges(
        ends[:, 0].astype(np.int64),
        ends[:, 1].astype(np.int64),
        num_nodes,
        edges.iloc[:, 2:].to_numpy(np.float32),
        keep_self_loops=keep_self_loops,
    )
    missing_keys = [
        k for k in _SPLIT_KEYS.values() if not isinstance(split, dict) or not isinstance(split.get(k), torch.Tensor)
    ]
    if missing_keys:
        raise DatasetError(f"humloc: split.pt lacks the index tensors {', '.join(missing_keys)}")

    graph = dgl.graph((torch.from_numpy(src), torch.from_numpy(dst)), num_nodes=num_nodes)
    graph.ndata["feat"] = torch.from_numpy(feats)
    graph.edata["feat"] = torch.from_numpy(edge_feat)
    # Despite their names, split.pt's entries are index tensors, not masks.
    return NodeDataset(
        name="humloc",
        graph=graph,
        labels=torch.from_numpy(labels),
        task="multilabel",
        **{field: as_index(split[key]) for field, key in _SPLIT_KEYS.items()},
    )
