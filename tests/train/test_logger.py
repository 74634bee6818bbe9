"""--logger csv and --logger tensorboard: one row / one scalar per metric per epoch, read back with
the csv module and TensorBoard's own event reader; a resumed run continues them without duplicates."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner
from suite_env import TINY_TRAIN_ARGS

from revgnn_dgl.cli import cli
from revgnn_dgl.train import read_metrics

TINY = TINY_TRAIN_ARGS


def _train(*args: str) -> None:
    result = CliRunner().invoke(cli, ["train", *args])
    assert result.exit_code == 0, result.output


def _scalars(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return events, {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_csv_and_tensorboard_hold_every_epoch_and_continue_on_resume(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra; the [test] extra installs it")
    out = tmp_path / "run"
    _train(*TINY, "--epochs", "2", "--eval-every", "2", "--logger", "csv", "--logger", "tensorboard", "--out", str(out))
    _train("--resume", str(out), "--epochs", "3")
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [1, 2, 3]

    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "loss", "lr", "val_rocauc", "test_rocauc", "time_s"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for row, record in zip(rows, records):
        assert float(row["loss"]) == pytest.approx(record["loss"], rel=1e-12)
        assert (row["val_rocauc"] == "") == (record["val"] is None)  # epoch 1 was not evaluated

    events, scalars = _scalars(out)
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3]  # no duplicate of a redone epoch
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([r["loss"] for r in records], rel=1e-6)
    assert [step for step, _ in scalars["val/rocauc"]] == [2, 3]
    assert {"train/lr", "test/rocauc", "time/epoch_s"} <= set(scalars)
    assert "config" in "".join(events.Tags().get("tensors", [])) or events.Tags().get("tensors")


def test_unknown_logger_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["train", *TINY, "--logger", "wandb"])
    assert result.exit_code == 2 and "'wandb' is not one of 'csv', 'tensorboard'" in result.output
