"""The default search space of ``tune`` (no ``--space``), by model family and kind of graph.

Every space searches the step and the regularisation: ``lr`` (log-uniform over 2e-3 to 3e-2, which
holds the best configs of the committed HumLoc and Coauthor CS studies, 0.014-0.028) and the
model's ``dropout``, then by what the graph holds:

========================================  ==================================================
graph                                     added to the space
========================================  ==================================================
dense node features (most values not      ``weight_decay`` log-uniform 1e-6 to 1e-2 (HumLoc's
0/1, or more than 10% non-zero)           best studies: 0 to 2e-3)
sparse or binary features (bags of        ``weight_decay`` log-uniform 1e-4 to 1e-1 and
words: 0/1 values, or at most 10%         ``input_dropout`` 0 to 0.6 (the citation and
non-zero)                                 co-authorship recipes: 5e-3 to 0.1, 0.5-0.6)
edge features, a GENConv model            ``model_args.aggregator`` max, softmax, mean
                                          (GENConv is the block that reads them)
no edge features, a model with a          ``model_args.conv`` gen, gcn, sage (unless given
``conv`` choice                           with ``--set conv=...``, which then stays fixed)
========================================  ==================================================

Depth, width and the epochs are not searched: they are the study's (``--num-layers``,
``--hidden``, ``--epochs``), since a study compares recipes for the model it was asked about.
The spaces are written as ``--space`` items, parsed by :func:`revgnn_dgl.train.tune.parse_space`.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from .config import TrainConfig

__all__ = ["default_space_items", "feature_kind"]

#: A feature matrix with at most this share of non-zero values is sparse (bags of words are ~1%).
SPARSE_DENSITY = 0.1
#: Rows looked at to tell the feature kind.
SAMPLE_ROWS = 20000


def feature_kind(feat: Any) -> Tuple[str, float, bool]:
    """``('sparse' | 'dense', share of non-zero values, binary)`` of a node feature matrix (its first rows).

    >>> import torch
    >>> feature_kind(torch.eye(20))[:2], feature_kind(torch.ones(4, 3) * 0.5)[:2]
    (('sparse', 0.05), ('dense', 1.0))
    """
    rows = feat[:SAMPLE_ROWS].float()
    density = round(float((rows != 0).double().mean()), 4) if rows.numel() else 0.0
    binary = bool(((rows == 0) | (rows == 1)).all()) if rows.numel() else False
    kind = "sparse" if binary or density <= SPARSE_DENSITY else "dense"
    return kind, density, binary


def default_space_items(base: TrainConfig, dataset: Any) -> Tuple[List[str], str]:
    """The default space for ``base.model`` on ``dataset`` as ``--space`` items, and the graph's kind in words."""
    from ..zoo import architecture_arguments, get_config

    card = get_config(base.model)
    arguments = architecture_arguments(card["architecture"])
    takes = (lambda name: True) if arguments is None else (lambda name: name in arguments)
    kind, density, binary = feature_kind(dataset.graph.ndata["feat"])
    edge_feats = dataset.num_edge_feats
    labels = f"{dataset.num_outputs} labels per node (multi-label)" if dataset.task == "multilabel" else \
        f"{dataset.num_outputs} classes"  # fmt: skip
    described = "binary" if binary else f"{density:.0%} non-zero"
    words = (f"{dataset.num_node_feats}-dim {kind} node features ({described}), "
             + (f"{edge_feats}-dim edge features, " if edge_feats else "no edge features, ") + labels)  # fmt: skip

    items = ["lr=loguniform:2e-3:3e-2"]
    if takes("dropout") or "dropout" in card["arguments"]:
        items.append("dropout=float:0.1:0.6")
    if kind == "dense":
        items.append("weight_decay=loguniform:1e-6:1e-2")
    else:
        items += ["weight_decay=loguniform:1e-4:1e-1", "input_dropout=float:0:0.6"]
    conv = base.model_args.get("conv", card["arguments"].get("conv", "gen" if takes("conv") else None))
    if edge_feats and conv == "gen" and takes("aggregator") and "aggregator" not in base.model_args:
        items.append("model_args.aggregator=choice:max,softmax,mean")
    elif not edge_feats and takes("conv") and "conv" not in base.model_args:
        items.append("model_args.conv=choice:gen,gcn,sage")
    return items, f"a graph with {words}"
