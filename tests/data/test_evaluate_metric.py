"""evaluate_metric: accuracy, and ROC-AUC with OGB's conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from revgnn_dgl.data import DatasetError, evaluate_metric


def test_accuracy():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    assert evaluate_metric(logits, torch.tensor([0, 1, 2, 1]), "multiclass") == pytest.approx(0.75)
    # OGB-style (N, 1) labels are accepted.
    assert evaluate_metric(logits, torch.tensor([[0], [1], [2], [0]]), "multiclass") == 1.0


def test_rocauc_matches_sklearn_mean():
    gen = torch.Generator().manual_seed(0)
    labels = (torch.rand(200, 5, generator=gen) < 0.3).float()
    logits = torch.randn(200, 5, generator=gen) + labels
    expected = np.mean([roc_auc_score(labels[:, t], logits[:, t]) for t in range(5)])
    assert evaluate_metric(logits, labels, "multilabel") == pytest.approx(expected, abs=1e-12)


def test_rocauc_skips_single_class_tasks():
    labels = torch.tensor([[0, 1, 1], [0, 0, 1], [0, 1, 1], [0, 0, 1]], dtype=torch.float32)
    # Task 1 is ranked perfectly; tasks 0 (all negative) and 2 (all positive) are skipped.
    logits = torch.tensor([[9.0, 0.9, -5.0], [-9.0, 0.1, 5.0], [3.0, 0.8, 0.0], [1.0, 0.2, 1.0]])
    assert evaluate_metric(logits, labels, "multilabel") == 1.0


def test_rocauc_ties_and_unlabelled_entries():
    labels = torch.tensor([[1.0], [0.0], [1.0], [0.0], [float("nan")]])
    logits = torch.tensor([[1.0], [1.0], [2.0], [0.0], [-100.0]])
    # Pairs (pos, neg): (1,1) tie = 0.5, (1,0) = 1, (2,1) = 1, (2,0) = 1.
    assert evaluate_metric(logits, labels, "multilabel") == pytest.approx(3.5 / 4)


def test_rocauc_without_any_two_class_task_raises():
    with pytest.raises(DatasetError, match="no task has both"):
        evaluate_metric(torch.randn(4, 2), torch.zeros(4, 2), "multilabel")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rocauc_agrees_with_ogb_evaluator(seed):
    from ogb.nodeproppred import Evaluator

    gen = torch.Generator().manual_seed(seed)
    rate = torch.rand(112, generator=gen) * 0.4
    labels = (torch.rand(300, 112, generator=gen) < rate).float()
    labels[:, :4] = 0  # single-class tasks, skipped by both
    logits = torch.randn(300, 112, generator=gen)
    logits[:, 10] = logits[:, 10].round()  # ties
    ours = evaluate_metric(logits, labels, "multilabel")
    ogb = Evaluator("ogbn-proteins").eval({"y_true": labels, "y_pred": logits})["rocauc"]
    assert ours == pytest.approx(ogb, abs=1e-12)


def test_accepts_grad_and_probabilities():
    labels = torch.tensor([[1.0], [0.0], [1.0]])
    logits = torch.tensor([[2.0], [-1.0], [0.5]], requires_grad=True)
    assert evaluate_metric(logits, labels, "multilabel") == evaluate_metric(torch.sigmoid(logits), labels, "multilabel")


@pytest.mark.parametrize(
    "logits, labels, task, match",
    [
        (torch.randn(4, 3), torch.tensor([0, 1, 2]), "multiclass", "one id per row"),
        (torch.randn(4, 3), torch.zeros(4, 2), "multilabel", "same shape"),
        (torch.randn(4), torch.zeros(4), "multilabel", r"shape \(N, C\)"),
        (torch.randn(0, 3), torch.zeros(0, 3), "multilabel", "N > 0"),
        (torch.randn(2, 1), torch.tensor([[2.0], [0.0]]), "multilabel", "0, 1"),
        (torch.randn(2, 2), torch.tensor([0, 1]), "regression", "task must be one of"),
    ],
)
def test_bad_inputs(logits, labels, task, match):
    with pytest.raises(DatasetError, match=match):
        evaluate_metric(logits, labels, task)


def test_a_single_class_task_is_left_out_and_said() -> None:
    from revgnn_dgl.errors import DatasetWarning

    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    logits = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.5, 0.8], [0.7, 0.4, 0.1], [0.1, 0.3, 0.9]])
    with pytest.warns(DatasetWarning, match=r"1 of 3 tasks have a single class among these 4 nodes .* \(tasks 1\)"):
        score = evaluate_metric(logits, labels, "multilabel")
    assert score == pytest.approx((1.0 + 1.0) / 2)  # tasks 0 and 2 only


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_rocauc_equals_sklearn_per_task_to_1e12(seed: int) -> None:
    """All tasks at once (one sort per task) against scikit-learn's per-task roc_auc_score, with
    ties (rounded scores), unlabelled NaN entries, float16 scores and single-class tasks."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from revgnn_dgl.data.metrics import multilabel_rocauc

    gen = torch.Generator().manual_seed(seed)
    n, tasks = 300 + 97 * seed, 40
    labels = (torch.rand(n, tasks, generator=gen) < torch.rand(tasks, generator=gen) * 0.6).double()
    scores = torch.randn(n, tasks, generator=gen) + labels * torch.rand(tasks, generator=gen)
    if seed % 2:
        scores = (scores * 4).round() / 4  # many ties
    if seed % 3 == 0:
        labels[torch.rand(n, tasks, generator=gen) < 0.2] = float("nan")
    labels[:, 0] = 0.0  # a single-class task
    if seed == 5:
        scores = scores.half()
    areas, usable = multilabel_rocauc(scores, labels)
    for t in range(tasks):
        rows = ~torch.isnan(labels[:, t])
        column = labels[rows, t].numpy()
        if column.min() == column.max():
            assert not usable[t] and torch.isnan(areas[t])
            continue
        expected = roc_auc_score(column, scores[rows, t].double().numpy())
        assert usable[t] and abs(float(areas[t]) - expected) <= 1e-12, (t, float(areas[t]), expected)
    kept = [t for t in range(tasks) if usable[t]]
    mean = np.mean([float(areas[t]) for t in kept])
    assert abs(evaluate_metric(scores, labels, "multilabel", warn_single_class=False) - mean) <= 1e-12


def test_vectorised_rocauc_in_blocks_equals_one_block(monkeypatch) -> None:
    from revgnn_dgl.data import metrics

    gen = torch.Generator().manual_seed(0)
    scores, labels = torch.randn(200, 30, generator=gen), (torch.rand(200, 30, generator=gen) < 0.3).float()
    whole = metrics.multilabel_rocauc(scores, labels)
    monkeypatch.setattr(metrics, "ROCAUC_BLOCK", 450)  # two tasks a block
    blocks = metrics.multilabel_rocauc(scores, labels)
    assert torch.equal(whole[0], blocks[0]) and torch.equal(whole[1], blocks[1])
