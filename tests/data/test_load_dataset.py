"""load_dataset dispatch and the NodeDataset container."""

from __future__ import annotations

import dgl
import pytest
import torch

from revgnn_dgl.data import DatasetError, NodeDataset, dataset_names, load_dataset


def test_unknown_name_lists_valid_names():
    with pytest.raises(DatasetError) as err:
        load_dataset("ogbn-protein")
    names = {
        "synthetic-proteins",
        "synthetic-family",
        "ogbn-proteins",
        "ogbn-arxiv",
        "cora",
        "citeseer",
        "humloc",
        "amazon-computers",
        "amazon-photo",
        "coauthor-cs",
        "coauthor-physics",
    }
    for name in (*names, ".bin", ".dgl"):
        assert name in str(err.value)
    assert set(dataset_names()) == names


def test_unknown_option_names_accepted_ones():
    with pytest.raises(DatasetError, match="does not take option.*root.*takes: seed, num_nodes"):
        load_dataset("synthetic-proteins", root="/tmp")


def test_dataset_error_is_value_error():
    assert issubclass(DatasetError, ValueError)


def _container(**overrides):
    g = dgl.graph(([0, 1], [1, 0]), num_nodes=3)
    g.ndata["feat"] = torch.zeros(3, 2)
    fields = dict(
        name="x",
        graph=g,
        labels=torch.tensor([0, 2, 1]),
        train_idx=torch.tensor([0]),
        val_idx=torch.tensor([1]),
        test_idx=torch.tensor([2]),
        task="multiclass",
    )
    fields.update(overrides)
    return NodeDataset(**fields)


def test_container_properties():
    ds = _container()
    assert (ds.num_node_feats, ds.num_edge_feats, ds.num_outputs) == (2, 0, 3)
    assert ds.metric_name == "accuracy" and not ds.has_species


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"task": "regression"}, "task must be one of"),
        ({"labels": torch.zeros(3, 2)}, r"multiclass labels must have shape \(N,\)"),
        ({"task": "multilabel"}, r"multilabel labels must have shape \(N, T\)"),
        ({"test_idx": torch.tensor([3])}, "outside"),
        ({"val_idx": torch.tensor([1.0])}, "int64"),
    ],
)
def test_container_validation(overrides, match):
    with pytest.raises(DatasetError, match=match):
        _container(**overrides)
