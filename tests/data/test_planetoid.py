"""Cora and CiteSeer from the shared Planetoid raw files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from revgnn_dgl.data import DatasetError, load_dataset

# name: nodes, undirected edges (no self-loops), features, classes, train size
EXPECTED = {"cora": (2708, 5278, 1433, 7, 140), "citeseer": (3327, 4552, 3703, 6, 120)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_split_and_graph(dataset_dir, name):
    nodes, undirected, feats, classes, train = EXPECTED[name]
    ds = load_dataset(name, root=dataset_dir(name))
    g = ds.graph
    assert ds.task == "multiclass" and ds.metric_name == "accuracy"
    assert g.num_nodes() == nodes and g.num_edges() == 2 * undirected
    assert ds.num_node_feats == feats and ds.num_outputs == classes and ds.num_edge_feats == 0
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (nodes,)
    assert torch.equal(ds.train_idx, torch.arange(train))
    assert torch.equal(ds.val_idx, torch.arange(train, train + 500))
    assert len(ds.test_idx) == 1000 and ds.test_idx.min() >= train + 500
    src, dst = (t.numpy() for t in g.edges())
    keys = src * nodes + dst
    assert len(np.unique(keys)) == len(keys) and (src != dst).all()
    assert set(keys.tolist()) == set((dst * nodes + src).tolist())
    # Row-normalised bag of words, as DGL does: each non-empty row sums to 1.
    row_sum = g.ndata["feat"].sum(1)
    assert g.ndata["feat"].dtype == torch.float32
    assert torch.allclose(row_sum[row_sum > 0], torch.ones(1), atol=1e-5)
    # The test labels come from ty; every class is present.
    assert len(ds.labels[ds.test_idx].unique()) == classes


def test_citeseer_isolated_test_range_nodes(dataset_dir):
    ds = load_dataset("citeseer", root=dataset_dir("citeseer"))
    in_split = torch.zeros(ds.graph.num_nodes(), dtype=torch.bool)
    for idx in (ds.train_idx, ds.val_idx, ds.test_idx):
        in_split[idx] = True
    padded = torch.arange(int(ds.test_idx.min()), int(ds.test_idx.max()) + 1)
    padded = padded[~in_split[padded]]
    assert len(padded) == 15
    assert (ds.graph.ndata["feat"][padded] == 0).all()
    assert (ds.labels[padded] == 0).all()


def test_default_root_from_env(shared_data_dir, dataset_dir, monkeypatch):
    dataset_dir("cora")
    monkeypatch.setenv("REVGNN_DGL_DATA", str(shared_data_dir))
    assert load_dataset("cora").graph.num_nodes() == 2708


def test_missing_files(tmp_path, dataset_dir):
    with pytest.raises(DatasetError, match="missing ind.cora.x.*REVGNN_DGL_DATA"):
        load_dataset("cora", root=tmp_path)
    for f in dataset_dir("cora").iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "ind.cora.graph").unlink()
    with pytest.raises(DatasetError, match=r"missing ind\.cora\.graph$|missing ind\.cora\.graph\)"):
        load_dataset("cora", root=tmp_path)


def test_unknown_option():
    with pytest.raises(DatasetError, match="does not take option.*seed.*takes: root"):
        load_dataset("cora", seed=0)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_self_loops_option_adds_one_loop_per_node(shared_data_dir, name):
    plain = load_dataset(name, root=shared_data_dir / name)
    looped = load_dataset(name, root=shared_data_dir / name, self_loops="true")
    nodes = plain.graph.num_nodes()
    assert looped.graph.num_edges() == plain.graph.num_edges() + nodes
    src, dst = (t.numpy() for t in looped.graph.edges())
    loops = src == dst
    assert np.array_equal(np.sort(src[loops]), np.arange(nodes))  # each node once
    # The other edges are the plain graph's, in its order; features and split are untouched.
    plain_src, plain_dst = (t.numpy() for t in plain.graph.edges())
    assert np.array_equal(src[~loops], plain_src) and np.array_equal(dst[~loops], plain_dst)
    assert torch.equal(looped.graph.ndata["feat"], plain.graph.ndata["feat"])
    assert torch.equal(looped.test_idx, plain.test_idx)
    assert (looped.graph.in_degrees() >= 1).all()
