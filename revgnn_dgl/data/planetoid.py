"""Cora and CiteSeer from the raw Planetoid files, read without downloading.

Processing follows DGL's ``CitationGraphDataset`` (the Kipf and Welling
split, row-normalised features), with two differences: edges are
symmetrised and de-duplicated, and self-loops are dropped (CiteSeer lists a
few), so the edge counts match the undirected counts in the data README.
``self_loops=True`` then adds exactly one self-loop per node, as RevGAT's
released preprocessing does (its attention layers expect them).

CiteSeer's test range has 15 ids with no row in the files (isolated
nodes). As in DGL they get zero features and label 0, and they are in no
split, so they never enter a loss or a metric.
"""

from __future__ import annotations

from pathlib import Path

import dgl
import numpy as np
import scipy.sparse as sp
import torch

from .base import DatasetError, NodeDataset, as_index, undirected_edges
from .paths import dataset_folder, root_hint
from .safe_pickle import restricted_load

_PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph")
_NUM_VAL = 500


def load_planetoid(name: str, root: str | Path | None = None, self_loops: bool = False) -> NodeDataset:
    """Load ``cora`` or ``citeseer`` from its Planetoid raw files.

    Parameters
    ----------
    name : str
        ``'cora'`` or ``'citeseer'``.
    root : str or Path, optional
        The data root, holding ``<name>/ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}``,
        or the ``<name>`` folder itself. Default: ``$REVGNN_DGL_DATA``, else
        ``../shared/data`` next to the project (see :mod:`revgnn_dgl.data.paths`).

    Returns
    -------
    NodeDataset
        Multiclass dataset with the standard split: train = the first
        ``len(y)`` nodes, validation = the next 500, test = ``test.index``.
    """
    folder = dataset_folder(name, root, files=(f"ind.{name}.*",))
    files = {part: folder / f"ind.{name}.{part}" for part in (*_PARTS, "test.index")}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{name}: Planetoid files not found in {folder} (missing {', '.join(missing)}). "
            f"Put the raw files ind.{name}.* (github.com/kimiyoung/planetoid, data/) there, "
            f"or {root_hint(name)}"
        )
    objects = {}
    for part in _PARTS:
        try:
            with open(files[part], "rb") as f:
                objects[part] = restricted_load(f)
        except Exception as err:  # any unpickling failure means a bad file
            raise DatasetError(f"{name}: cannot read {files[part]}: {err}") from err
    test_ids = np.loadtxt(files["test.index"], dtype=np.int64, ndmin=1)

    allx, ally = objects["allx"], objects["ally"]
    # tx/ty row i belongs to node test_ids[i]; the test ids fill the range
    # [len(allx), max id], and ids of that range without a row (CiteSeer)
    # keep zero features.
    num_known = allx.shape[0]
    if int(test_ids.min()) < num_known:
        raise DatasetError(f"{name}: test.index holds ids below {num_known}, the number of allx rows")
    num_nodes = int(test_ids.max()) + 1
    row_of = np.concatenate([np.arange(num_known), test_ids])
    stacked = sp.vstack([allx, objects["tx"]]).tocoo()
    feats = sp.csr_matrix(
        (stacked.data, (row_of[stacked.row], stacked.col)),
        shape=(num_nodes, allx.shape[1]),
        dtype=np.float32,
    )
    onehot = np.zeros((num_nodes, ally.shape[1]), dtype=np.float32)
    onehot[row_of] = np.concatenate([ally, objects["ty"]])
    feats = _row_normalise(feats)

    adjacency = objects["graph"]
    src = np.fromiter((u for u, vs in adjacency.items() for _ in vs), dtype=np.int64)
    dst = np.fromiter((v for vs in adjacency.values() for v in vs), dtype=np.int64)
    if src.size and max(src.max(), dst.max()) >= num_nodes:
        raise DatasetError(f"{name}: the graph file refers to nodes beyond the {num_nodes} feature rows")
    src, dst, _ = undirected_edges(src, dst, num_nodes)

    graph = dgl.graph((torch.from_numpy(src), torch.from_numpy(dst)), num_nodes=num_nodes)
    if self_loops:
        graph = dgl.add_self_loop(graph)
    graph.ndata["feat"] = torch.from_numpy(feats)
    num_train = objects["y"].shape[0]
    return NodeDataset(
        name=name,
        graph=graph,
        labels=torch.from_numpy(onehot.argmax(axis=1)).long(),
        train_idx=torch.arange(num_train),
        val_idx=torch.arange(num_train, num_train + _NUM_VAL),
        test_idx=as_index(np.sort(test_ids)),
        task="multiclass",
    )


def _row_normalise(feats: sp.csr_matrix) -> np.ndarray:
    """Dense float32 features with each non-zero row scaled to sum to 1."""
    row_sum = np.asarray(feats.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        scale = np.where(row_sum > 0, 1.0 / row_sum, 0.0)
    return np.asarray((sp.diags(scale) @ feats).todense(), dtype=np.float32)
