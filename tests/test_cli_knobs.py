"""Every knob from the command line, runs that remember how they ran, outputs a user can use
(per-epoch log lines, JSON, predictions, plots) and a CLI that answers without loading DGL."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner, Result
from sklearn.metrics import accuracy_score, roc_auc_score

from revgnn_dgl import get_config, list_models
from revgnn_dgl.cli import cli
from revgnn_dgl.train import BEST_FILE, CONFIG_FILE, ConfigError, read_metrics
from revgnn_dgl.train.data import check_model_args
from revgnn_dgl.zoo import architecture_arguments, create_model
from revgnn_dgl.zoo.architectures import _ARCHITECTURES
from revgnn_dgl.zoo.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--model", "wide", "--num-layers", "2", "--hidden", "8", "--train-parts", "2", "--eval-parts", "1",
         "--device", "cpu", "--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=200"]  # fmt: skip
WIDTHS = ("in_feats", "out_feats", "edge_feats", "species_feats")


def invoke(args: List[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=True)


def one_line_error(result: Result, *needles: str) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], result.output
    return errors[0]


# ------------------------------------------------------------------ --set: every builder argument
def builder_defaults(name: str) -> dict:
    """Each argument the model's builder takes (widths aside), at its default or the card's value."""
    card = get_config(name)
    allowed = architecture_arguments(card["architecture"])  # also loads the builders
    builder = _ARCHITECTURES[card["architecture"]]
    params = inspect.signature(builder.__init__ if inspect.isclass(builder) else builder).parameters
    values = {}
    for key in sorted(allowed):
        if key in WIDTHS:
            continue
        if key in card["arguments"]:
            values[key] = card["arguments"][key]
        elif key in params and params[key].default is not inspect.Parameter.empty:
            values[key] = params[key].default
    return values


@pytest.mark.parametrize("name", list_models())
def test_set_accepts_every_builder_argument(name: str) -> None:
    values = builder_defaults(name)
    check_model_args(name, values)
    overrides = {**values, "num_layers": 2} if "num_layers" in values else values
    with torch.device("meta"):
        create_model(name, **overrides)  # and the builder really takes them


@pytest.mark.parametrize("name", list_models())
def test_set_rejects_unknown_arguments_with_a_suggestion(name: str) -> None:
    known = sorted(set(builder_defaults(name)))
    typo = known[0] + "x"
    with pytest.raises(ConfigError, match=rf"--set {typo}: not an argument of .* \(did you mean '{known[0]}'\?\)"):
        check_model_args(name, {typo: 1})
    with pytest.raises(ConfigError, match="taken from the dataset"):
        check_model_args(name, {"in_feats": 3})


def test_set_from_the_cli_and_config_agree_and_evaluate_rebuilds(tmp_path: Path) -> None:
    by_flag, by_file = tmp_path / "flag", tmp_path / "file"
    result = invoke(
        [
            "train",
            *SMALL,
            "--epochs",
            "2",
            "--set",
            "aggregator=softmax",
            "--set",
            "learn_t=true",
            "--out",
            str(by_flag),
        ]
    )
    assert result.exit_code == 0, result.output
    assert re.search(
        r"model_args: \{'aggregator': 'softmax', 'learn_t': True\}", result.output
    )  # the printed configuration
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model_args": {"aggregator": "softmax", "learn_t": True}}))
    result = invoke(["train", *SMALL, "--epochs", "2", "--config", str(config), "--out", str(by_file)])
    assert result.exit_code == 0, result.output
    saved = [yaml.safe_load((d / CONFIG_FILE).read_text()) for d in (by_flag, by_file)]
    assert saved[0]["model_args"] == saved[1]["model_args"] == {"aggregator": "softmax", "learn_t": True}
    args = load_checkpoint(by_flag / BEST_FILE).arguments
    assert args["aggregator"] == "softmax" and args["learn_t"] is True
    best = max(read_metrics(by_flag), key=lambda r: r["val"])
    result = invoke(["evaluate", "--run", str(by_flag), "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["val"] == pytest.approx(best["val"], abs=1e-6)
    one_line_error(invoke(["train", *SMALL, "--set", "agregator=max", "--out", str(tmp_path / "x")]),
                   "did you mean 'aggregator'")  # fmt: skip
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ runs remember how they ran
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("knobs") / "run"
    result = invoke(["train", *SMALL, "--epochs", "2", "--threads", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def own_run(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of the module's 2-epoch run that this test alone continues (any order of the tests)."""
    import shutil

    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def test_per_epoch_lines_when_stdout_is_not_a_terminal(own_run: Path) -> None:
    records = read_metrics(own_run)
    result = invoke(["train", "--resume", str(own_run), "--epochs", "3"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 1 and re.fullmatch(
        r"epoch 3/3 loss \d\.\d{4} val \d\.\d{4} test \d\.\d{4} lr 0\.001 \d+\.\d\ds", lines[0]
    )
    assert len(records) == 2 and len(read_metrics(own_run)) == 3


def test_resume_keeps_threads_and_device_and_refuses_fewer_epochs(own_run: Path, tmp_path: Path) -> None:
    saved = yaml.safe_load((own_run / CONFIG_FILE).read_text())
    assert saved["threads"] == 1 and saved["device"] == "cpu"
    done = len(read_metrics(own_run))
    one_line_error(invoke(["train", "--resume", str(own_run), "--epochs", "1"]),
                   f"has already trained {done} epochs; --epochs 1 must be more")  # fmt: skip
    assert yaml.safe_load((own_run / CONFIG_FILE).read_text()) == saved  # nothing rewritten
    torch.set_num_threads(2)
    try:
        result = invoke(["train", "--resume", str(own_run), "--epochs", str(done + 1)])
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1  # the stored thread count was applied
    finally:
        torch.set_num_threads(1)
    after = yaml.safe_load((own_run / CONFIG_FILE).read_text())
    assert after["threads"] == 1 and after["device"] == "cpu" and after["epochs"] == done + 1


def test_train_json_prints_only_the_summary(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", *SMALL, "--epochs", "1", "--json", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["metric"] == "rocauc" and summary["out"] == str(tmp_path / "r")
    assert summary == {**json.loads((tmp_path / "r" / "summary.json").read_text()), "out": str(tmp_path / "r")}


# ------------------------------------------------------------------ predictions
@pytest.mark.parametrize("dataset", ["multilabel", "multiclass"])
def test_saved_predictions_score_like_the_library(dataset: str, tmp_path: Path) -> None:
    if dataset == "multilabel":
        args = SMALL
    else:
        import dgl

        gen = torch.Generator().manual_seed(0)
        g = dgl.rand_graph(90, 500)
        g.ndata["feat"] = torch.randn(90, 5, generator=gen)
        g.ndata["label"] = torch.randint(0, 4, (90,), generator=gen)
        split = torch.arange(90) % 3
        g.ndata["train_mask"], g.ndata["val_mask"], g.ndata["test_mask"] = split == 0, split == 1, split == 2
        dgl.save_graphs(str(tmp_path / "g.bin"), [g])
        args = ["--model", "wide", "--num-layers", "2", "--hidden", "8", "--train-parts", "1", "--eval-parts", "1",
                "--device", "cpu", "--dataset", str(tmp_path / "g.bin")]  # fmt: skip
    out = tmp_path / "run"
    assert invoke(["train", *args, "--epochs", "2", "--out", str(out)]).exit_code == 0
    preds = tmp_path / "preds.npz"
    result = invoke(["evaluate", "--run", str(out), "--device", "cpu", "--json", "--save-predictions", str(preds)])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    with np.load(preds) as f:
        split, probs, labels, node_id = f["split"], f["probabilities"], f["labels"], f["node_id"]
        assert str(f["task"]) == dataset and np.array_equal(node_id, np.arange(len(split)))
    for name, code in (("val", 1), ("test", 2)):
        rows = split == code
        if dataset == "multiclass":
            ours = accuracy_score(labels[rows], probs[rows].argmax(1))
        else:  # OGB's protocol: the mean over tasks that have both classes
            y, p = labels[rows], probs[rows]
            ours = np.mean([roc_auc_score(y[:, t], p[:, t]) for t in range(y.shape[1]) if 0 < y[:, t].sum() < len(y)])
        assert ours == pytest.approx(scores[name], abs=1e-6), name


# ------------------------------------------------------------------ plots
def test_plot_writes_a_png(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    result = invoke(["plot", str(run_dir), str(run_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    one_line_error(invoke(["plot", str(tmp_path), "-o", str(out)]), "not an output directory")


# ------------------------------------------------------------------ a CLI that answers at once
@pytest.mark.parametrize(
    "args",
    [["--help"], ["train", "--help"], ["benchmark", "--help"], ["zoo", "list"], ["zoo", "show", "wide"], ["data", "list"],
     ["train", "--model", "nope"], ["train", "--model", "wide", "--dataset", "nosuchdata"], ["zoo", "show", "nope"]],
    ids=" ".join,
)  # fmt: skip
def test_fast_commands_do_not_import_dgl(args: List[str]) -> None:
    code = (
        "import sys, json; from click.testing import CliRunner; from revgnn_dgl.cli import cli; "
        f"r = CliRunner().invoke(cli, {args!r}); "
        "print(json.dumps([r.exit_code, 'dgl' in sys.modules, 'torch' in sys.modules, r.output]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    exit_code, dgl_loaded, torch_loaded, output = json.loads(out.stdout.strip().splitlines()[-1])
    assert not dgl_loaded and not torch_loaded, output
    if args[-1] in ("nope", "nosuchdata"):
        assert exit_code == 1 and output.startswith("Error: unknown"), output
    else:
        assert exit_code == 0, output


def test_data_list_names_every_dataset_and_where() -> None:
    result = invoke(["data", "list", "--json"])
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert {"cora", "citeseer", "humloc", "amazon-computers", "coauthor-cs", "synthetic-proteins"} <= set(rows)
    assert rows["cora"]["nodes"] == 2708 and rows["cora"]["metric"] == "accuracy"
    assert rows["synthetic-proteins"]["available"] is True
