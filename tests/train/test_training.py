"""Training the paper's way: outputs, exact resume, evaluation reproducibility, configs, state files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import dgl
import numpy as np
import pytest
import torch

from revgnn_dgl.data import load_dataset
from revgnn_dgl.train import (
    BEST_FILE,
    CONFIG_FILE,
    LAST_FILE,
    METRICS_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    ConfigError,
    TrainConfig,
    evaluate,
    read_metrics,
    resolve_device,
    summarize,
    train,
)
from revgnn_dgl.train.data import random_parts
from revgnn_dgl.train.state import TrainingStateError, load_training_state, save_training_state
from revgnn_dgl.zoo.checkpoint import build_from_checkpoint, load_checkpoint

# A model and graph small enough for a few epochs in about a second. Three parts keep every
# part's subgraph with edges on 300 nodes.
TINY = dict(
    model="wide",
    dataset="synthetic-proteins",
    dataset_options={"num_nodes": 300},
    num_layers=3,
    hidden=16,
    train_parts=3,
    eval_parts=2,
    device="cpu",
)


def quiet(line: str) -> None:
    """Swallow progress lines."""


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four uninterrupted epochs, shared by the tests that only read the outputs."""
    out = tmp_path_factory.mktemp("straight")
    train(TrainConfig(**TINY, epochs=4, out=str(out)), progress=False)
    return out


def test_outputs(straight_run: Path) -> None:
    for name in (CONFIG_FILE, METRICS_FILE, BEST_FILE, LAST_FILE, STATE_FILE, SUMMARY_FILE):
        assert (straight_run / name).is_file(), name
    records = read_metrics(straight_run)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert all({"loss", "val", "test", "time"} <= set(r) for r in records)
    assert records[-1]["loss"] < records[0]["loss"]
    best = max(records, key=lambda r: r["val"])
    meta = load_checkpoint(straight_run / BEST_FILE).metadata
    assert (meta["epoch"], meta["val"], meta["test"]) == (best["epoch"], best["val"], best["test"])
    assert load_checkpoint(straight_run / LAST_FILE).metadata["epoch"] == 4
    summary = json.loads((straight_run / SUMMARY_FILE).read_text())
    assert summary["val"] == {"mean": best["val"], "std": 0.0}
    assert TrainConfig.from_file(straight_run / CONFIG_FILE) == TrainConfig(**TINY, epochs=4, out=str(straight_run))


def test_evaluate_reproduces_best_val(straight_run: Path) -> None:
    model = build_from_checkpoint(straight_run / BEST_FILE)
    meta = model.checkpoint_metadata
    dataset = load_dataset("synthetic-proteins", **meta["dataset_options"])
    scores = evaluate(model, dataset, parts=meta["eval_parts"], views=meta["eval_views"], seed=meta["seed"])
    assert scores["metric"] == "rocauc"
    assert scores["val"] == pytest.approx(meta["val"], abs=1e-6)
    assert scores["test"] == pytest.approx(meta["test"], abs=1e-6)


def test_resume_matches_uninterrupted_run(straight_run: Path, tmp_path: Path) -> None:
    config = TrainConfig(**TINY, epochs=2, out=str(tmp_path))
    train(config, progress=False)
    # A crash after the metrics line but before the state was saved leaves a line to redo.
    with open(tmp_path / METRICS_FILE, "a") as fh:
        fh.write(json.dumps({"epoch": 3, "loss": 9.0, "val": 0.0, "test": 0.0, "time": 0.0}) + "\n")
    random.seed(123), np.random.seed(123), torch.manual_seed(123)  # resume must not depend on these
    train(TrainConfig.from_file(tmp_path / CONFIG_FILE).updated({"epochs": 4}), resume=True, progress=False)
    resumed, straight = read_metrics(tmp_path), read_metrics(straight_run)
    assert len(resumed) == len(straight) == 4
    for a, b in zip(resumed, straight):
        assert a["epoch"] == b["epoch"]
        for key in ("loss", "val", "test"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["epoch"], key)
    assert load_checkpoint(tmp_path / BEST_FILE).metadata["val"] == pytest.approx(
        load_checkpoint(straight_run / BEST_FILE).metadata["val"], abs=1e-6
    )


def test_refuses_to_overwrite_a_run(straight_run: Path) -> None:
    with pytest.raises(ConfigError, match="--resume"):
        train(TrainConfig(**TINY, epochs=1, out=str(straight_run)), progress=False)


def test_several_runs_full_graph_and_eval_every(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = TrainConfig(**{**TINY, "train_parts": 1}, epochs=2, eval_every=5, runs=2, seed=7, out=str(tmp_path))
    summary = train(config, progress=False)
    lines = capsys.readouterr().out.splitlines()
    assert [r["seed"] for r in summary["runs"]] == [7, 8]
    for i in range(2):
        records = read_metrics(tmp_path / f"run-{i}")
        # Evaluated only after the last epoch, since eval_every exceeds the epochs.
        assert [r["val"] is None for r in records] == [True, False]
        assert TrainConfig.from_file(tmp_path / f"run-{i}" / CONFIG_FILE).seed == 7 + i
    assert summary["test"]["std"] > 0
    assert any("±" in line for line in lines)


def test_multiclass_graph_file_sets_model_widths(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A multiclass graph without edge features or species: the card's widths follow the data."""
    dgl.seed(0)
    g = dgl.rand_graph(60, 400)
    g.ndata["feat"] = torch.randn(60, 5)
    g.ndata["label"] = torch.arange(60) % 3
    split = torch.arange(60) % 5
    g.ndata["train_mask"], g.ndata["val_mask"], g.ndata["test_mask"] = split < 3, split == 3, split == 4
    path = tmp_path / "graph.bin"
    dgl.save_graphs(str(path), [g])
    out = tmp_path / "run"
    summary = train(
        TrainConfig(
            model="wide",
            dataset=str(path),
            num_layers=2,
            hidden=8,
            train_parts=2,
            eval_parts=1,
            epochs=2,
            device="cpu",
            out=str(out),
        ),
        progress=False,
    )
    lines = capsys.readouterr().out.splitlines()
    assert summary["metric"] == "accuracy"
    args = load_checkpoint(out / BEST_FILE).arguments
    assert (args["in_feats"], args["out_feats"], args["edge_feats"], args["species_feats"]) == (5, 3, 0, 0)
    assert any("in_feats 8 -> 5" in line and "out_feats 112 -> 3" in line for line in lines)


def test_random_parts_cover_every_node_once() -> None:
    parts = random_parts(1000, 7, np.random.default_rng(0))
    assert len(parts) == 7
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(1000))
    assert min(len(p) for p in parts) > 100


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'epochz'.*did you mean 'epochs'"):
        TrainConfig.from_mapping({"epochz": 3})
    with pytest.raises(ConfigError, match="epochs must be an integer"):
        TrainConfig.from_mapping({"epochs": "ten"})
    with pytest.raises(ConfigError, match="train_parts must be at least 1"):
        TrainConfig.from_mapping({"train-parts": 0})
    config = TrainConfig.from_mapping({"train-parts": 4, "lr": 1, "root": None})
    assert (config.train_parts, config.lr) == (4, 1.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        TrainConfig.from_file(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_unavailable() -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_training_state_round_trip(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = tmp_path / STATE_FILE
    save_training_state(path, model=model, optimizer=opt, epoch=5, extra={"best": {"val": 0.5}})
    expected = (random.random(), np.random.rand(), torch.rand(1))
    state = load_training_state(path)
    assert (state.epoch, state.extra) == (5, {"best": {"val": 0.5}})
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=0.01)
    fresh.load_state_dict(state.optimizer)
    assert fresh.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    for a, b in zip(fresh.state_dict()["state"].values(), opt.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in b)
    from revgnn_dgl.train.state import restore_rng

    restore_rng(state.rng)
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
    (tmp_path / "not.safetensors").write_bytes(b"garbage")
    with pytest.raises(TrainingStateError):
        load_training_state(tmp_path / "not.safetensors")


def test_summarize_uses_sample_std() -> None:
    summary = summarize([{"seed": 0, "val": 0.8, "test": 0.7}, {"seed": 1, "val": 0.9, "test": 0.9}], "rocauc")
    assert summary["test"]["mean"] == pytest.approx(0.8)
    assert summary["test"]["std"] == pytest.approx(np.std([0.7, 0.9], ddof=1))


def test_equilibrium_model_logs_solver_convergence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The metrics line carries the last training step's forward and backward solves (not an
    evaluation's), with the iteration count, residual and flag those solves really had: each
    solve is watched, its evaluations of f counted and its residual recomputed from f."""
    from revgnn_dgl.models.deq import DEQGNN
    from revgnn_dgl.train import loop

    solves, reports = [], []
    original_solve, original_report = DEQGNN._solve, loop.solver_report

    def watched_solve(self, f, z0, max_iter, tol):
        calls = [0]

        def counted(z):
            calls[0] += 1
            return f(z)

        z, info = original_solve(self, counted, z0, max_iter, tol)
        with torch.no_grad():  # the residual of the returned iterate, recomputed
            fz = f(z)
            rel = float(torch.linalg.vector_norm(fz - z) / torch.linalg.vector_norm(fz))
        solves.append({"evaluations": calls[0], "rel_residual": rel, "tol": tol, "max_iter": max_iter, "info": info})
        return z, info

    def watched_report(model):
        reports.append(len(solves))
        return original_report(model)

    monkeypatch.setattr(DEQGNN, "_solve", watched_solve)
    monkeypatch.setattr(loop, "solver_report", watched_report)
    config = TrainConfig(**{**TINY, "model": "deq-gnn-64", "num_layers": None}, epochs=1, out=str(tmp_path))
    train(config, progress=False)
    (record,) = read_metrics(tmp_path)

    # Three training steps (train_parts=3), each one forward and one backward (adjoint) solve,
    # then the report, then the evaluation's forward solves.
    assert reports == [6] and len(solves) > 6
    forward, backward = solves[4], solves[5]
    assert set(record["solver"]) == {"forward", "backward"}
    for phase, solve in (("forward", forward), ("backward", backward)):
        logged = record["solver"][phase]
        assert solve["info"] is not None and (solve["tol"], solve["max_iter"]) == (1e-4, 50)
        assert logged["iterations"] == solve["evaluations"] == len(solve["info"].history), phase
        assert 1 <= logged["iterations"] <= 50
        assert logged["rel_residual"] == pytest.approx(solve["rel_residual"], rel=1e-4), phase
        assert logged["converged"] == (solve["rel_residual"] <= 1e-4), phase
