"""A run that has not left chance level: said once, with what to try (issue 39).

The generic warning of the training loop ("has stayed at or below chance level for N
evaluations: the run is not learning") names no cause. On graphs the project was not tuned for,
the documented recipe can sit at chance from the first epoch (dense low-dimensional features
under a weight decay and dropout sized for bags of words). :func:`chance_diagnosis` is checked at
one evaluation of each run, the first at or after a tenth of its epochs or its learning-rate
warm-up, whichever is longer (:func:`diagnosis_epoch`; runs of 20 epochs or more):
if the best validation score so far is within :data:`MARGIN` of chance, it returns one line that
says so with the numbers, and what to try for this run's settings and features.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional

from .config import TrainConfig

__all__ = ["MARGIN", "chance_diagnosis", "diagnosis_epoch", "node_features"]

#: A best validation score at most this far above chance is "at chance".
MARGIN = 0.02


#: Runs shorter than this are checks, not trainings: no diagnosis.
MIN_EPOCHS = 20


def diagnosis_epoch(config: TrainConfig) -> Optional[int]:
    """The first evaluated epoch at or after a tenth of the epochs, or the learning-rate warm-up if
    longer (evaluations come every ``eval_every`` epochs and after the last), so that a resumed run
    checks the same epoch; None for a run of fewer than :data:`MIN_EPOCHS` epochs.

    >>> diagnosis_epoch(TrainConfig(epochs=300, eval_every=2)), diagnosis_epoch(TrainConfig(epochs=25, eval_every=4))
    (30, 4)
    >>> diagnosis_epoch(TrainConfig(epochs=100, warmup_epochs=15)), diagnosis_epoch(TrainConfig(epochs=5))
    (15, None)
    """
    if config.epochs < MIN_EPOCHS:
        return None
    first = max(math.ceil(config.epochs / 10), config.warmup_epochs, 1)
    return min(math.ceil(first / config.eval_every) * config.eval_every, config.epochs)


def chance_diagnosis(config: TrainConfig, metric: str, chance: Optional[float], best_val: Optional[float],
                     epoch: int, feat: Any = None) -> Optional[str]:  # fmt: skip
    """The line to print at ``epoch`` if the run's best validation score is still within
    :data:`MARGIN` of ``chance``; None otherwise (or at any other epoch than :func:`diagnosis_epoch`).
    ``feat``, the node features, lets it name their scale."""
    if chance is None or best_val is None or epoch != diagnosis_epoch(config):
        return None
    if best_val > chance + MARGIN:
        return None
    tries: List[str] = []
    scale = _feature_scale(feat)
    if scale is not None:
        mean, std = scale
        if abs(mean) > 0.5 or not 0.2 < std < 5:
            tries.append(f"standardised input features (they have mean {mean:.3g} and standard deviation {std:.3g} "
                         "over all entries; zero mean and unit variance per column before saving the graph)")  # fmt: skip
        else:
            tries.append("standardised input features (zero mean and unit variance per column)")
    decay = [f"--weight-decay {config.weight_decay:g}"] if config.weight_decay else []
    if config.layer_weight_decay:
        decay.append(f"--layer-weight-decay {config.layer_weight_decay:g}")
    if decay:
        tries.append(f"a lower weight decay (now {', '.join(decay)})")
    dropouts = [f"--{k.replace('_', '-')} {getattr(config, k):g}" for k in ("dropout", "input_dropout")
                if (getattr(config, k) or 0) >= 0.5]  # fmt: skip
    if dropouts:
        tries.append(f"less dropout (now {', '.join(dropouts)})")
    tries.append(f"a lower --lr (now {config.lr:g}) or fewer layers")
    tries.append('`revgnn-dgl tune` (a default search space for the graph; README "Tuning on your own graph")')
    return (f"diagnosis: after {epoch} of {config.epochs} epochs the best validation {metric} is {best_val:.4f}, "
            f"within {MARGIN} of chance ({chance:.4f}): the model has learned nothing the metric sees. Try "
            + "; ".join(tries) + ".")  # fmt: skip


def _feature_scale(feat: Any) -> Optional[tuple]:
    """Mean and standard deviation of the feature entries (the first 20,000 rows), or None."""
    if feat is None or not hasattr(feat, "float") or feat.numel() == 0:
        return None
    rows = feat[:20000].float()
    return float(rows.mean()), float(rows.std()) if rows.numel() > 1 else 0.0


def node_features(data: Any) -> Any:
    """The node features of a run's data, None where the graph is not held here (a partitioned one)."""
    graph = getattr(getattr(data, "dataset", None), "graph", None)
    ndata = getattr(graph, "ndata", None)
    return ndata.get("feat") if ndata is not None else None
