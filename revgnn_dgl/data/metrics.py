"""Evaluation metrics: accuracy, and OGB's mean ROC-AUC over binary tasks (scikit-learn's per task)."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ..errors import DatasetWarning
from .base import TASKS, DatasetError


def evaluate_metric(logits: torch.Tensor, labels: torch.Tensor, task: str) -> float:
    """Score predictions with the dataset's metric.

    Parameters
    ----------
    logits : torch.Tensor
        ``(N, C)`` class scores (multiclass) or ``(N, T)`` per-task scores
        (multilabel); any monotone transform (logits, probabilities) gives
        the same result.
    labels : torch.Tensor
        ``(N,)`` int class ids (multiclass) or ``(N, T)`` 0/1 targets
        (multilabel; NaN entries are treated as unlabelled, as OGB does).
    task : str
        ``'multiclass'`` (accuracy) or ``'multilabel'`` (ROC-AUC).

    Returns
    -------
    float
        Accuracy, or the mean ROC-AUC over the tasks that have both a
        positive and a negative node, the convention of OGB's
        ``Evaluator('ogbn-proteins')``.

    Raises
    ------
    DatasetError
        On an unknown task, mismatched shapes, no nodes, or (multilabel) no
        task with both classes present.
    """
    if task not in TASKS:
        raise DatasetError(f"task must be one of {TASKS}, got {task!r}")
    logits = logits.detach().cpu()
    labels = labels.detach().cpu()
    if logits.dim() != 2 or logits.shape[0] == 0:
        raise DatasetError(f"logits must have shape (N, C) with N > 0, got {tuple(logits.shape)}")
    if task == "multiclass":
        labels = labels.reshape(-1)
        if labels.shape[0] != logits.shape[0]:
            raise DatasetError(
                f"multiclass labels must have one id per row of logits: "
                f"{labels.shape[0]} labels for {logits.shape[0]} rows"
            )
        return float((logits.argmax(dim=1) == labels).float().mean())
    if labels.shape != logits.shape:
        raise DatasetError(
            f"multilabel labels and logits must have the same shape (N, T), got "
            f"{tuple(labels.shape)} and {tuple(logits.shape)}"
        )
    # One task at a time in float64: no (N, T) float64 copies of the scores and labels.
    labelled = ~torch.isnan(labels) if labels.is_floating_point() else torch.ones(labels.shape, dtype=torch.bool)
    if not ((labels == 0) | (labels == 1) | ~labelled).all():
        raise DatasetError("multilabel labels must be 0, 1 (or NaN for unlabelled)")
    if not torch.isfinite(logits).all():  # a diverged model: its score is NaN, which the trainer refuses by name
        return float("nan")
    scores, skipped = [], []
    for t in range(labels.shape[1]):
        rows = labelled[:, t]
        column = labels[rows, t].double().numpy()
        # ROC-AUC is undefined with a single class: skip the task, as OGB's evaluator does.
        if column.size == 0 or column.min() == column.max():
            skipped.append(t)
            continue
        scores.append(roc_auc_score(column, logits[rows, t].double().numpy()))
    if not scores:
        raise DatasetError(
            "ROC-AUC is undefined: no task has both a positive and a negative node among "
            "the nodes given; evaluate on a larger or different set of nodes"
        )
    if skipped:
        shown = ", ".join(map(str, skipped[:10])) + (" ..." if len(skipped) > 10 else "")
        warnings.warn(
            f"ROC-AUC: {len(skipped)} of {labels.shape[1]} tasks have a single class among these "
            f"{labels.shape[0]} nodes and are left out of the mean, as OGB's evaluator does (tasks {shown})",
            DatasetWarning,
            stacklevel=2,
        )
    return float(np.mean(scores))
