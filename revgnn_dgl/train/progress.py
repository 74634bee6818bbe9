"""What a run shows per epoch: a tqdm bar on a terminal, else one line per epoch; the pace of the
first epoch when the ogbn-proteins defaults meet another dataset; the early stop. Rank 0 only."""

from __future__ import annotations

import sys
from typing import Any, Dict, Optional

from ..log import get_logger
from .callbacks import Callback

log = get_logger(__name__)


class ProgressReport(Callback):
    """The progress of each seeded run; ``progress``: a bar (True), lines (False), or a bar on a terminal (None)."""

    def __init__(self, progress: Optional[bool] = None) -> None:
        self.progress = progress
        self.bar: Any = None
        self.start = 0

    def on_train_start(self, run: Any) -> None:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        config, self.start = run.config, run.start_epoch
        show_bar = sys.stdout.isatty() if self.progress is None else self.progress
        # No tqdm at all unless it draws: its constructor creates an inter-process lock (a named
        # semaphore) that a rank stopped by its launcher would leave behind.
        if show_bar:
            self.bar = tqdm(
                total=config.epochs, initial=self.start, desc=f"seed {config.seed}", unit="epoch", dynamic_ncols=True
            )

    def on_epoch_end(self, run: Any, record: Dict[str, Any]) -> None:
        config, epoch, loss = run.config, record["epoch"], record["loss"]
        if self.bar is not None:
            best = run.best["val"]
            self.bar.set_postfix(loss=f"{loss:.4f}", val="-" if best is None else f"{best:.4f}")
            self.bar.update()
        else:
            scores = "" if record["val"] is None else f" val {record['val']:.4f} test {record['test']:.4f}"
            log.info(
                f"epoch {epoch}/{config.epochs} loss {loss:.4f}{scores} lr {record['lr']:.3g} {record['time']:.2f}s"
            )
        if run.big_defaults and epoch == self.start + 1:
            hours = record["time"] * (config.epochs - epoch) / 3600
            log.info(
                f"note: the first epoch took {record['time']:.1f} s; the remaining {config.epochs - epoch} "
                f"would take about {hours:.1f} h at that pace."
            )
        if run.stopped:
            log.info(
                f"early stopping at epoch {epoch}: no better validation {run.metric} for {config.patience} evaluations"
            )

    def on_train_end(self, run: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
