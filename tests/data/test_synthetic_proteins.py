"""synthetic-proteins: ogbn-proteins's schema, determinism, and a planted graph signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from revgnn_dgl.data import DatasetError, evaluate_metric, load_dataset


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("synthetic-proteins")


def test_schema(dataset):
    g = dataset.graph
    n = g.num_nodes()
    assert dataset.name == "synthetic-proteins"
    assert n == 2000
    assert dataset.task == "multilabel" and dataset.metric_name == "rocauc"
    assert dataset.num_node_feats == 8 and dataset.num_edge_feats == 8 and dataset.num_outputs == 112
    assert dataset.has_species
    assert g.ndata["feat"].dtype == torch.float32 and g.ndata["feat"].shape == (n, 8)
    assert g.edata["feat"].dtype == torch.float32 and g.edata["feat"].shape == (g.num_edges(), 8)
    assert dataset.labels.dtype == torch.float32 and dataset.labels.shape == (n, 112)
    assert set(dataset.labels.unique().tolist()) == {0.0, 1.0}
    species = g.ndata["species"]
    assert species.dtype == torch.float32 and species.shape == (n, 8)
    assert torch.equal(species.sum(1), torch.ones(n)) and set(species.unique().tolist()) == {0.0, 1.0}
    assert (g.edata["feat"] >= 0).all() and (g.edata["feat"] <= 1).all()
    # Every task has both classes in every split, so no task is skipped by the metric.
    for idx in (dataset.train_idx, dataset.val_idx, dataset.test_idx):
        rate = dataset.labels[idx].mean(0)
        assert (rate > 0).all() and (rate < 1).all()
    assert 10 < g.num_edges() / n <= 16


def test_graph_symmetric_simple_and_edge_feats_match(dataset):
    g = dataset.graph
    src, dst = (t.numpy() for t in g.edges())
    n = g.num_nodes()
    keys = src * n + dst
    assert len(np.unique(keys)) == len(keys), "duplicate edges"
    assert (src != dst).all(), "self-loops"
    order = np.argsort(keys)
    rev = order[np.searchsorted(keys[order], dst * n + src)]
    assert (keys[rev] == dst * n + src).all(), "some edge lacks its reverse"
    assert torch.equal(g.edata["feat"], g.edata["feat"][torch.from_numpy(rev)])


def test_node_feat_is_sum_of_incident_edge_feats(dataset):
    g = dataset.graph
    _, dst = g.edges()
    expected = torch.zeros(g.num_nodes(), 8).index_add_(0, dst, g.edata["feat"])
    torch.testing.assert_close(g.ndata["feat"], expected)


def test_split_disjoint_and_covering(dataset):
    parts = [dataset.train_idx, dataset.val_idx, dataset.test_idx]
    assert [len(p) for p in parts] == [1200, 400, 400]
    assert all(p.dtype == torch.int64 for p in parts)
    joined = torch.cat(parts)
    assert len(joined.unique()) == len(joined) == dataset.graph.num_nodes()


def test_deterministic_given_seed(dataset):
    again = load_dataset("synthetic-proteins", seed=0)
    assert torch.equal(torch.stack(dataset.graph.edges()), torch.stack(again.graph.edges()))
    assert torch.equal(dataset.graph.edata["feat"], again.graph.edata["feat"])
    assert torch.equal(dataset.labels, again.labels)
    assert torch.equal(dataset.train_idx, again.train_idx)


def test_other_seed_differs(dataset):
    other = load_dataset("synthetic-proteins", seed=1)
    assert not torch.equal(dataset.labels, other.labels)
    assert not torch.equal(dataset.train_idx, other.train_idx)


def test_options():
    small = load_dataset("synthetic-proteins", seed=3, num_nodes=500, avg_degree=6)
    assert small.graph.num_nodes() == 500 and small.labels.shape == (500, 112)
    assert 4 < small.graph.num_edges() / 500 <= 6
    assert [len(i) for i in (small.train_idx, small.val_idx, small.test_idx)] == [300, 100, 100]


@pytest.mark.parametrize(
    "options", [{"num_nodes": 3}, {"avg_degree": 0}, {"homophily": 1.5}, {"num_communities": 0}, {"hops": -1}]
)
def test_bad_options(options):
    with pytest.raises(DatasetError):
        load_dataset("synthetic-proteins", **options)


def _ridge_val_rocauc(x: torch.Tensor, dataset) -> float:
    """Validation ROC-AUC of a closed-form ridge regression on inputs x."""
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    x = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    xt, yt = x[dataset.train_idx], dataset.labels[dataset.train_idx].double()
    w = torch.linalg.solve(xt.T @ xt + 1.0 * torch.eye(x.shape[1], dtype=x.dtype), xt.T @ yt)
    return evaluate_metric(x[dataset.val_idx] @ w, dataset.labels[dataset.val_idx], "multilabel")


def test_graph_signal_beats_node_features(dataset):
    # A linear model on neighbourhood averages (SGC-style, 2 hops) must beat
    # the same model on a node's own inputs: the labels need the graph.
    g = dataset.graph
    own = torch.cat([g.ndata["feat"], g.ndata["species"]], 1)
    src, dst = g.edges()
    deg = torch.bincount(dst, minlength=g.num_nodes()).clamp(min=1).unsqueeze(1).float()
    hops = [own]
    for _ in range(2):
        hops.append(torch.zeros_like(own).index_add_(0, dst, hops[-1][src]) / deg)
    feature_only = _ridge_val_rocauc(own, dataset)
    with_graph = _ridge_val_rocauc(torch.cat(hops, 1), dataset)
    assert with_graph > feature_only + 0.08, (feature_only, with_graph)
