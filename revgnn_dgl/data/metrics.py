"""Evaluation metrics: accuracy, and OGB's mean ROC-AUC over binary tasks (equal to scikit-learn's per task)."""

from __future__ import annotations

import warnings
from typing import List, Tuple

import torch

from ..errors import DatasetWarning
from .base import TASKS, DatasetError


def evaluate_metric(logits: torch.Tensor, labels: torch.Tensor, task: str, *, warn_single_class: bool = True) -> float:
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
    warn_single_class : bool
        Warn when tasks are left out for having a single class (a trainer that warned once
        for the run passes False).

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
    logits = logits.detach()
    labels = labels.detach().to(logits.device)
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
    labelled = ~torch.isnan(labels) if labels.is_floating_point() else torch.ones_like(labels, dtype=torch.bool)
    if not ((labels == 0) | (labels == 1) | ~labelled).all():
        raise DatasetError("multilabel labels must be 0, 1 (or NaN for unlabelled)")
    if not torch.isfinite(logits).all():  # a diverged model: its score is NaN, which the trainer refuses by name
        return float("nan")
    aucs, usable = multilabel_rocauc(logits, labels)
    skipped = torch.nonzero(~usable).flatten().tolist()
    if not usable.any():
        raise DatasetError(
            "ROC-AUC is undefined: no task has both a positive and a negative node among "
            "the nodes given; evaluate on a larger or different set of nodes"
        )
    if skipped and warn_single_class:
        warnings.warn(single_class_message(skipped, labels.shape[1], f"these {labels.shape[0]} nodes"),
                      DatasetWarning, stacklevel=2)  # fmt: skip
    return float(aucs[usable].mean())


def single_class_message(skipped: List[int], tasks: int, where: str) -> str:
    """The warning about tasks left out of the mean ROC-AUC, with their ids."""
    shown = ", ".join(map(str, skipped[:20])) + (" ..." if len(skipped) > 20 else "")
    return (f"ROC-AUC: {len(skipped)} of {tasks} tasks have a single class among {where} and are left out "
            f"of the mean, as OGB's evaluator does (tasks {shown})")  # fmt: skip


def single_class_tasks(labels: torch.Tensor) -> List[int]:
    """The tasks of ``(N, T)`` 0/1 labels (NaN: unlabelled) whose labelled nodes are all of one class."""
    labelled = ~torch.isnan(labels) if labels.is_floating_point() else torch.ones_like(labels, dtype=torch.bool)
    positives = ((labels == 1) & labelled).sum(0)
    negatives = ((labels == 0) & labelled).sum(0)
    return torch.nonzero((positives == 0) | (negatives == 0)).flatten().tolist()


#: Elements sorted at once by :func:`multilabel_rocauc` (its memory is a few int64 copies of a block).
ROCAUC_BLOCK = 1 << 22


def multilabel_rocauc(scores: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every task's ROC-AUC at once: one sort per task, on the scores' device.

    The area is the Mann-Whitney statistic with tied scores sharing their average rank, which is
    what scikit-learn's trapezoid over the ROC curve computes; here it is counted in integers and
    divided once, so it equals ``roc_auc_score`` per task to rounding (tested to 1e-12).

    Parameters
    ----------
    scores : torch.Tensor
        ``(N, T)`` finite scores (any monotone transform gives the same areas).
    labels : torch.Tensor
        ``(N, T)`` 0/1 targets; NaN marks an unlabelled entry, left out of its task.

    Returns
    -------
    (Tensor, Tensor)
        ``(T,)`` float64 areas (NaN where undefined) and ``(T,)`` bool: the task has both classes.

    Examples
    --------
    >>> import torch
    >>> auc, ok = multilabel_rocauc(torch.tensor([[0.1, 0.2], [0.4, 0.2], [0.35, 0.2], [0.8, 0.9]]),
    ...                             torch.tensor([[0., 0.], [0., 1.], [1., 0.], [1., 1.]]))
    >>> [round(a, 4) for a in auc.tolist()], ok.tolist()
    ([0.75, 0.75], [True, True])
    """
    labels = labels.to(scores.device)
    n, tasks = scores.shape
    step = max(1, ROCAUC_BLOCK // max(n, 1))
    areas, usable = [], []
    for first in range(0, tasks, step):
        block = scores[:, first : first + step]
        target = labels[:, first : first + step]
        if block.dtype in (torch.float16, torch.bfloat16):
            block = block.float()  # exact: every half value is a float32
        labelled = ~torch.isnan(target) if target.is_floating_point() else torch.ones_like(target, dtype=torch.bool)
        # Unlabelled entries sort last (the scores are finite), so the labelled ranks are untouched.
        block = torch.where(labelled, block, torch.full_like(block, float("inf")))
        ordered, order = torch.sort(block, dim=0)
        positive = ((target == 1) & labelled).gather(0, order)
        position = torch.arange(1, n + 1, device=block.device, dtype=torch.int64).unsqueeze(1).expand_as(ordered)
        new_value = torch.ones_like(ordered, dtype=torch.bool)
        new_value[1:] = ordered[1:] != ordered[:-1]
        last_of_value = torch.ones_like(new_value)
        last_of_value[:-1] = new_value[1:]
        zero = torch.zeros_like(position)
        first_rank = torch.cummax(torch.where(new_value, position, zero), dim=0).values
        last_rank = torch.flip(
            torch.cummin(torch.flip(torch.where(last_of_value, position, zero + n + 1), [0]), dim=0).values, [0]
        )
        # Twice each positive's average rank, summed: exact in int64.
        twice_rank_sum = ((first_rank + last_rank) * positive).sum(0)
        n_pos = positive.sum(0)
        n_neg = ((target == 0) & labelled).sum(0)
        ok = (n_pos > 0) & (n_neg > 0)
        numerator = (twice_rank_sum - n_pos * (n_pos + 1)).double()
        denominator = (2 * n_pos * n_neg).double()
        areas.append(torch.where(ok, numerator / denominator.clamp(min=1), torch.full_like(numerator, float("nan"))))
        usable.append(ok)
    return torch.cat(areas).cpu(), torch.cat(usable).cpu()
