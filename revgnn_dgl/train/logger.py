"""Experiment logs a user's own tools read, beside the run's ``metrics.jsonl``.

``--logger csv`` writes ``metrics.csv`` (one row per epoch, the columns of ``metrics.jsonl``);
``--logger tensorboard`` writes TensorBoard event files under ``tensorboard/`` in the run
directory (one scalar per metric per epoch: ``train/loss``, ``train/lr``, ``val/METRIC``,
``test/METRIC``, ``time/epoch_s``; the resolved configuration as text). TensorBoard comes with
the ``tensorboard`` extra (``pip install 'revgnn_dgl[tensorboard]'``). On ``--resume`` both
continue where the run's state is: the rows and events of the epochs about to be redone are
dropped (TensorBoard's ``purge_step``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml

from ..errors import ConfigError
from ..files import write_whole as write_atomic
from .config import LOGGERS
from .metrics_log import read_metrics

__all__ = ["LOGGERS", "CsvLogger", "RunLoggers", "TensorBoardLogger"]
CSV_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
_COLUMNS = ("epoch", "loss", "lr", "val", "test", "time")


class CsvLogger:
    """``metrics.csv``: the epochs' records as CSV rows (``val``/``test`` empty when not evaluated)."""

    def __init__(self, run_dir: Path, start_epoch: int, metric: str) -> None:
        self.path = run_dir / CSV_FILE
        kept = [r for r in read_metrics(run_dir) if r["epoch"] <= start_epoch] if start_epoch else []
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*_COLUMNS[:3], f"val_{metric}", f"test_{metric}", "time_s"])
        writer.writerows(_row(r) for r in kept)
        write_atomic(self.path, buffer.getvalue())  # whole, then appended to line by line
        self._file = open(self.path, "a", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file, lineterminator="\n")

    def log(self, record: Mapping[str, Any]) -> None:
        self._writer.writerow(_row(record))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _row(record: Mapping[str, Any]) -> List[Any]:
    return ["" if record.get(key) is None else record[key] for key in _COLUMNS]


class TensorBoardLogger:
    """TensorBoard event files: one scalar per metric per epoch, and the configuration as text."""

    def __init__(self, run_dir: Path, start_epoch: int, metric: str, config: Mapping[str, Any]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--logger tensorboard needs the tensorboard package: pip install 'revgnn_dgl[tensorboard]' "
                "(or pip install tensorboard)."
            ) from None
        self.metric = metric
        # purge_step drops the events of the epochs a resumed run redoes.
        self._writer = SummaryWriter(
            str(run_dir / TENSORBOARD_DIR), purge_step=start_epoch + 1 if start_epoch else None
        )
        if not start_epoch:
            text = yaml.safe_dump(dict(config), sort_keys=False)
            self._writer.add_text("config", "```\n" + text + "```", 0)

    def log(self, record: Mapping[str, Any]) -> None:
        step = int(record["epoch"])
        self._writer.add_scalar("train/loss", record["loss"], step)
        self._writer.add_scalar("train/lr", record["lr"], step)
        self._writer.add_scalar("time/epoch_s", record["time"], step)
        for split in ("val", "test"):
            if record.get(split) is not None:
                self._writer.add_scalar(f"{split}/{self.metric}", record[split], step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class RunLoggers:
    """The loggers ``names`` asks for, as one: ``log(record)`` each epoch, ``close()`` at the end."""

    def __init__(self, names: Sequence[str], run_dir: Path, start_epoch: int, metric: str,
                 config: Mapping[str, Any]) -> None:  # fmt: skip
        self._loggers: List[Any] = []
        for name in names:
            if name == "csv":
                self._loggers.append(CsvLogger(run_dir, start_epoch, metric))
            elif name == "tensorboard":
                self._loggers.append(TensorBoardLogger(run_dir, start_epoch, metric, config))
            else:
                raise ConfigError(f"unknown logger {name!r}; choose from {', '.join(LOGGERS)}.")

    def log(self, record: Dict[str, Any]) -> None:
        for logger in self._loggers:
            logger.log(record)

    def close(self) -> None:
        for logger in self._loggers:
            logger.close()

    def __enter__(self) -> "RunLoggers":
        return self

    def __exit__(self, *exc: Optional[BaseException]) -> None:
        self.close()
