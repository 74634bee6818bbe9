"""Issue 39: shallow baselines beside a run on a graph no card was tuned for, a warning when the deep
model is below them, and the diagnosis of a run that stays at chance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import dgl
import torch
from click.testing import CliRunner

from revgnn_dgl.cli import cli
from revgnn_dgl.train import TrainConfig
from revgnn_dgl.train.baselines import AUTO_MIN_EPOCHS, report_lines, wants_baselines
from revgnn_dgl.train.diagnosis import MARGIN, chance_diagnosis, diagnosis_epoch

SMALL = ["--model", "revgnn-112", "--num-layers", "2", "--hidden", "8", "--train-parts", "1", "--device", "cpu",
         "--threads", "1"]  # fmt: skip


def graph_file(
    path: Path, *, informative: bool = True, multilabel: bool = False, nodes: int = 300, seed: int = 0
) -> str:
    """A graph whose labels are a linear function of its features (informative), or one whose
    features are all zero (nothing to learn): a random graph, both edge directions, a 50/25/25 split."""
    gen = torch.Generator().manual_seed(seed)
    src, dst = torch.randint(0, nodes, (2, 4 * nodes), generator=gen)
    g = dgl.graph((torch.cat([src, dst]), torch.cat([dst, src])), num_nodes=nodes)
    feat = torch.randn(nodes, 12, generator=gen)
    if multilabel:
        labels = (feat[:, :3] > 0).float() if informative else (torch.rand(nodes, 3, generator=gen) < 0.5).float()
    else:
        labels = feat[:, :4].argmax(dim=1) if informative else torch.randint(0, 4, (nodes,), generator=gen)
    g.ndata["feat"] = feat if informative else torch.zeros(nodes, 12)
    g.ndata["label"] = labels
    order = torch.randperm(nodes, generator=gen)
    for name, (lo, hi) in {"train": (0, 0.5), "val": (0.5, 0.75), "test": (0.75, 1.0)}.items():
        mask = torch.zeros(nodes, dtype=torch.bool)
        mask[order[int(lo * nodes) : int(hi * nodes)]] = True
        g.ndata[f"{name}_mask"] = mask
    dgl.save_graphs(str(path), [g])
    return str(path)


def train_cli(args: List[str]):
    return CliRunner().invoke(cli, ["train", *args], catch_exceptions=True)


def test_baselines_are_fitted_recorded_and_printed_and_a_deep_model_below_them_is_warned(tmp_path: Path) -> None:
    data = graph_file(tmp_path / "g.bin")
    out = tmp_path / "run"
    # One epoch at a tiny learning rate: the deep model stays near chance, far below the baselines.
    result = train_cli(["--dataset", data, *SMALL, "--epochs", "1", "--lr", "1e-5", "--baseline", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    baselines = summary["baselines"]
    assert set(baselines) == {"logistic_regression", "gcn-2"}
    # The labels are the argmax of 4 feature columns: logistic regression on the features finds them.
    assert baselines["logistic_regression"]["val"] > 0.7 and baselines["logistic_regression"]["test"] > 0.7
    assert 0.25 < baselines["gcn-2"]["val"] <= 1 and baselines["gcn-2"]["epoch"] in range(5, 101, 5)
    deep = summary["val"]["mean"]
    assert deep < 0.6  # chance is about 0.25-0.3
    assert summary["below_baselines"] == ["logistic_regression", "gcn-2"]
    lines = result.output.strip().splitlines()
    assert lines[-1] == f"outputs in {out}"
    printed = "\n".join(lines[-7:-1])  # the run's last lines before the outputs line
    assert "baselines on the same split (val / test accuracy):" in printed
    lr, gcn = baselines["logistic_regression"], baselines["gcn-2"]
    assert f"{lr['val']:.4f} / {lr['test']:.4f}" in printed and f"{gcn['val']:.4f} / {gcn['test']:.4f}" in printed
    assert "revgnn-112 (this run, mean of 1)" in printed
    warning = lines[-2]
    assert warning.startswith(f"warning: revgnn-112's validation accuracy {deep:.4f}")
    assert f"below logistic regression ({lr['val']:.4f} / {lr['test']:.4f}) and gcn-2 ({gcn['val']:.4f}" in warning
    assert "revgnn-dgl tune" in warning


def test_multilabel_baselines_score_roc_auc_one_model_per_task(tmp_path: Path) -> None:
    data = graph_file(tmp_path / "g.bin", multilabel=True)
    out = tmp_path / "run"
    result = train_cli(["--dataset", data, *SMALL, "--epochs", "1", "--baseline", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "rocauc"
    assert summary["baselines"]["logistic_regression"]["val"] > 0.9  # each task is a sign of one feature
    assert "baselines on the same split (val / test rocauc):" in result.output


def test_no_baseline_and_the_default_keep_small_runs_as_they_were(tmp_path: Path) -> None:
    data = graph_file(tmp_path / "g.bin")
    for flag, out in (([], tmp_path / "default"), (["--no-baseline"], tmp_path / "off")):
        result = train_cli(["--dataset", data, *SMALL, "--epochs", "1", *flag, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert "baselines" not in json.loads((out / "summary.json").read_text())
        assert "baselines on the same split" not in result.output
    # The default: on for a run of at least AUTO_MIN_EPOCHS epochs on a dataset its card was not trained on.
    mine = TrainConfig(model="revgnn-112", dataset=data, epochs=AUTO_MIN_EPOCHS)
    assert wants_baselines(mine, None) and not wants_baselines(mine, False)
    assert not wants_baselines(TrainConfig(model="revgnn-112", dataset=data, epochs=AUTO_MIN_EPOCHS - 1), None)
    assert wants_baselines(TrainConfig(model="revgnn-cora-64", dataset="citeseer", epochs=300), None)
    assert not wants_baselines(TrainConfig(model="revgnn-cora-64", dataset="cora", epochs=300), None)  # its card's
    assert wants_baselines(TrainConfig(model="revgnn-cora-64", dataset="cora", epochs=1), True)


def test_no_warning_when_the_deep_model_is_above_the_baselines() -> None:
    summary = {
        "metric": "accuracy",
        "val": {"mean": 0.8},
        "test": {"mean": 0.79},
        "runs": [{}, {}],
        "baselines": {"logistic_regression": {"val": 0.6, "test": 0.61}, "gcn-2": {"val": 0.79, "test": 0.8}},
    }
    lines = report_lines(summary, "deep")
    assert len(lines) == 4 and not any(line.startswith("warning") for line in lines)
    assert lines[-1].split() == ["deep", "(this", "run,", "mean", "of", "2)", "0.8000", "/", "0.7900"]
    summary["val"]["mean"] = 0.7
    assert report_lines(summary, "deep")[-1].startswith("warning: deep's validation accuracy 0.7000 (test 0.7900) "
                                                        "is below gcn-2 (0.7900 / 0.8000)")  # fmt: skip


def test_a_run_at_chance_gets_the_diagnosis_line_once(tmp_path: Path) -> None:
    data = graph_file(tmp_path / "zero.bin", informative=False, multilabel=True, nodes=80)
    out = tmp_path / "run"
    result = train_cli(["--dataset", data, *SMALL, "--epochs", "20", "--weight-decay", "0.01", "--no-baseline",
                        "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("diagnosis:")]
    assert len(lines) == 1, result.output
    line = lines[0]
    assert line.startswith("diagnosis: after 2 of 20 epochs the best validation rocauc is 0.5000, within 0.02 of "
                           "chance (0.5000)")  # fmt: skip
    # all-zero features: their scale is named; the weight decay given is named; and tune
    assert "mean 0 and standard deviation 0" in line and "a lower weight decay (now --weight-decay 0.01)" in line
    assert "revgnn-dgl tune" in line
    epochs = result.output.split("\n")
    at = next(i for i, text in enumerate(epochs) if text.startswith("diagnosis:"))
    assert epochs[at + 1].startswith("epoch 2/20")  # said at the tenth of the run (with its evaluation), not at its end


def test_the_diagnosis_is_for_runs_near_chance_only() -> None:
    config = TrainConfig(epochs=100, eval_every=1, lr=0.01)
    epoch = diagnosis_epoch(config)
    assert epoch == 10
    assert chance_diagnosis(config, "accuracy", 0.3, 0.3 + MARGIN + 0.001, epoch) is None  # learning
    assert chance_diagnosis(config, "accuracy", 0.3, 0.3 + MARGIN, epoch - 1) is None  # not yet its epoch
    line = chance_diagnosis(config, "accuracy", 0.3, 0.3 + MARGIN, epoch, torch.ones(5, 3))
    assert line is not None and "a lower --lr (now 0.01)" in line and "weight decay" not in line
    assert diagnosis_epoch(TrainConfig(epochs=19)) is None
    assert chance_diagnosis(TrainConfig(epochs=19), "accuracy", 0.3, 0.3, 1) is None


def test_the_sparse_first_layer_is_gcn_2s_own_forward() -> None:
    """The GCN baseline's sparse product (bags of words) computes what gcn-2's forward does."""
    from revgnn_dgl.train.baselines import _sparse_first_layer
    from revgnn_dgl.zoo import create_model

    torch.manual_seed(0)
    graph = dgl.rand_graph(50, 300)
    feat = (torch.rand(50, 200) < 0.03).float()
    model = create_model("gcn-2", in_feats=200, out_feats=3).eval()
    run = _sparse_first_layer(model, feat)
    assert run is not None
    graph.ndata["feat"] = feat
    torch.testing.assert_close(run(graph), model(graph, feat), rtol=1e-5, atol=1e-6)
    assert _sparse_first_layer(model, torch.randn(50, 200)) is None  # dense features: the model's own forward
