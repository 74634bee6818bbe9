"""Datasets stored as a DGL graph file (written by ``dgl.save_graphs``)."""
from __future__ import annotations

from pathlib import Path

import dgl
import torch

from .base import DatasetError, NodeDataset

_MASKS = {"train_idx": "train_mask", "val_idx": "val_mask", "test_idx": "test_mask"}


def load_graph_file(path: str | Path) -> NodeDataset:
    """Load a node-classification dataset from a DGL graph file.

    The file must hold exactly one homogeneous graph with

    * ``ndata['feat']``: node features ``(N, F)`` (cast to float32);
    * ``ndata['label']``: int class ids ``(N,)`` (multiclass) or a 0/1
      matrix ``(N, T)`` (multilabel);
    * ``ndata['train_mask']``, ``ndata['val_mask']``, ``ndata['test_mask']``:
      boolean (or 0/1) masks of length N;
    * optionally ``edata['feat']`` ``(E, Fe)`` and ``ndata['species']``, a
      one-hot ``(N, S)``.

    The edges are used as stored (no symmetrisation).

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    NodeDataset
        Named after the file; the graph keeps only the features (labels and
        masks move to the dataset's fields).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"DGL graph file {str(path)!r} does not exist. Give the path of a file written "
            "by dgl.save_graphs, or a dataset name (see load_dataset)"
        )
    try:
        graphs, _ = dgl.load_graphs(str(path))
    except Exception as err:  # DGL raises assorted errors on foreign files
        raise DatasetError(
            f"{path} is not a DGL graph file (dgl.load_graphs failed: {err}). "
            "Write one with dgl.save_graphs([graph], path)"
        ) from err
    if len(graphs) != 1:
        raise DatasetError(f"{path} holds {len(graphs)} graphs; save exactly one graph per file")
    stored = graphs[0]
    if not stored.is_homogeneous:
        raise DatasetError(f"{path} holds a heterogeneous graph; only homogeneous graphs are supported")
    n = stored.num_nodes()
    for key in ("feat", "label", *_MASKS.values()):
        if key not in stored.ndata:
            raise DatasetError(
                f"{path}: the graph has no ndata[{key!r}]; a dataset file needs ndata 'feat', "
                "'label', 'train_mask', 'val_mask' and 'test_mask'"
            )

    feat = stored.ndata["feat"]
    if feat.dim() != 2:
        raise DatasetError(f"{path}: ndata['feat'] must be a 2-D (N, F) tensor, got shape {tuple(feat.shape)}")
    labels, task = _labels(stored.ndata["label"], path)
    splits = {field: _mask_to_index(stored.ndata[key], key, n, path) for field, key in _MASKS.items()}
    if splits["train_idx"].numel() == 0:
        raise DatasetError(f"{path}: ndata['train_mask'] selects no node")

    graph = dgl.graph(stored.edges(), num_nodes=n)
    graph.ndata["feat"] = feat.float()
    if "species" in stored.ndata:
        species = stored.ndata["species"]
        if species.dim() != 2:
            raise DatasetError(f"{path}: ndata['species'] must be a one-hot (N, S) tensor, got shape {tuple(species.shape)}")
        graph.ndata["species"] = species.float()
    if "feat" in stored.edata:
        edge_feat = stored.edata["feat"]
        if edge_feat.dim() != 2:
            raise DatasetError(f"{path}: edata['feat'] must be a 2-D (E, Fe) tensor, got shape {tuple(edge_feat.shape)}")
        graph.edata["feat"] = edge_feat.float()
    return NodeDataset(name=path.name, graph=graph, labels=labels, task=task, **splits)


def _labels(label: torch.Tensor, path: Path) -> tuple[torch.Tensor, str]:
    """Labels and task from ``ndata['label']``: int ids or a 0/1 matrix."""
    if label.dim() == 1:
        if label.is_floating_point() or label.dtype == torch.bool:
            raise DatasetError(f"{path}: 1-D ndata['label'] must hold integer class ids, got {label.dtype}")
        if label.numel() and int(label.min()) < 0:
            raise DatasetError(f"{path}: ndata['label'] holds negative class ids")
        return label.long(), "multiclass"
    if label.dim() == 2:
        values = label.float()
        if not ((values == 0) | (values == 1)).all():
            raise DatasetError(f"{path}: 2-D ndata['label'] (multilabel) must hold only 0 and 1")
        return values, "multilabel"
    raise DatasetError(f"{path}: ndata['label'] must be 1-D (class ids) or 2-D (0/1 tasks)")


def _mask_to_index(mask: torch.Tensor, key: str, num_nodes: int, path: Path) -> torch.Tensor:
    """Node ids selected by a boolean (or 0/1) mask of length ``num_nodes``."""
    if mask.dim() != 1 or mask.shape[0] != num_nodes:
        raise DatasetError(
            f"{path}: ndata[{key!r}] must be a 1-D mask of length {num_nodes} (one per node), "
            f"got shape {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
        raise DatasetError(f"{path}: ndata[{key!r}] must be boolean or 0/1")
    return mask.bool().nonzero().reshape(-1)
