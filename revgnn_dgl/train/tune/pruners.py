"""A pruner that judges a trial by its own progress: ``tune --pruner patient`` (the default).

A ``tune`` trial reports its best validation score so far at every evaluated epoch (a curve that
never goes down). The median pruner stops a trial whose curve is below the other trials' median
at the same epoch, however fast it is still rising: on HumLoc and Coauthor CS the regions that won
(high learning rates, late-peaking cosine schedules) were behind at the early epochs and were cut
there (``results/studies/``). :class:`ProgressPruner` first asks the trial itself: a trial whose
best score rose by more than ``min_delta`` over its last ``patience`` epochs is still learning and
is kept, however far behind it is. Only a trial that has stalled is compared with the others, and
pruned when it is also below their ``percentile`` at that epoch (Optuna's
:class:`~optuna.pruners.PercentilePruner`, with its start-up trials and warm-up steps).

Optuna's own :class:`~optuna.pruners.PatientPruner` cannot do this here: it prunes when the best
of the last ``patience`` values is *below* the best before them, which a best-so-far curve never
is, so it would never prune.

This module imports optuna: :mod:`revgnn_dgl.train.tune` imports it only to make a pruner.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import optuna

__all__ = ["MIN_DELTA", "PERCENTILE", "ProgressPruner", "default_patience", "stalled"]

#: How much a trial's best validation score must rise over its patience to count as learning.
MIN_DELTA = 1e-3
#: The share of the other trials a stalled trial must be below (at the same epoch) to be pruned.
PERCENTILE = 50.0


def default_patience(epochs: int) -> int:
    """Epochs without progress before a trial may be judged: a tenth of the epochs, at least 5.

    >>> default_patience(300), default_patience(20)
    (30, 5)
    """
    return max(5, epochs // 10)


def stalled(values: Dict[int, float], step: int, patience: int, min_delta: float = MIN_DELTA) -> Optional[bool]:
    """Whether the best-so-far curve ``values`` (epoch -> score) rose by at most ``min_delta`` from
    ``patience`` epochs before ``step`` to ``step``; None while the curve is shorter than that.

    >>> curve = {10: 0.55, 20: 0.60, 30: 0.65, 40: 0.65, 50: 0.65}
    >>> stalled(curve, 30, 20), stalled(curve, 50, 20), stalled(curve, 20, 20)
    (False, True, None)
    """
    earlier = [s for s in values if s <= step - patience]
    if not earlier or step not in values:
        return None
    then = max(values[s] for s in earlier)  # best so far then (the curve's value at its last such step)
    now = max(values[s] for s in values if s <= step)
    if math.isnan(now):
        return True
    return not now - (then if not math.isnan(then) else -math.inf) > min_delta


class ProgressPruner(optuna.pruners.BasePruner):
    """Prune a trial only when it has stopped improving **and** is behind the others.

    At an evaluated epoch ``step`` from ``n_warmup_steps`` on: if the trial's best validation score
    rose by more than ``min_delta`` over the last ``patience`` epochs, it is kept; otherwise it is
    pruned when Optuna's ``PercentilePruner(percentile, n_startup_trials, n_warmup_steps)`` finds
    it below the ``percentile`` of the other trials at that epoch.
    """

    def __init__(self, patience: int, n_startup_trials: int = 4, n_warmup_steps: int = 0,
                 percentile: float = PERCENTILE, min_delta: float = MIN_DELTA) -> None:  # fmt: skip
        if patience < 1:
            raise ValueError(f"patience must be at least 1 epoch, got {patience}")
        self.patience, self.min_delta, self.percentile = patience, min_delta, percentile
        self.n_startup_trials, self.n_warmup_steps = n_startup_trials, n_warmup_steps
        self._behind = optuna.pruners.PercentilePruner(percentile, n_startup_trials=n_startup_trials,
                                                       n_warmup_steps=n_warmup_steps)  # fmt: skip

    def prune(self, study: "optuna.study.Study", trial: "optuna.trial.FrozenTrial") -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        if not stalled(trial.intermediate_values, step, self.patience, self.min_delta):
            return False  # still learning, or too young to tell: kept, however far behind
        return bool(self._behind.prune(study, trial))
