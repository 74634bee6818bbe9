"""Which evaluated epoch is a run's best (``TrainConfig.select``).

``val``: the highest validation score; ``val_loss``: the lowest validation loss (GCNII's rule, the
loss of :func:`~revgnn_dgl.train.evaluation.validation_loss`). Ties keep the earlier epoch either
way. The best epoch is the one whose checkpoint is kept and whose scores the summary reports, and
``patience`` counts the evaluations since it.
"""

from __future__ import annotations

from typing import Any, Dict

from ..errors import TrainingError


def improves(select: str, record: Dict[str, Any], best: Dict[str, Any]) -> bool:
    """Whether an evaluated epoch's ``record`` beats the run's ``best`` so far under the rule ``select``."""
    if select == "val_loss":
        if record.get("val_loss") is None:
            raise TrainingError(
                f"epoch {record['epoch']}: no validation loss to select by (select val_loss needs validation nodes)."
            )
        return best.get("val_loss") is None or record["val_loss"] < best["val_loss"]
    return best["val"] is None or record["val"] > best["val"]


def best_of(record: Dict[str, Any]) -> Dict[str, Any]:
    """What a run keeps of its best epoch: epoch, validation and test scores, and the validation loss when known."""
    best = {"epoch": record["epoch"], "val": record["val"], "test": record["test"]}
    if record.get("val_loss") is not None:
        best["val_loss"] = record["val_loss"]
    return best
