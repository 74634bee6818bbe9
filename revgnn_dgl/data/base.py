"""The dataset container shared by every loader, and small graph helpers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dgl
import numpy as np
import torch

from ..errors import DatasetError, DatasetWarning
from .paths import DATA_ENV_VAR, default_dataset_folder

__all__ = [
    "DATA_ENV_VAR",
    "DatasetError",
    "DatasetWarning",
    "MAX_UNUSED_CLASSES",
    "NodeDataset",
    "TASKS",
    "as_index",
    "count_classes",
    "default_data_dir",
    "sum_incident_edge_feats",
    "undirected_edges",
]

TASKS = ("multiclass", "multilabel")

#: A multiclass dataset has ``max(label) + 1`` classes, unless more than
#: ``max(K, MAX_UNUSED_CLASSES)`` of those ids have no node (K = number of
#: distinct labels): then the largest label is taken for a stray id and refused.
MAX_UNUSED_CLASSES = 16

#: Values of a feature matrix checked at once for non-finite values (bounds
#: the memory of the check on large matrices to a mask of this many bytes).
_CHECK_ELEMENTS = 1 << 24


@dataclass
class NodeDataset:
    """One graph with node-level targets and a fixed train/validation/test split.

    The inputs are checked when the dataset is built (:meth:`validate`), so
    that a bad value stops the run before training with one line naming it.

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
        int64 node ids of each split; none may be empty.
    task : str
        ``'multiclass'`` or ``'multilabel'``.

    Notes
    -----
    The number of classes of a multiclass dataset is :math:`C = \\max_v y_v + 1`.
    With :math:`K` distinct labels, :math:`C - K` class ids have no node; the
    dataset is refused when :math:`C - K > \\max(K, 16)`
    (:data:`MAX_UNUSED_CLASSES`): the largest label is then most likely a stray
    id (say :math:`10^6` among labels 0..6), which would otherwise build a
    model with a million outputs. See :func:`count_classes`.

    Examples
    --------
    >>> import dgl, torch
    >>> g = dgl.graph(([0, 1], [1, 0]), num_nodes=3)
    >>> g.ndata["feat"] = torch.ones(3, 2)
    >>> ds = NodeDataset("toy", g, torch.tensor([0, 1, 1]), torch.tensor([0]),
    ...                  torch.tensor([1]), torch.tensor([2]), "multiclass")
    >>> ds.num_outputs, ds.num_node_feats
    (2, 2)
    >>> g.ndata["feat"][2, 1] = float("nan")
    >>> NodeDataset("toy", g, torch.tensor([0, 1, 1]), torch.tensor([0]),
    ...             torch.tensor([1]), torch.tensor([2]), "multiclass")
    Traceback (most recent call last):
    ...
    revgnn_dgl.errors.DatasetError: dataset 'toy': node feature 'feat' has 1 non-finite value (first at node 2, column 1); replace NaN and infinity before training
    """

    name: str
    graph: dgl.DGLGraph
    labels: torch.Tensor
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    test_idx: torch.Tensor
    task: str

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse inputs that would break or silently spoil training.

        Raises
        ------
        DatasetError
            One line naming the problem: an unknown task; a missing or
            non-2-D ``ndata['feat']``; NaN or infinite node or edge features
            (with their count and the first position); labels of the wrong
            shape or type, negative, stray (see the class notes), or, for
            multilabel, not 0/1; a split that is not a 1-D int64 tensor of
            node ids, or that is empty.
        """
        where = f"dataset {self.name!r}"
        if self.task not in TASKS:
            raise DatasetError(f"{where}: task must be one of {TASKS}, got {self.task!r}")
        n = self.graph.num_nodes()
        if "feat" not in self.graph.ndata:
            raise DatasetError(f"{where}: graph.ndata['feat'] is missing")
        if self.graph.ndata["feat"].dim() != 2:
            raise DatasetError(
                f"{where}: graph.ndata['feat'] must be a 2-D (N, F) tensor, "
                f"got shape {tuple(self.graph.ndata['feat'].shape)}"
            )
        for kind, frame, unit in (("node", self.graph.ndata, "node"), ("edge", self.graph.edata, "edge")):
            for key, values in frame.items():
                if torch.is_tensor(values) and values.is_floating_point():
                    _check_finite(values, f"{where}: {kind} feature {key!r}", unit, "column")
        want_dim = 1 if self.task == "multiclass" else 2
        if self.labels.dim() != want_dim or self.labels.shape[0] != n:
            raise DatasetError(
                f"{where}: {self.task} labels must have shape "
                f"{'(N,)' if want_dim == 1 else '(N, T)'} with N={n}, got {tuple(self.labels.shape)}"
            )
        if self.task == "multiclass":
            if self.labels.dtype != torch.int64:
                raise DatasetError(f"{where}: multiclass labels must be int64 class ids, got {self.labels.dtype}")
            count_classes(self.labels, self.name)
        else:
            _check_multilabel(self.labels, where)
        for split in ("train", "val", "test"):
            idx = getattr(self, f"{split}_idx")
            if not torch.is_tensor(idx) or idx.dtype != torch.int64 or idx.dim() != 1:
                raise DatasetError(f"{where}: {split}_idx must be a 1-D int64 tensor")
            if idx.numel() == 0:
                raise DatasetError(
                    f"{where}: the {split} split is empty ({split}_idx holds no node); "
                    "every split needs at least one node"
                )
            if int(idx.min()) < 0 or int(idx.max()) >= n:
                raise DatasetError(f"{where}: {split}_idx holds node ids outside [0, {n})")

    @property
    def num_nodes(self) -> int:
        return int(self.graph.num_nodes())

    @property
    def num_edges(self) -> int:
        return int(self.graph.num_edges())

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
        """Number of classes (multiclass, see :func:`count_classes`) or of
        binary tasks (multilabel)."""
        if self.task == "multilabel":
            return int(self.labels.shape[1])
        return count_classes(self.labels, self.name)

    @property
    def metric_name(self) -> str:
        """``'accuracy'`` for multiclass, ``'rocauc'`` for multilabel."""
        return "accuracy" if self.task == "multiclass" else "rocauc"

    @property
    def has_species(self) -> bool:
        """Whether ``graph.ndata['species']`` (a one-hot) is present."""
        return "species" in self.graph.ndata

    @property
    def species_feats(self) -> int:
        """Width of ``graph.ndata['species']``, 0 without it."""
        return int(self.graph.ndata["species"].shape[1]) if self.has_species else 0

    def to_graph(self) -> dgl.DGLGraph:
        """The dataset as one graph in the layout of a graph file (``--dataset PATH.bin``).

        ``ndata['label']`` and the boolean ``ndata['train_mask']``, ``val_mask``, ``test_mask``
        beside the inputs, as DGL's own datasets keep them; :func:`dgl.save_graphs` of it is a
        file the library reads back as this dataset. The tensors are shared, not copied.

        >>> from revgnn_dgl.data import load_dataset
        >>> g = load_dataset("synthetic-proteins", num_nodes=200).to_graph()
        >>> sorted(g.ndata), g.ndata["label"].shape
        (['feat', 'label', 'species', 'test_mask', 'train_mask', 'val_mask'], torch.Size([200, 112]))
        """
        graph = self.graph.local_var()  # the dataset's own graph keeps its ndata
        graph.ndata["label"] = self.labels
        n = graph.num_nodes()
        for split, idx in (("train", self.train_idx), ("val", self.val_idx), ("test", self.test_idx)):
            graph.ndata[f"{split}_mask"] = torch.zeros(n, dtype=torch.bool).index_fill_(0, idx, True)
        return graph


def count_classes(labels: torch.Tensor, name: str = "dataset") -> int:
    """Number of classes of multiclass labels: ``max(labels) + 1``, checked.

    Parameters
    ----------
    labels : torch.Tensor
        Integer class ids ``(N,)``.
    name : str
        Dataset name for the error message.

    Returns
    -------
    int
        ``max(labels) + 1`` (0 for no labels).

    Raises
    ------
    DatasetError
        When a label is negative, or when more than
        ``max(K, MAX_UNUSED_CLASSES)`` of the ids ``0..max`` have no node
        (K = number of distinct labels): the largest label is named as
        stray, with its node and the span of the other labels.

    Examples
    --------
    >>> import torch
    >>> count_classes(torch.tensor([0, 2, 2, 1]))
    3
    >>> count_classes(torch.tensor([0, 1, 1000000, 2]), "toy")
    Traceback (most recent call last):
    ...
    revgnn_dgl.errors.DatasetError: dataset 'toy': label 1000000 of node 2 looks stray: the other labels span 0..2 (3 distinct values), and taking max+1 = 1000001 classes would leave 999997 of them without a node. Fix the label; class ids must run over 0..C-1
    """
    if labels.numel() == 0:
        return 0
    where = f"dataset {name!r}"
    low = int(labels.min())
    if low < 0:
        node = int((labels == low).nonzero()[0, 0])
        raise DatasetError(f"{where}: label {low} of node {node} is negative; class ids must run over 0..C-1")
    values = torch.unique(labels)
    high, distinct = int(values[-1]), int(values.numel())
    unused = high + 1 - distinct
    if unused > max(distinct, MAX_UNUSED_CLASSES):
        holders = (labels == high).nonzero().reshape(-1)
        node_name = f"node {int(holders[0])}" + (f" (and {len(holders) - 1} more)" if len(holders) > 1 else "")
        others = values[:-1]
        span = (
            f"{int(others[0])}..{int(others[-1])} ({len(others)} distinct value{'s' if len(others) != 1 else ''})"
            if len(others)
            else "nothing (it is the only label)"
        )
        raise DatasetError(
            f"{where}: label {high} of {node_name} looks stray: the other labels span {span}, and taking "
            f"max+1 = {high + 1} classes would leave {unused} of them without a node. "
            "Fix the label; class ids must run over 0..C-1"
        )
    return high + 1


def _check_finite(values: torch.Tensor, what: str, row_name: str, col_name: str) -> None:
    """Refuse NaN/inf in ``values``, naming their count and the first position.

    Checks about ``_CHECK_ELEMENTS`` values at a time to bound the memory of the mask.
    """
    count, first = 0, None
    rows = max(1, _CHECK_ELEMENTS // max(1, values[:1].numel()))
    for start in range(0, values.shape[0], rows):
        bad = ~torch.isfinite(values[start : start + rows])
        chunk_count = int(bad.sum())
        if chunk_count and first is None:
            first = bad.nonzero()[0].tolist()
            first[0] += start
        count += chunk_count
    if count and first is not None:
        at = f"{row_name} {first[0]}" + (f", {col_name} {first[1]}" if len(first) > 1 else "")
        raise DatasetError(
            f"{what} has {count} non-finite value{'s' if count != 1 else ''} (first at {at}); "
            "replace NaN and infinity before training"
        )


def _check_multilabel(labels: torch.Tensor, where: str) -> None:
    """Multilabel targets must be 0 or 1 (NaN and infinity included)."""
    if labels.is_floating_point():
        _check_finite(labels, f"{where}: multilabel labels", "node", "task")
    bad = (labels != 0) & (labels != 1)
    if bool(bad.any()):
        node, task = bad.nonzero()[0].tolist()
        count = int(bad.sum())
        raise DatasetError(
            f"{where}: multilabel labels must be 0 or 1; node {node}, task {task} holds "
            f"{labels[node, task].item()} ({count} such value{'s' if count != 1 else ''})"
        )


def default_data_dir(name: str) -> Path:
    """Folder of an offline dataset when the caller gives no ``root``
    (:func:`revgnn_dgl.data.paths.default_dataset_folder`)."""
    return default_dataset_folder(name)


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
