"""A run says once which tasks its splits leave out of the mean ROC-AUC, not at every evaluation."""

from __future__ import annotations

import warnings

import torch

from revgnn_dgl.data import load_dataset
from revgnn_dgl.errors import DatasetWarning
from revgnn_dgl.train.data import DeviceData
from revgnn_dgl.train.evaluation import Evaluator


def test_single_class_tasks_are_named_once_per_run() -> None:
    dataset = load_dataset("synthetic-proteins", num_nodes=100)  # 20 val and 20 test nodes: some tasks all negative
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluator = Evaluator(DeviceData.on(dataset, torch.device("cpu")), parts=1, views=1, seed=0)
        logits = torch.randn(dataset.num_nodes, dataset.labels.shape[1])
        for _ in range(5):
            scores = evaluator.scores(logits)
    said = [w for w in caught if issubclass(w.category, DatasetWarning)]
    assert len(said) == 1, [str(w.message) for w in said]
    assert "the val nodes" in str(said[0].message) or "the test nodes" in str(said[0].message)
    assert "(tasks " in str(said[0].message)
    assert set(scores) == {"val", "test"} and all(0.0 <= v <= 1.0 for v in scores.values())
