"""The dataset container shared by every loader, and small graph helpers."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dgl
import numpy as np
import torch

TASKS = ("multiclass", "multilabel")

#: Environment variable naming the folder that holds the offline datasets
#: (``cora/``, ``citeseer/``, ``humloc/``).
DATA_ENV_VAR = "REVGNN_DGL_DATA"


class DatasetError(ValueError):
    """A dataset could not be loaded or evaluated.

    The message says what was wrong and what to do about it.
    """


@dataclass
class NodeDataset:
    """One graph with node-level targets and a fixed train/validation/test split.

    Parameters
    ----------
    name : str
        Dataset name (or the file it was read from).
    graph : dgl.DGLGraph
        Homogeneous graph. ``ndata['feat']`` holds float32 node inputs
        ``(N, F)``; ``edata['feat']`` optional float32 edge inputs ``(E, Fe)``;
        ``ndata['species']`` an optional float32 one-hot ``(N, S)``.
    labels : torch.Tensor
        int64 class ids ``(N,)`` for ``'multiclass'``, or float32 0/1
        ``(N, T)`` for ``'multilabel'``.
    train_idx, val_idx, test_idx : torch.Tensor
        int64 node ids of each split.
    task : str
        ``'multiclass'`` or ``'multilabel'``.
    """

    name: str
    graph: dgl.DGLGraph
    labels: torch.Tensor
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    test_idx: torch.Tensor
    task: str

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DatasetError(f"task must be one of {TASKS}, got {self.task!r}")
        n = self.graph.num_nodes()
        if "feat" not in self.graph.ndata:
            raise DatasetError(f"dataset {self.name!r}: graph.ndata['feat'] is missing")
        want_dim = 1 if self.task == "multiclass" else 2
        if self.labels.dim() != want_dim or self.labels.shape[0] != n:
            raise DatasetError(
                f"dataset {self.name!r}: {self.task} labels must have shape "
                f"{'(N,)' if want_dim == 1 else '(N, T)'} with N={n}, got {tuple(self.labels.shape)}"
            )
        for split in ("train_idx", "val_idx", "test_idx"):
            idx = getattr(self, split)
            if idx.dtype != torch.int64 or idx.dim() != 1:
                raise DatasetError(f"dataset {self.name!r}: {split} must be a 1-D int64 tensor")
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise DatasetError(f"dataset {self.name!r}: {split} holds node ids outside [0, {n})")

    @property
    def num_node_feats(self) -> int:
        """Width of ``graph.ndata['feat']``."""
        return int(self.graph.ndata["feat"].shape[1])

    @property
    def num_edge_feats(self) -> int:
        """Width of ``graph.edata['feat']``, 0 when the graph has no edge features."""
        feat = self.graph.edata.get("feat")
        return 0 if feat is None else int(feat.shape[1])

    @property
    def num_outputs(self) -> int:
        """Number of classes (multiclass) or of binary tasks (multilabel)."""
        if self.task == "multilabel":
            return int(self.labels.shape[1])
        return int(self.labels.max()) + 1

    @property
    def metric_name(self) -> str:
        """``'accuracy'`` for multiclass, ``'rocauc'`` for multilabel."""
        return "accuracy" if self.task == "multiclass" else "rocauc"

    @property
    def has_species(self) -> bool:
        """Whether ``graph.ndata['species']`` (a one-hot) is present."""
        return "species" in self.graph.ndata


def default_data_dir(name: str) -> Path:
    """Folder of an offline dataset when the caller gives no ``root``.

    ``$REVGNN_DGL_DATA/<name>`` when the variable is set, else
    ``../shared/data/<name>`` relative to the working directory.
    """
    base = os.environ.get(DATA_ENV_VAR)
    return Path(base) / name if base else Path("..") / "shared" / "data" / name


def undirected_edges(
    src: np.ndarray,
    dst: np.ndarray,
    num_nodes: int,
    edge_feat: np.ndarray | None = None,
    keep_self_loops: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Symmetrise an edge list and drop duplicate edges.

    Each unordered pair ``{u, v}`` is kept once and emitted in both
    directions (a self-loop once). When several rows describe the same pair,
    their features are merged with an element-wise maximum.

    Parameters
    ----------
    src, dst : numpy.ndarray
        Integer endpoints of the input rows, in any direction.
    num_nodes : int
        Number of nodes; every id must lie in ``[0, num_nodes)``.
    edge_feat : numpy.ndarray, optional
        Per-row features ``(len(src), Fe)``.
    keep_self_loops : bool
        Keep ``u == v`` rows (once each) instead of dropping them.

    Returns
    -------
    src, dst : numpy.ndarray
        int64 endpoints of the symmetric, duplicate-free edge list: first
        every pair once as ``(min, max)`` (self-loops included), then the
        non-loop pairs reversed, in the same order. Without self-loops the
        second half is thus the first half reversed.
    edge_feat : numpy.ndarray or None
        float32 features aligned with the returned edges (equal in both
        directions), or None when none were given.
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if not keep_self_loops:
        keep = src != dst
        src, dst = src[keep], dst[keep]
        if edge_feat is not None:
            edge_feat = edge_feat[keep]
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    keys, inverse = np.unique(lo * num_nodes + hi, return_inverse=True)
    lo, hi = keys // num_nodes, keys % num_nodes
    feat = None
    if edge_feat is not None:
        feat = np.full((len(keys), edge_feat.shape[1]), -np.inf, dtype=np.float32)
        np.maximum.at(feat, inverse, edge_feat.astype(np.float32))
    # The reverse copy of a self-loop would be a duplicate: emit loops once.
    rev = lo != hi
    out_src = np.concatenate([lo, hi[rev]])
    out_dst = np.concatenate([hi, lo[rev]])
    if feat is not None:
        feat = np.concatenate([feat, feat[rev]])
    return out_src, out_dst, feat


def sum_incident_edge_feats(graph: dgl.DGLGraph) -> torch.Tensor:
    """Sum, for each node, the features of its incoming edges.

    On a symmetric graph this is the sum over all incident edges: the
    node input that ogbn-proteins models use, since the dataset has no node
    features of its own.
    """
    with graph.local_scope():
        graph.update_all(dgl.function.copy_e("feat", "m"), dgl.function.sum("m", "h"))
        return graph.ndata["h"].float()


def as_index(values: np.ndarray | torch.Tensor) -> torch.Tensor:
    """1-D int64 tensor from an index array."""
    return torch.as_tensor(np.asarray(values), dtype=torch.int64).reshape(-1)
