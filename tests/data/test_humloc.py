"""HumLoc from the shared data folder: symmetrised, de-duplicated, split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from revgnn_dgl.data import DatasetError, evaluate_metric, load_dataset


@pytest.fixture(scope="module")
def humloc_dir(dataset_dir):
    return dataset_dir("humloc")


@pytest.fixture(scope="module")
def dataset(humloc_dir):
    return load_dataset("humloc", root=humloc_dir)


def test_counts_and_schema(dataset):
    g = dataset.graph
    assert g.num_nodes() == 3106 and g.num_edges() == 2 * 15978
    assert dataset.task == "multilabel" and dataset.metric_name == "rocauc"
    assert dataset.num_node_feats == 32 and dataset.num_edge_feats == 21 and dataset.num_outputs == 14
    assert dataset.labels.dtype == torch.float32 and dataset.labels.shape == (3106, 14)
    assert g.edata["feat"].dtype == torch.float32
    assert (g.edata["feat"] >= 0).all() and (g.edata["feat"] <= 0.99).all()
    assert [len(i) for i in (dataset.train_idx, dataset.val_idx, dataset.test_idx)] == [1675, 187, 1244]
    joined = torch.cat([dataset.train_idx, dataset.val_idx, dataset.test_idx])
    assert len(joined.unique()) == len(joined)
    assert (g.in_degrees() == 0).sum() == 540


def test_symmetric_without_duplicates_or_loops(dataset):
    g = dataset.graph
    n = g.num_nodes()
    src, dst = (t.numpy() for t in g.edges())
    keys = src * n + dst
    assert len(np.unique(keys)) == len(keys) and (src != dst).all()
    order = np.argsort(keys)
    rev = order[np.searchsorted(keys[order], dst * n + src)]
    assert (keys[rev] == dst * n + src).all()
    assert torch.equal(g.edata["feat"], g.edata["feat"][torch.from_numpy(rev)])


def test_repeated_pairs_take_the_max(dataset, humloc_dir):
    rows = pd.read_csv(humloc_dir / "edge_list.csv")
    u, v = rows.iloc[:, 0].to_numpy(np.int64), rows.iloc[:, 1].to_numpy(np.int64)
    feats = rows.iloc[:, 2:].to_numpy(np.float32)
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    key = lo * 3106 + hi
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    repeated = [k for k, c in zip(key[first], counts) if c > 1 and k // 3106 != k % 3106]
    differing = next(k for k in repeated if np.ptp(feats[key == k], axis=0).max() > 0)
    a, b = divmod(int(differing), 3106)
    eid = dataset.graph.edge_ids(a, b)
    np.testing.assert_array_equal(dataset.graph.edata["feat"][eid].numpy(), feats[key == differing].max(0))


def test_keep_self_loops(humloc_dir):
    ds = load_dataset("humloc", root=humloc_dir, keep_self_loops=True)
    src, dst = ds.graph.edges()
    loops = int((src == dst).sum())
    assert loops > 0 and ds.graph.num_edges() == 2 * 15978 + loops


def test_validation_metric_skips_the_single_class_task(dataset):
    val = dataset.labels[dataset.val_idx]
    single = ((val.sum(0) == 0) | (val.sum(0) == len(val))).nonzero().flatten().tolist()
    assert len(single) == 1
    # Of the 13 two-class tasks, the first 5 are ranked perfectly (ROC-AUC 1) and the other 8
    # exactly backwards (ROC-AUC 0): the mean over them is 5/13. Counting the single-class task
    # in any way (as 0, 0.5, 1 or NaN) would give 5/14, 5.5/14, 6/14 or NaN instead.
    two_class = [t for t in range(14) if t not in single]
    logits = torch.randn(len(val), 14, generator=torch.Generator().manual_seed(0))
    for rank, t in enumerate(two_class):
        logits[:, t] = val[:, t] if rank < 5 else -val[:, t]
    assert evaluate_metric(logits, val, "multilabel") == pytest.approx(5 / 13, abs=1e-12)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="humloc: files not found.*edge_list.csv"):
        load_dataset("humloc", root=tmp_path)
