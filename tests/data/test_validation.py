"""Inputs refused when a NodeDataset is built, each with one line naming the value."""

from __future__ import annotations

import dgl
import pytest
import torch

from revgnn_dgl.data import DatasetError, NodeDataset, load_dataset
from revgnn_dgl.data.base import MAX_UNUSED_CLASSES, count_classes

N = 30


def _dataset(labels=None, task="multiclass", feat=None, edge_feat=None, **splits) -> NodeDataset:
    src = torch.arange(N)
    g = dgl.graph((torch.cat([src, (src + 1) % N]), torch.cat([(src + 1) % N, src])), num_nodes=N)
    g.ndata["feat"] = torch.rand(N, 4) if feat is None else feat
    if edge_feat is not None:
        g.edata["feat"] = edge_feat
    fields = dict(
        name="toy",
        graph=g,
        labels=torch.arange(N) % 7 if labels is None else labels,
        train_idx=torch.arange(0, 10),
        val_idx=torch.arange(10, 20),
        test_idx=torch.arange(20, N),
        task=task,
    )
    fields.update(splits)
    return NodeDataset(**fields)


def _error(**kwargs) -> str:
    with pytest.raises(DatasetError) as err:
        _dataset(**kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_valid_dataset_passes():
    ds = _dataset()
    assert ds.num_outputs == 7


def test_nan_node_features_counted_with_first_position():
    feat = torch.rand(N, 4)
    feat[17, 2] = float("nan")
    feat[17, 3] = float("inf")
    feat[25, 0] = float("-inf")
    assert _error(feat=feat) == (
        "dataset 'toy': node feature 'feat' has 3 non-finite values (first at node 17, column 2); "
        "replace NaN and infinity before training"
    )


def test_non_finite_found_across_check_chunks(monkeypatch):
    import revgnn_dgl.data.base as base

    monkeypatch.setattr(base, "_CHECK_ELEMENTS", 16)  # the check walks the rows in chunks of 16 / 4 = 4
    feat = torch.rand(N, 4)
    feat[9, 1] = float("nan")
    feat[29, 3] = float("nan")
    assert "has 2 non-finite values (first at node 9, column 1)" in _error(feat=feat)


def test_non_finite_edge_features():
    edge_feat = torch.rand(2 * N, 3)
    edge_feat[41, 0] = float("nan")
    assert _error(edge_feat=edge_feat) == (
        "dataset 'toy': edge feature 'feat' has 1 non-finite value (first at edge 41, column 0); "
        "replace NaN and infinity before training"
    )


def test_stray_label_is_named_and_no_huge_model_is_built():
    labels = torch.arange(N) % 7
    labels[17] = 10**6
    assert _error(labels=labels) == (
        "dataset 'toy': label 1000000 of node 17 looks stray: the other labels span 0..6 (7 distinct values), "
        "and taking max+1 = 1000001 classes would leave 999993 of them without a node. "
        "Fix the label; class ids must run over 0..C-1"
    )
    with pytest.raises(DatasetError, match="label 1000000 of node 17 looks stray"):
        count_classes(labels, "toy")


def test_stray_label_on_several_nodes():
    labels = torch.arange(N) % 7
    labels[[3, 8]] = 500
    assert "label 500 of node 3 (and 1 more) looks stray" in _error(labels=labels)


def test_num_outputs_rechecks_labels_changed_after_construction():
    ds = _dataset()
    ds.labels[5] = 10**6
    with pytest.raises(DatasetError, match="label 1000000 of node 5 looks stray"):
        ds.num_outputs


@pytest.mark.parametrize(
    "values, classes",
    [
        ([0, 1, 2], 3),
        ([0, 2], 3),  # one unused id: fine
        ([5], 6),  # one label 5: 5 unused ids <= 16
        ([0, 1 + MAX_UNUSED_CLASSES], 2 + MAX_UNUSED_CLASSES),  # 16 unused, K = 2: max(2, 16) = 16 allowed
        (list(range(0, 100, 2)), 99),  # 49 unused among 50 distinct: allowed (49 <= 50)
    ],
)
def test_class_count_rule_accepts(values, classes):
    assert count_classes(torch.tensor(values)) == classes


@pytest.mark.parametrize(
    "values, stray",
    [
        ([0, 2 + MAX_UNUSED_CLASSES], 2 + MAX_UNUSED_CLASSES),  # 17 unused > max(2, 16)
        (list(range(0, 100, 2)) + [200], 200),  # 150 unused > 51
        ([40], 40),  # the only label
    ],
)
def test_class_count_rule_refuses(values, stray):
    with pytest.raises(DatasetError, match=f"label {stray} of node {len(values) - 1} looks stray"):
        count_classes(torch.tensor(values))


def test_only_label_message():
    with pytest.raises(DatasetError, match=r"the other labels span nothing \(it is the only label\)"):
        count_classes(torch.tensor([40, 40]))


def test_negative_label():
    labels = torch.arange(N) % 7
    labels[4] = -1
    assert _error(labels=labels) == ("dataset 'toy': label -1 of node 4 is negative; class ids must run over 0..C-1")


def test_float_multiclass_labels():
    assert "multiclass labels must be int64 class ids, got torch.float32" in _error(labels=torch.zeros(N))


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_empty_split(split):
    message = _error(**{f"{split}_idx": torch.zeros(0, dtype=torch.int64)})
    assert message == (
        f"dataset 'toy': the {split} split is empty ({split}_idx holds no node); every split needs at least one node"
    )


def test_multilabel_values():
    labels = torch.randint(0, 2, (N, 3)).float()
    labels[6, 2] = 0.5
    assert _error(labels=labels, task="multilabel") == (
        "dataset 'toy': multilabel labels must be 0 or 1; node 6, task 2 holds 0.5 (1 such value)"
    )
    labels[6, 2] = float("nan")
    assert "multilabel labels has 1 non-finite value (first at node 6, task 2)" in _error(
        labels=labels, task="multilabel"
    )


def test_feat_must_be_2d():
    assert "graph.ndata['feat'] must be a 2-D (N, F) tensor, got shape (30,)" in _error(feat=torch.rand(N))


def test_graph_file_nan_features_refused(tmp_path):
    src = torch.arange(N)
    g = dgl.graph((src, (src + 1) % N), num_nodes=N)
    g.ndata["feat"] = torch.rand(N, 3)
    g.ndata["feat"][17, 2] = float("nan")
    g.ndata["label"] = torch.arange(N) % 3
    g.ndata["train_mask"] = src < 10
    g.ndata["val_mask"] = (src >= 10) & (src < 20)
    g.ndata["test_mask"] = src >= 20
    path = str(tmp_path / "nan.bin")
    dgl.save_graphs(path, [g])
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    assert str(err.value) == (
        "dataset 'nan.bin': node feature 'feat' has 1 non-finite value (first at node 17, column 2); "
        "replace NaN and infinity before training"
    )


def test_graph_file_stray_label_refused(tmp_path):
    src = torch.arange(N)
    g = dgl.graph((src, (src + 1) % N), num_nodes=N)
    g.ndata["feat"] = torch.rand(N, 3)
    g.ndata["label"] = torch.arange(N) % 7
    g.ndata["label"][11] = 10**6
    g.ndata["train_mask"] = src < 10
    g.ndata["val_mask"] = (src >= 10) & (src < 20)
    g.ndata["test_mask"] = src >= 20
    path = str(tmp_path / "stray.bin")
    dgl.save_graphs(path, [g])
    with pytest.raises(
        DatasetError, match=r"^dataset 'stray.bin': label 1000000 of node 11 looks stray: the other labels span 0..6"
    ):
        load_dataset(path)
