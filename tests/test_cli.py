"""The ``revgnn-dgl`` command line: train / evaluate / resume, zoo, info, and one-line errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator, List

import click
import dgl
import pytest
import torch
from click.testing import CliRunner, Result

from revgnn_dgl.cli import cli
from revgnn_dgl.cli_options import TRAIN_DEFAULTS
from revgnn_dgl.train import BEST_FILE, SUMMARY_FILE, TrainConfig, read_metrics

SMALL_MODEL = ["--model", "wide", "--num-layers", "3", "--hidden", "16", "--train-parts", "3", "--eval-parts", "2", "--eval-views", "1",
               "--device", "cpu"]  # fmt: skip
TINY = [*SMALL_MODEL, "--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=300"]


def invoke(args: List[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=True)


def assert_one_line_error(result: Result, *needles: str) -> None:
    """A non-zero exit with a single ``Error:`` line naming the problem, and no traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught error
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], result.output


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke(["train", *TINY, "--epochs", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "num_layers 448 -> 3" in result.output and "device: cpu" in result.output
    return out


def test_train_outputs(run_dir: Path) -> None:
    """summary.json holds the best epoch of metrics.jsonl, and its scores are what evaluating
    best.safetensors gives again."""
    from revgnn_dgl.data import load_dataset
    from revgnn_dgl.train import evaluate
    from revgnn_dgl.zoo.checkpoint import build_from_checkpoint

    records = read_metrics(run_dir)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    best = max(records, key=lambda r: r["val"])  # the first of equal scores, as training keeps it
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    assert summary["metric"] == "rocauc"
    (run,) = summary["runs"]
    assert {k: run[k] for k in ("seed", "epoch", "val", "test")} == {
        "seed": 0,
        **{k: best[k] for k in ("epoch", "val", "test")},
    }
    assert run["epochs"] == 3
    assert summary["val"] == {"mean": best["val"], "std": 0.0}
    assert summary["test"] == {"mean": best["test"], "std": 0.0}

    model = build_from_checkpoint(run_dir / BEST_FILE)
    meta = model.checkpoint_metadata
    assert (meta["epoch"], meta["val"], meta["test"]) == (best["epoch"], best["val"], best["test"])
    dataset = load_dataset(meta["dataset"], **meta["dataset_options"])
    scores = evaluate(model, dataset, parts=meta["eval_parts"], views=meta["eval_views"], seed=meta["seed"])
    # A ROC-AUC on 300 nodes moves in steps far above 1e-6: this is the same number.
    assert scores["val"] == pytest.approx(summary["val"]["mean"], abs=1e-6)
    assert scores["test"] == pytest.approx(summary["test"]["mean"], abs=1e-6)


def test_evaluate_run_and_checkpoint_reproduce_best_val(run_dir: Path) -> None:
    best = max(read_metrics(run_dir), key=lambda r: r["val"])
    for args in (["--run", str(run_dir)], ["--checkpoint", str(run_dir / BEST_FILE)]):
        result = invoke(["evaluate", *args, "--device", "cpu", "--json"])
        assert result.exit_code == 0, result.output
        scores = json.loads(result.output)
        assert scores["val"] == pytest.approx(best["val"], abs=1e-6)
        assert scores["test"] == pytest.approx(best["test"], abs=1e-6)
    result = invoke(["evaluate", "--run", str(run_dir), "--device", "cpu"])
    assert result.exit_code == 0 and f"val rocauc: {best['val']:.6f}" in result.output


@pytest.fixture
def register_card() -> Iterator[Callable[[dict], None]]:
    """register_model for one test: the cards are removed afterwards, so a second run in one process works."""
    from revgnn_dgl import register_model, unregister_model

    names: List[str] = []

    def register(card: dict) -> None:
        register_model(card)
        names.append(card["name"])

    yield register
    for name in names:
        unregister_model(name)


def test_evaluate_pretrained_uses_the_card(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, register_card: Callable[[dict], None]
) -> None:
    """--pretrained goes through the card: its weights in the cache, its dataset and eval settings."""
    from revgnn_dgl.zoo.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run_dir / BEST_FILE)
    monkeypatch.setenv("REVGNN_DGL_CACHE", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(run_dir / BEST_FILE, tmp_path / "checkpoints" / "tiny-cli-test.safetensors")
    register_card({
        "name": "tiny-cli-test", "architecture": ckpt.architecture, "arguments": ckpt.arguments,
        "dataset": "synthetic-proteins", "dataset_options": {"num_nodes": 300},
        "eval": {"parts": 2, "views": 1, "seed": 0},
        "checkpoint": {"source": "url", "url": "file:///nonexistent", "file": "tiny-cli-test.safetensors"},
    })  # fmt: skip
    result = invoke(["evaluate", "--model", "tiny-cli-test", "--pretrained", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["val"] == pytest.approx(ckpt.metadata["val"], abs=1e-6)
    # A card whose weights are not in the cache: one line saying how to get them.
    register_card({
        "name": "tiny-cli-missing", "architecture": ckpt.architecture, "arguments": ckpt.arguments,
        "checkpoint": {"source": "official", "official_file": "x.pth", "how": "Run `revgnn-dgl zoo import`."},
    })  # fmt: skip
    assert_one_line_error(invoke(["evaluate", "--model", "tiny-cli-missing", "--pretrained"]), "zoo import")


def test_resume_continues_to_more_epochs(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert invoke(["train", *TINY, "--epochs", "2", "--out", str(out)]).exit_code == 0
    result = invoke(["train", "--resume", str(out), "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    assert len(read_metrics(out)) == len(read_metrics(run_dir)) == 3
    for a, b in zip(read_metrics(out), read_metrics(run_dir)):
        assert (a["epoch"], a["loss"], a["val"]) == pytest.approx((b["epoch"], b["loss"], b["val"]), abs=1e-6)
    assert_one_line_error(invoke(["train", "--resume", str(out), "--lr", "0.1"]), "--lr")


def test_config_file_and_flag_precedence(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(
        "model: wide\ndataset: synthetic-proteins\ndataset_options: {num_nodes: 300}\nnum_layers: 2\n"
        "hidden: 8\ntrain-parts: 3\neval_parts: 2\nepochs: 5\ndevice: cpu\n"
    )
    out = tmp_path / "run"
    result = invoke(["train", "--config", str(config), "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    resolved = TrainConfig.from_file(out / "config.yaml")
    assert (resolved.epochs, resolved.num_layers, resolved.train_parts) == (1, 2, 3)
    assert len(read_metrics(out)) == 1


def test_option_ranges_and_defaults_come_from_the_config() -> None:
    """Every integer option of a TrainConfig key has the config's minimum; every '[default: X]' of
    a TrainConfig key's option is the config's default: help and validation cannot disagree."""
    from revgnn_dgl.cli import evaluate, train, tune
    from revgnn_dgl.train.config import MINIMUM

    defaults = TrainConfig()
    for command in (train, tune, evaluate):
        for param in command.params:
            if isinstance(param.type, click.IntRange) and param.name in MINIMUM:
                assert param.type.min == MINIMUM[param.name], (command.name, param.name)
            shown = re.search(r"\[default: ([^\]]+)\]", getattr(param, "help", None) or "")
            if command is not evaluate and shown and param.name in TrainConfig.keys() and "--" not in shown.group(1):
                if not shown.group(1).startswith(("off", "the ", "auto", "1 with", "runs/")):
                    assert shown.group(1) == str(getattr(defaults, param.name)), (command.name, param.name)


def test_help_defaults_match_train_config() -> None:
    assert TRAIN_DEFAULTS == TrainConfig()  # derived, not copied
    result = invoke(["train", "--help"])
    assert result.exit_code == 0 and "--train-parts" in result.output and "2000" in result.output
    from revgnn_dgl.data.catalog import catalog_names

    flat = " ".join(result.output.split())
    unwrapped = flat.replace("- ", "-")  # click may wrap a hyphenated name at its hyphen
    assert all(name in unwrapped for name in catalog_names()), "the --dataset help lists every named dataset"
    assert "Adam learning rate" not in flat


def test_help_does_not_import_dgl() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from revgnn_dgl.cli import cli; "
        "r = CliRunner().invoke(cli, ['train', '--help']); assert r.exit_code == 0, r.output; "
        "print('dgl' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_zoo_list_and_show() -> None:
    result = invoke(["zoo", "list"])
    assert result.exit_code == 0
    assert "revgnn-deep" in result.output and "20,031,384" in result.output
    result = invoke(["zoo", "show", "wide"])
    assert result.exit_code == 0 and "name: revgnn-wide" in result.output and "hidden: 224" in result.output


def test_info() -> None:
    result = invoke(["info"])
    assert result.exit_code == 0
    assert f"torch      {torch.__version__}" in result.output and f"dgl        {dgl.__version__}" in result.output


def test_benchmark_group_lists_its_commands() -> None:
    result = invoke(["benchmark", "--help"])
    assert result.exit_code == 0 and "memory" in result.output and "speed" in result.output


def test_benchmark_help_table_is_the_real_groups() -> None:
    """`benchmark --help` answers from a table (no torch); the table must say what the commands say."""
    from revgnn_dgl.bench.cli import benchmark
    from revgnn_dgl.cli import BENCHMARK_COMMANDS

    real = {
        name: " ".join((command.help or "").split("\n\n")[0].split()) for name, command in benchmark.commands.items()
    }
    assert real == BENCHMARK_COMMANDS
    assert invoke(["benchmark", "memory", "--help"]).exit_code == 0  # the real command still answers


# ------------------------------------------------------------------ bad input: one line, no traceback
@pytest.mark.parametrize(
    "args, needles",
    [
        (["train", "--model", "nope", "--dataset", "synthetic-proteins", "--epochs", "1"], ["unknown model 'nope'"]),
        (["train", *SMALL_MODEL, "--dataset", "nosuchdata"], ["unknown dataset 'nosuchdata'"]),
        (["train", *SMALL_MODEL, "--dataset", "/nonexistent/graph.bin"], ["file not found"]),
        (["train", *TINY, "--dataset-option", "colour=3"], ["colour"]),
        (["zoo", "show", "nope"], ["unknown model"]),
        (["zoo", "download", "revgnn-112"], ["no pretrained weights"]),
        (["evaluate", "--checkpoint", __file__], ["not a safetensors file"]),
        (["train", *TINY, "--groups", "3"], ["not divisible"]),
    ],
)
def test_user_errors(args: List[str], needles: List[str], tmp_path: Path) -> None:
    assert_one_line_error(invoke([*args, "--out", str(tmp_path / "o")] if args[0] == "train" else args), *needles)


def test_unknown_config_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model: wide\nepochz: 3\n")
    assert_one_line_error(invoke(["train", "--config", str(config)]), "epochz", str(config))


def test_graph_file_without_labels(tmp_path: Path) -> None:
    g = dgl.graph(([0, 1], [1, 2]))
    g.ndata["feat"] = torch.randn(3, 4)
    path = tmp_path / "nolabels.bin"
    dgl.save_graphs(str(path), [g])
    assert_one_line_error(
        invoke(["train", *SMALL_MODEL, "--dataset", str(path), "--out", str(tmp_path / "o")]), "label"
    )


def test_checkpoint_of_another_architecture(run_dir: Path) -> None:
    args = ["evaluate", "--model", "wt-revgnn", "--checkpoint", str(run_dir / BEST_FILE),
            "--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=300", "--device", "cpu"]  # fmt: skip
    assert_one_line_error(invoke(args), "architecture 'revgnn'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_unavailable(tmp_path: Path) -> None:
    args = ["train", *TINY, "--device", "cuda", "--out", str(tmp_path / "o")]
    assert_one_line_error(invoke(args), "CUDA is not available")


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in (["train", "--config", str(tmp_path / "missing.yaml")], ["evaluate"], ["evaluate", "--pretrained"]):
        result = invoke(args)
        assert result.exit_code == 2 and "Error:" in result.output and "Traceback" not in result.output, args


def test_existing_output_directory(run_dir: Path) -> None:
    assert_one_line_error(invoke(["train", *TINY, "--epochs", "1", "--out", str(run_dir)]), "--resume")


def test_console_script_error_is_one_line() -> None:
    """Through the real entry point, in a fresh process: one line on stderr, exit status 1."""
    env = {**os.environ, "OUTDATED_IGNORE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "revgnn_dgl.cli", "zoo", "show", "no-such-model"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("Error: unknown model 'no-such-model'")
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""


def test_help_is_grouped() -> None:
    """train --help and evaluate --help show their options under headings, each option once."""
    text = invoke(["train", "--help"]).output
    headings = ["Model:", "Data:", "Recipe:", "Evaluation:", "Run:", "Device and processes:", "Output:"]
    positions = [text.index(h) for h in headings]
    assert positions == sorted(positions), "the groups in their order"

    def at(option: str) -> int:  # where the option's own line is (the description mentions some)
        return text.index(f"\n  {option} ", text.index("Model:") if "Model:" in text else 0)

    assert at("--num-layers") < text.index("Data:") < at("--dataset-option") < text.index("Recipe:")
    assert text.index("Recipe:") < at("--weight-decay") < text.index("Label reuse")
    assert text.index("Device and processes:") < at("--nproc") < text.index("Output:")
    assert text.count("\n  --dist-timeout ") == 1
    text = invoke(["evaluate", "--help"]).output
    assert text.count("\n  --dataset-option ") == 1
    assert text.index("What to evaluate:") < at("--pretrained") < text.index("Data:") < text.index("Output:")


def test_resume_of_a_finished_run_says_so(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "done"
    assert invoke(["train", *TINY, "--epochs", "2", "--out", str(out)]).exit_code == 0
    before = (out / "metrics.jsonl").read_bytes()
    result = invoke(["train", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{out} has already finished (trained its 2 epochs): nothing to train" in result.output
    assert (out / "metrics.jsonl").read_bytes() == before


def test_evaluate_model_with_checkpoint_takes_the_checkpoints_dataset(
    run_dir: Path, register_card: Callable[[dict], None]
) -> None:
    """--model NAME --checkpoint FILE evaluates on the data FILE was trained on, not the card's dataset."""
    from revgnn_dgl.zoo.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run_dir / BEST_FILE)
    register_card({"name": "tiny-on-proteins", "architecture": ckpt.architecture, "arguments": ckpt.arguments,
                   "dataset": "ogbn-proteins"})  # fmt: skip
    result = invoke(["evaluate", "--model", "tiny-on-proteins", "--checkpoint", str(run_dir / BEST_FILE), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output.strip().splitlines()[-1])
    assert scores["dataset"] == ckpt.metadata["dataset"] == "synthetic-proteins"
    assert scores["val"] == pytest.approx(ckpt.metadata["val"], abs=1e-6)


def test_a_runs_own_config_is_reusable(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config RUN/config.yaml trains anew: the file's out: (that run's folder) is not reused, and says so."""
    monkeypatch.chdir(tmp_path)
    result = invoke(["train", "--config", str(run_dir / "config.yaml"), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert f"names out: {run_dir}, another run's folder; this run gets its own" in " ".join(result.output.split())
    (new,) = [p for p in (tmp_path / "runs").iterdir()]
    assert new != run_dir and (new / "summary.json").is_file()
