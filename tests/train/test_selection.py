"""Epoch selection by validation loss (``select: val_loss``, GCNII's rule): the best epoch, patience,
the summary, resume, the command line and the data-parallel path, on a tiny generated graph."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import dgl
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from revgnn_dgl.cli import cli
from revgnn_dgl.data import load_dataset
from revgnn_dgl.errors import TrainingError
from revgnn_dgl.train import (
    BEST_FILE,
    CONFIG_FILE,
    SUMMARY_FILE,
    ConfigError,
    TrainConfig,
    evaluate,
    read_metrics,
    train,
)
from revgnn_dgl.train.evaluation import validation_loss
from revgnn_dgl.train.selection import improves
from revgnn_dgl.zoo.checkpoint import build_from_checkpoint, load_checkpoint


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> str:
    """150 nodes, 3 classes that the features say only weakly: the validation loss turns up within tens of epochs."""
    dgl.seed(0)
    torch.manual_seed(0)
    g = dgl.rand_graph(150, 900)
    labels = torch.arange(150) % 3
    g.ndata["feat"] = torch.randn(150, 12) + 0.5 * F.one_hot(labels, 12).float()
    g.ndata["label"] = labels
    split = torch.arange(150) % 5
    g.ndata["train_mask"], g.ndata["val_mask"], g.ndata["test_mask"] = split < 2, split == 2, split >= 3
    path = tmp_path_factory.mktemp("graph") / "graph.bin"
    dgl.save_graphs(str(path), [g])
    return str(path)


def small(graph: str, out: Path, **changes: Any) -> TrainConfig:
    settings: Dict[str, Any] = dict(
        model="wide", dataset=graph, num_layers=2, hidden=16, train_parts=1, eval_parts=1, device="cpu", threads=1,
        lr=0.05, select="val_loss", out=str(out),
    )  # fmt: skip
    return TrainConfig(**{**settings, **changes})


def expected_stop(records: List[Dict[str, Any]], patience: int) -> Optional[int]:
    """The epoch at which ``patience`` evaluations without a lower validation loss stop the run."""
    best, since = math.inf, 0
    for record in records:
        if record["val_loss"] < best:
            best, since = record["val_loss"], 0
        else:
            since += 1
            if since >= patience:
                return record["epoch"]
    return None


def test_val_loss_selects_the_epoch_of_least_validation_loss(graph: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = train(small(graph, out, epochs=25, label_smoothing=0.2), progress=False)
    records = read_metrics(out)
    assert len(records) == 25 and all(isinstance(r["val_loss"], float) for r in records)
    best = min(records, key=lambda r: r["val_loss"])  # min keeps the first of equal losses
    assert summary["select"] == "val_loss"
    (run,) = summary["runs"]
    assert (run["epoch"], run["val"], run["test"], run["val_loss"]) == (
        best["epoch"], best["val"], best["test"], best["val_loss"],
    )  # fmt: skip
    assert summary["val"]["mean"] == best["val"] and summary["test"]["mean"] == best["test"]
    assert json.loads((out / SUMMARY_FILE).read_text())["select"] == "val_loss"
    assert load_checkpoint(out / BEST_FILE).metadata["epoch"] == best["epoch"]
    # The recorded loss is the best model's plain cross-entropy on the validation nodes: no label smoothing.
    dataset = load_dataset(graph)
    logits = evaluate(build_from_checkpoint(out / BEST_FILE), dataset, parts=1, return_logits=True)["logits"]
    plain = float(F.cross_entropy(logits[dataset.val_idx], dataset.labels[dataset.val_idx]))
    assert validation_loss(logits, dataset) == pytest.approx(plain, abs=1e-6)
    assert best["val_loss"] == pytest.approx(plain, abs=1e-5)


def test_the_default_rule_is_the_validation_score_and_is_recorded(graph: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = train(small(graph, out, epochs=6, select="val"), progress=False)
    records = read_metrics(out)
    best = max(records, key=lambda r: r["val"])  # max keeps the first of equal scores
    assert TrainConfig().select == "val" and summary["select"] == "val"
    assert summary["runs"][0]["epoch"] == best["epoch"] and all("val_loss" in r for r in records)


def test_ties_keep_the_earlier_epoch() -> None:
    best = {"epoch": 3, "val": 0.5, "test": 0.5, "val_loss": 1.0}
    assert not improves("val_loss", {"epoch": 4, "val": 0.9, "test": 0.9, "val_loss": 1.0}, best)
    assert improves("val_loss", {"epoch": 4, "val": 0.1, "test": 0.1, "val_loss": 0.99}, best)
    assert not improves("val", {"epoch": 4, "val": 0.5, "test": 0.9, "val_loss": 0.1}, best)


def test_patience_counts_evaluations_without_a_lower_val_loss(graph: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = train(small(graph, out, epochs=200, patience=5), progress=False)
    records = read_metrics(out)
    stop = expected_stop(records, 5)
    assert stop is not None and stop < 200
    assert [r["epoch"] for r in records][-1] == stop == summary["runs"][0]["epochs"]
    # The validation score would have stopped it elsewhere: the loss is what counts.
    assert summary["runs"][0]["epoch"] == min(records, key=lambda r: r["val_loss"])["epoch"] == stop - 5


def test_resume_with_val_loss_selection_matches_an_uninterrupted_run(graph: str, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    whole = train(small(graph, straight, epochs=200, patience=5), progress=False)
    cut = whole["runs"][0]["epochs"] - 2  # after the best epoch, 3 evaluations into the patience
    resumed = tmp_path / "resumed"
    train(small(graph, resumed, epochs=cut, patience=5), progress=False)
    again = train(TrainConfig.from_file(resumed / CONFIG_FILE).updated({"epochs": 200}), resume=True, progress=False)
    assert again["runs"] == whole["runs"] and again["select"] == "val_loss"
    a, b = read_metrics(resumed), read_metrics(straight)
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for x, y in zip(a, b):
        for key in ("loss", "val", "test", "val_loss"):
            assert x[key] == pytest.approx(y[key], abs=1e-6), (x["epoch"], key)


def test_a_bad_selection_is_refused_in_one_line(graph: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "--dataset", graph, "--select", "best", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--select" in errors[0] and "val_loss" in errors[0], result.output
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="select must be val or val_loss"):
        TrainConfig.from_mapping({"select": "loss"})
    with pytest.raises(ConfigError, match="select val_loss is not available with partitions"):
        TrainConfig.from_mapping({"select": "val_loss", "partitions": "parts/graph.json"})


@pytest.mark.slow
def test_val_loss_selection_through_two_data_parallel_processes(graph: str, tmp_path: Path) -> None:
    """``--nproc 2``: rank 0 evaluates, selects by validation loss and stops both ranks."""
    from ddp_jobs import subprocess_env

    out = tmp_path / "run"
    args = ["--model", "wide", "--dataset", graph, "--num-layers", "2", "--hidden", "16", "--train-parts", "2",
            "--eval-parts", "1", "--lr", "0.05", "--epochs", "200", "--patience", "5", "--select", "val_loss",
            "--nproc", "2", "--threads", "1", "--device", "cpu", "--dist-timeout", "60", "--out", str(out)]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "revgnn_dgl", "train", *args], env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = read_metrics(out)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    stop = expected_stop(records, 5)
    assert summary["select"] == "val_loss" and records[-1]["epoch"] == stop == summary["runs"][0]["epochs"]
    assert summary["runs"][0]["epoch"] == min(records, key=lambda r: r["val_loss"])["epoch"]


def test_val_loss_selection_without_a_validation_loss_is_an_error() -> None:
    with pytest.raises(TrainingError, match="no validation loss"):
        improves("val_loss", {"epoch": 1, "val": 0.5, "test": 0.5}, {"epoch": None, "val": None, "test": None})
