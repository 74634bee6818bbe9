"""Datasets from a DGL graph file: round trips and every bad-input error."""
from __future__ import annotations

from pathlib import Path

import dgl
import pytest
import torch

from revgnn_dgl.data import DatasetError, load_dataset

N = 12


def _graph(label: torch.Tensor) -> dgl.DGLGraph:
    src = torch.arange(N)
    g = dgl.graph((torch.cat([src, (src + 1) % N]), torch.cat([(src + 1) % N, src])), num_nodes=N)
    g.ndata["feat"] = torch.randn(N, 5, dtype=torch.float64)
    g.ndata["label"] = label
    g.ndata["train_mask"] = torch.arange(N) < 6
    g.ndata["val_mask"] = (torch.arange(N) >= 6) & (torch.arange(N) < 9)
    g.ndata["test_mask"] = torch.arange(N) >= 9
    return g


def _save(tmp_path: Path, g: dgl.DGLGraph, name: str = "graph.bin") -> str:
    path = str(tmp_path / name)
    dgl.save_graphs(path, [g])
    return path


def test_multiclass_round_trip(tmp_path):
    g = _graph(torch.randint(0, 4, (N,)))
    g.ndata["label"][0] = 3
    g.edata["feat"] = torch.rand(g.num_edges(), 2)
    ds = load_dataset(_save(tmp_path, g))
    assert ds.name == "graph.bin" and ds.task == "multiclass" and ds.metric_name == "accuracy"
    assert ds.labels.dtype == torch.int64 and torch.equal(ds.labels, g.ndata["label"])
    assert ds.num_outputs == 4 and ds.num_node_feats == 5 and ds.num_edge_feats == 2
    assert ds.graph.ndata["feat"].dtype == torch.float32
    torch.testing.assert_close(ds.graph.ndata["feat"], g.ndata["feat"].float())
    torch.testing.assert_close(ds.graph.edata["feat"], g.edata["feat"])
    assert torch.equal(torch.stack(ds.graph.edges()), torch.stack(g.edges()))
    assert torch.equal(ds.train_idx, torch.arange(6))
    assert torch.equal(ds.val_idx, torch.arange(6, 9))
    assert torch.equal(ds.test_idx, torch.arange(9, N))
    # Labels and masks live in the dataset, not in the graph given to models.
    assert set(ds.graph.ndata) == {"feat"} and not ds.has_species


def test_multilabel_round_trip_without_bin_suffix(tmp_path):
    g = _graph(torch.randint(0, 2, (N, 3)))
    g.ndata["species"] = torch.eye(2)[torch.arange(N) % 2]
    ds = load_dataset(_save(tmp_path, g, "my_graph.dgl"))
    assert ds.task == "multilabel" and ds.metric_name == "rocauc" and ds.num_outputs == 3
    assert ds.labels.dtype == torch.float32 and torch.equal(ds.labels, g.ndata["label"].float())
    assert ds.num_edge_feats == 0 and ds.has_species


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(str(tmp_path / "nothing.bin"))


def test_not_a_dgl_file(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"this is not a DGL graph file" * 10)
    with pytest.raises(DatasetError, match="not a DGL graph file"):
        load_dataset(str(path))


@pytest.mark.parametrize("key", ["label", "feat", "train_mask", "val_mask", "test_mask"])
def test_missing_key_is_named(tmp_path, key):
    g = _graph(torch.zeros(N, dtype=torch.int64))
    del g.ndata[key]
    with pytest.raises(DatasetError, match=rf"no ndata\['{key}'\]"):
        load_dataset(_save(tmp_path, g))


def test_mask_of_wrong_shape(tmp_path):
    # DGL itself refuses ndata whose first dimension is not N, so a wrong
    # mask length shows up as a wrong shape.
    g = _graph(torch.zeros(N, dtype=torch.int64))
    g.ndata["val_mask"] = torch.ones(N, 2, dtype=torch.bool)
    with pytest.raises(DatasetError, match=r"val_mask'\] must be a 1-D mask of length 12"):
        load_dataset(_save(tmp_path, g))


def test_mask_not_boolean(tmp_path):
    g = _graph(torch.zeros(N, dtype=torch.int64))
    g.ndata["test_mask"] = torch.full((N,), 2)
    with pytest.raises(DatasetError, match="boolean or 0/1"):
        load_dataset(_save(tmp_path, g))


def test_empty_train_mask(tmp_path):
    g = _graph(torch.zeros(N, dtype=torch.int64))
    g.ndata["train_mask"] = torch.zeros(N, dtype=torch.bool)
    with pytest.raises(DatasetError, match="selects no node"):
        load_dataset(_save(tmp_path, g))


@pytest.mark.parametrize(
    "label, match",
    [
        (torch.rand(N), "integer class ids"),
        (torch.full((N,), -1), "negative"),
        (torch.full((N, 2), 3), "only 0 and 1"),
        (torch.zeros(N, 2, 2), "1-D .* or 2-D"),
    ],
)
def test_bad_labels(tmp_path, label, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset(_save(tmp_path, _graph(label)))


def test_several_graphs(tmp_path):
    g = _graph(torch.zeros(N, dtype=torch.int64))
    path = str(tmp_path / "two.bin")
    dgl.save_graphs(path, [g, g])
    with pytest.raises(DatasetError, match="holds 2 graphs"):
        load_dataset(path)


def test_file_takes_no_options(tmp_path):
    path = _save(tmp_path, _graph(torch.zeros(N, dtype=torch.int64)))
    with pytest.raises(DatasetError, match="does not take option"):
        load_dataset(path, seed=1)
