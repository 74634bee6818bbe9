"""Generated graph families that differ in exactly the statistics a deep recipe depends on.

``synthetic-family`` (``--dataset synthetic-family --dataset-option family=NAME``) draws a graph
whose labels need the graph, from one generator whose knobs are the statistics that
:mod:`revgnn_dgl.train.auto_recipe` measures:

* **feature kind**: ``sparse`` binary bags of words (a few percent of a few hundred words on,
  row-normalised as Planetoid's loaders do) or ``dense`` floats of a given ``feature_scale``
  and offset (a protein network's profile scores);
* **label kind**: ``multiclass`` (one of K classes) or ``multilabel`` (T binary tasks, ROC-AUC);
* **homophily**: the share of edges that join two nodes of the same latent community (low
  values give a heterophilous graph, whose edges mostly join *neighbouring* communities, so
  the graph still carries signal, as in Roman-empire-like graphs);
* **isolated**: the share of nodes without any edge (4,536 of 7,766 on the protein network
  of issue 39);
* **edge features**: ``edge_feats`` noisy channels per edge (0: none).

Every node has a hidden vector (its community's centre plus noise). Labels read the hidden
vectors averaged over the 1-hop neighbourhood (with the node itself), so a GNN that pools
neighbours sees more of a label than the node's features alone; the features are a noisy view
of the node's own hidden vector. :data:`FAMILIES` names the presets used by the tests, the
leave-one-graph-out fit of the auto recipe and the committed runs.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import dgl
import numpy as np
import scipy.sparse as sp
import torch

from ..limits import MAX_NODES, check_count, check_memory
from .base import DatasetError, NodeDataset, as_index, undirected_edges

HIDDEN_DIM = 16

#: The preset families: each differs from ``citation`` in the statistics its name says.
FAMILIES: Dict[str, Dict[str, Any]] = {
    # Cora-like: sparse binary bags of words, one label, homophilous, no isolated node.
    "citation": dict(
        features="sparse",
        feature_dim=500,
        labels="multiclass",
        num_labels=6,
        homophily=0.8,
        isolated=0.0,
        avg_degree=4.0,
    ),
    # Issue 39's protein network: dense 32-dim profiles of scale 3, 15 tasks, 58% isolated nodes.
    "protein": dict(
        features="dense",
        feature_dim=32,
        feature_scale=3.0,
        labels="multilabel",
        num_labels=15,
        homophily=0.8,
        isolated=0.58,
        avg_degree=8.0,
    ),
    # The same with 19 edge-feature channels.
    "protein-edges": dict(
        features="dense",
        feature_dim=32,
        feature_scale=3.0,
        labels="multilabel",
        num_labels=15,
        homophily=0.8,
        isolated=0.58,
        avg_degree=8.0,
        edge_feats=19,
    ),
    # Dense features, one label, heterophilous edges (mostly to the next community).
    "heterophilous": dict(
        features="dense",
        feature_dim=32,
        feature_scale=1.0,
        labels="multiclass",
        num_labels=5,
        homophily=0.15,
        isolated=0.0,
        avg_degree=8.0,
    ),
    # Co-purchase-like: binary bags of words, dense graph, homophilous.
    "copurchase": dict(
        features="sparse",
        feature_dim=300,
        labels="multiclass",
        num_labels=8,
        homophily=0.8,
        isolated=0.02,
        avg_degree=30.0,
    ),
}


def make_family_graph(
    family: str = "citation",
    seed: int = 0,
    num_nodes: int = 2000,
    features: Optional[str] = None,
    feature_dim: Optional[int] = None,
    feature_scale: Optional[float] = None,
    labels: Optional[str] = None,
    num_labels: Optional[int] = None,
    homophily: Optional[float] = None,
    isolated: Optional[float] = None,
    avg_degree: Optional[float] = None,
    edge_feats: Optional[int] = None,
    feature_noise: float = 2.0,
) -> NodeDataset:
    """Generate one graph of a family; any statistic given (not None) overrides the preset's.

    Parameters
    ----------
    family : str
        A preset of :data:`FAMILIES`.
    seed : int
        Seed of the generator and of the split (60/20/20 at random).
    num_nodes : int
        Nodes.
    features : str
        ``sparse`` (binary bag of words, rows normalised to sum 1) or ``dense`` (floats).
    feature_dim : int
        Feature width.
    feature_scale : float
        Dense features: the standard deviation of every channel (and the spread of the
        channels' offsets); the feature kind's statistic the auto recipe reads.
    labels : str
        ``multiclass`` or ``multilabel``.
    num_labels : int
        Classes, or binary tasks.
    homophily : float
        Share of edge draws that stay inside the node's community, in [0, 1]; the rest go to
        the next community (heterophily that still carries signal).
    isolated : float
        Share of nodes with no edge, in [0, 1).
    avg_degree : float
        Mean number of neighbours of a connected node.
    edge_feats : int
        Edge feature channels (0: none).
    feature_noise : float
        Noise of the features relative to their signal.
    """
    p = _family_parameters(
        family,
        num_nodes,
        dict(features=features, feature_dim=feature_dim, feature_scale=feature_scale, labels=labels,
             num_labels=num_labels, homophily=homophily, isolated=isolated, avg_degree=avg_degree,
             edge_feats=edge_feats),
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    k = p["num_labels"] if p["labels"] == "multiclass" else 8
    community = rng.integers(k, size=num_nodes)
    centres = rng.normal(size=(k, HIDDEN_DIM))
    hidden = centres[community] + 0.7 * rng.normal(size=(num_nodes, HIDDEN_DIM))
    # The order of the draws below is the family's definition: committed runs were trained on it.
    src, dst = _edges(rng, p, community, k, num_nodes)
    y = _labels(rng, p, hidden, centres, src, dst, k, num_nodes)
    feat = _features(rng, p, hidden, num_nodes, feature_noise)
    graph = dgl.graph((torch.from_numpy(src), torch.from_numpy(dst)), num_nodes=num_nodes)
    graph.ndata["feat"] = torch.from_numpy(feat)
    if p["edge_feats"]:
        graph.edata["feat"] = _edge_features(rng, p, hidden, src, dst)
    perm = rng.permutation(num_nodes)
    n_train, n_val = int(0.6 * num_nodes), int(0.2 * num_nodes)
    return NodeDataset(
        name=f"synthetic-family-{family}",
        graph=graph,
        labels=y,
        train_idx=as_index(np.sort(perm[:n_train])),
        val_idx=as_index(np.sort(perm[n_train : n_train + n_val])),
        test_idx=as_index(np.sort(perm[n_train + n_val :])),
        task=p["labels"],
    )


def _family_parameters(family: str, num_nodes: int, given: Dict[str, Any]) -> Dict[str, Any]:
    """The preset's statistics with the given ones (not None) in their place, each checked."""
    if family not in FAMILIES:
        raise DatasetError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}.")
    p = dict(FAMILIES[family])
    p.setdefault("feature_scale", 1.0)
    p.setdefault("edge_feats", 0)
    p.update({k: v for k, v in given.items() if v is not None})
    if num_nodes < 20:
        raise DatasetError(f"synthetic-family needs num_nodes >= 20, got {num_nodes}")
    check_count("num_nodes", num_nodes, MAX_NODES, error=DatasetError, where="synthetic-family")
    if p["features"] not in ("sparse", "dense"):
        raise DatasetError(f"features must be sparse or dense, got {p['features']!r}")
    if p["labels"] not in ("multiclass", "multilabel"):
        raise DatasetError(f"labels must be multiclass or multilabel, got {p['labels']!r}")
    if not 0.0 <= p["homophily"] <= 1.0 or not 0.0 <= p["isolated"] < 1.0:
        raise DatasetError(
            f"homophily must lie in [0, 1] and isolated in [0, 1), got {p['homophily']} and {p['isolated']}"
        )
    if not 0 < p["avg_degree"] < num_nodes or p["num_labels"] < 2 or p["feature_dim"] < 1:
        raise DatasetError("avg_degree must lie in (0, num_nodes), num_labels be >= 2 and feature_dim >= 1")
    check_count("feature_dim", p["feature_dim"], 1 << 16, error=DatasetError, where="synthetic-family")
    check_count("num_labels", p["num_labels"], 4096, error=DatasetError, where="synthetic-family")
    check_count("edge_feats", p["edge_feats"], 1024, minimum=0, error=DatasetError, where="synthetic-family")
    check_memory(f"synthetic-family with num_nodes={num_nodes}",
                 num_nodes * 8 * (p["feature_dim"] + 4 * p["num_labels"] + 8 * HIDDEN_DIM)
                 + num_nodes * p["avg_degree"] * 8 * (8 + 2 * p["edge_feats"]), error=DatasetError)  # fmt: skip
    return p


def _edges(
    rng: np.random.Generator, p: Dict[str, Any], community: np.ndarray, k: int, num_nodes: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Edges among the connected nodes only: same community with probability `homophily`, else the next one."""
    connected = np.flatnonzero(rng.random(num_nodes) >= p["isolated"])
    if len(connected) < 2:
        connected = np.arange(num_nodes)
    draws = int(round(len(connected) * p["avg_degree"] / 2))
    src = connected[rng.integers(len(connected), size=draws)]
    target = np.where(rng.random(draws) < p["homophily"], community[src], (community[src] + 1) % k)
    members = [connected[community[connected] == c] for c in range(k)]
    dst = np.array([m[rng.integers(len(m))] if len(m) else s for s, m in zip(src, (members[t] for t in target))],
                   dtype=np.int64)  # fmt: skip
    src, dst, _ = undirected_edges(src, dst, num_nodes)
    return src, dst


def _labels(
    rng: np.random.Generator,
    p: Dict[str, Any],
    hidden: np.ndarray,
    centres: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    k: int,
    num_nodes: int,
) -> torch.Tensor:
    """Labels: the hidden vectors averaged over the node and its neighbours."""
    adj = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(num_nodes, num_nodes)) + sp.identity(num_nodes)
    smooth = sp.diags(1.0 / np.asarray(adj.sum(axis=1)).ravel()) @ adj @ hidden
    smooth = (smooth - smooth.mean(0)) / (smooth.std(0) + 1e-12)
    if p["labels"] == "multiclass":
        # The community of the smoothed vector: the nearest centre (plus noise).
        score = smooth @ centres.T + 0.5 * rng.normal(size=(num_nodes, k))
        return torch.from_numpy(score.argmax(1).astype(np.int64))
    weights = rng.normal(size=(HIDDEN_DIM, p["num_labels"])) / np.sqrt(HIDDEN_DIM)
    score = smooth @ weights + 0.3 * rng.normal(size=(num_nodes, p["num_labels"]))
    rate = rng.uniform(0.03, 0.2, size=p["num_labels"])  # rare positives, as protein function labels
    cut = ((1.0 - rate) * num_nodes).astype(np.int64)
    return torch.from_numpy((score >= np.sort(score, axis=0)[cut, np.arange(p["num_labels"])]).astype(np.float32))


def _features(
    rng: np.random.Generator, p: Dict[str, Any], hidden: np.ndarray, num_nodes: int, feature_noise: float
) -> np.ndarray:
    """Features: a noisy view of the node's own hidden vector."""
    proj = rng.normal(size=(HIDDEN_DIM, p["feature_dim"])) / np.sqrt(HIDDEN_DIM)
    view = hidden @ proj + p.get("feature_noise", feature_noise) * rng.normal(size=(num_nodes, p["feature_dim"]))
    if p["features"] == "dense":
        view = view / view.std(0)
        offsets = p["feature_scale"] * rng.normal(size=p["feature_dim"])
        return (p["feature_scale"] * view + offsets).astype(np.float32)
    # Each node switches on its ~3% highest-scoring words (at least one): binary, then row-normalised.
    on = view >= np.quantile(view, 0.97, axis=1, keepdims=True)
    return (on / on.sum(1, keepdims=True)).astype(np.float32)


def _edge_features(
    rng: np.random.Generator, p: Dict[str, Any], hidden: np.ndarray, src: np.ndarray, dst: np.ndarray
) -> torch.Tensor:
    """Edge features: how alike the two ends' hidden vectors are, the same both ways, with noise."""
    half = len(src) // 2  # the second half of the edge list is the first reversed: same values both ways
    signal = (hidden[src] * hidden[dst]) @ rng.normal(size=(HIDDEN_DIM, p["edge_feats"])) / HIDDEN_DIM
    noise = np.tile(rng.normal(size=(half, p["edge_feats"])), (2, 1)) if len(src) else np.zeros((0, p["edge_feats"]))
    return torch.from_numpy((1.0 / (1.0 + np.exp(-(signal + noise)))).astype(np.float32))
