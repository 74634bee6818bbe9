"""The training loss of one part: the task's loss, the step's regularisation, and self-distillation.

A part's loss (:func:`part_loss`) drops edges and input features as the recipe says, predicts with
label reuse (:mod:`revgnn_dgl.train.inputs`), and takes the task's loss (:func:`task_loss`), or with
a teacher the self-distillation loss of the released RevGAT-KD (:func:`teacher_logits` are the
teacher run's best model's logits). A non-finite loss or gradient norm stops the training
(:class:`~revgnn_dgl.errors.TrainingDiverged`) before the optimizer steps.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, TrainingDiverged
from ..models.revgat_loss import log_ce_loss, self_kd_loss
from .config import TrainConfig
from .evaluation import Evaluator
from .inputs import predict
from .recipe import drop_edges, drop_input
from .rundir import BEST_FILE, CONFIG_FILE


def task_loss(logits: Tensor, labels: Tensor, task: str, label_smoothing: float = 0.0, kind: str = "ce") -> Tensor:
    """Binary cross-entropy for a multi-label task; else cross-entropy, or RevGAT's log-CE (``kind="log_ce"``)."""
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    if kind == "log_ce":
        return log_ce_loss(logits, labels)
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def part_loss(
    model: nn.Module, data: Any, ids: Optional[np.ndarray], config: TrainConfig, teacher_logits: Optional[Tensor]
) -> Tensor:
    """The training loss of one part (``None``: the full graph), with the step's regularisation."""
    sub, labels, mask, nodes = data.part(ids)
    teacher = teacher_logits if teacher_logits is None or nodes is None else teacher_logits[nodes]
    sub = drop_edges(sub, config.edge_dropout)
    if config.input_dropout:
        sub = sub.local_var()
        sub.ndata["feat"] = drop_input(sub.ndata["feat"], config.input_dropout)
    logits, supervised = predict(model, sub, labels, mask, config, data.dataset.num_outputs, training=True)
    if teacher is not None:
        loss = self_kd_loss(logits, labels, supervised.nonzero().squeeze(1), teacher, config.kd_alpha, config.kd_temp)
    else:
        loss = task_loss(logits[supervised], labels[supervised], data.dataset.task, config.label_smoothing, config.loss)
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"the training loss is {loss.item()}")
    return loss


def clip_and_check(model: nn.Module, grad_clip: float) -> None:
    """Clip the gradient norm (0: no clipping), and refuse a non-finite one before the update."""
    norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
    if not torch.isfinite(norm):
        raise TrainingDiverged(f"the gradient norm is {norm.item()}")


def teacher_logits(config: TrainConfig, data: Any, device: torch.device) -> Optional[Tensor]:
    """The teacher run's best model's logits on every node, with the teacher's own evaluation
    protocol (its label reuse included); None without a teacher."""
    if not config.teacher:
        return None
    from ..zoo.checkpoint import build_from_checkpoint

    teacher_config = teacher_checkpoint(config)
    teacher = build_from_checkpoint(Path(config.teacher) / BEST_FILE).to(device)
    evaluator = Evaluator(
        data, teacher_config.eval_parts, teacher_config.eval_views, teacher_config.seed, config=teacher_config
    )
    return evaluator.logits(teacher)


def teacher_checkpoint(config: TrainConfig) -> TrainConfig:
    """The teacher run's config, once its best checkpoint is known to rebuild (nothing allocated)."""
    from ..zoo.checkpoint import check_checkpoint

    folder = Path(str(config.teacher))
    if not (folder / BEST_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        raise ConfigError(f"--teacher {folder}: not a finished run directory (no {BEST_FILE} and {CONFIG_FILE}).")
    teacher_config = TrainConfig.from_file(folder / CONFIG_FILE)
    if teacher_config.dataset != config.dataset or teacher_config.dataset_options != config.dataset_options:
        raise ConfigError(f"--teacher {folder} was trained on {teacher_config.dataset!r}, not {config.dataset!r}.")
    check_checkpoint(folder / BEST_FILE)
    return teacher_config
