"""The library calls behind ``revgnn-dgl train`` and ``evaluate`` (revgnn_dgl.train.command), the
run's callbacks, and the memory estimate beside the architectures, from Python."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
from click.testing import CliRunner

from revgnn_dgl.cli import cli
from revgnn_dgl.errors import ConfigError
from revgnn_dgl.train import Callback, TrainConfig, evaluate_run, train, train_command
from revgnn_dgl.train.command import OptionError, TrainOutcome
from revgnn_dgl.zoo.estimates import constant_memory, register_constant_memory, training_bytes

TINY = dict(model="wide", dataset="synthetic-proteins", dataset_options={"num_nodes": 300}, num_layers=2, hidden=8,
            train_parts=3, eval_parts=2, device="cpu", threads=1)  # fmt: skip


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: List[str] = []

    def on_train_start(self, run: Any) -> None:
        self.calls.append(f"start {run.config.seed} from {run.start_epoch}")

    def on_epoch_end(self, run: Any, record: Dict[str, Any]) -> None:
        assert (run.run_dir / "metrics.jsonl").read_text().count("\n") == record["epoch"]  # its files are written
        self.calls.append(f"epoch {record['epoch']}")

    def on_train_end(self, run: Any) -> None:
        self.calls.append("end")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("command") / "run"
    recorder = Recorder()
    seen: List[int] = []
    train(TrainConfig(**TINY, epochs=2, out=str(out)), progress=False, callbacks=[recorder],
          on_epoch=lambda record: seen.append(record["epoch"]))  # fmt: skip
    assert recorder.calls == ["start 0 from 0", "epoch 1", "epoch 2", "end"]
    assert seen == [1, 2]  # on_epoch: the last callback
    return out


def test_evaluate_run_from_python_matches_the_command(run_dir: Path, tmp_path: Path) -> None:
    evaluation = evaluate_run(run_dir=str(run_dir), device="cpu", threads=1, save_predictions=str(tmp_path / "p.npz"))
    result = evaluation.result
    assert result["model"] == str(run_dir / "best.safetensors") and result["eval_parts"] == 2
    assert 0.0 <= result["test"] <= 1.0 and (tmp_path / "p.npz").is_file()
    assert evaluation.lines()[0] == f"predictions of 300 nodes in {tmp_path / 'p.npz'}"
    command = CliRunner().invoke(
        cli, ["evaluate", "--run", str(run_dir), "--device", "cpu", "--threads", "1", "--json"]
    )
    assert command.exit_code == 0, command.output
    assert json.loads(command.output)["test"] == result["test"]


def test_evaluate_run_refuses_options_that_do_not_go_together(run_dir: Path) -> None:
    with pytest.raises(OptionError, match="--run DIR uses the run's own checkpoint"):
        evaluate_run(run_dir=str(run_dir), model="wide")
    with pytest.raises(OptionError, match="--memory-budget sizes --full-graph's blocks"):
        evaluate_run(run_dir=str(run_dir), memory_budget="1GB")
    assert issubclass(OptionError, ConfigError)


def test_train_command_reports_its_outcome(tmp_path: Path) -> None:
    outcomes: List[TrainOutcome] = []
    given = {k: v for k, v in TINY.items()}
    train_command({**given, "epochs": 1, "out": str(tmp_path / "run")}, outcomes.append)
    assert len(outcomes) == 1 and outcomes[0].remote is None
    assert outcomes[0].config.out == str(tmp_path / "run") and outcomes[0].summary["runs"][0]["epochs"] == 1


def test_train_command_resume_rules(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="give one of them"):
        train_command({}, print, resume=str(tmp_path), overwrite=True)
    with pytest.raises(OptionError, match="only --epochs, --device"):
        train_command({"lr": 0.1}, print, resume=str(tmp_path))
    with pytest.raises(OptionError, match="--master-port goes with --ip-config"):
        train_command({}, print, master_port=1234)


def test_callbacks_are_for_one_process() -> None:
    from revgnn_dgl.train.distributed import Context

    ctx = Context(0, 2)
    ctx.active = True
    with pytest.raises(ConfigError, match="one-process training"):
        train(TrainConfig(**TINY, nproc=2, out="unused"), dist=ctx, callbacks=[Recorder()])


def test_memory_estimate_lives_beside_the_architectures() -> None:
    args = {"in_feats": 8, "out_feats": 2, "hidden": 16, "num_layers": 8}
    estimate = training_bytes("resgnn", args, nodes=100, edges=400.0)
    assert estimate is not None and estimate[1] == 4 * 16 * 500 * 8  # one copy of the activations per layer
    assert constant_memory("revgnn") and not constant_memory("resgnn")
    register_constant_memory("resgnn")
    try:
        assert training_bytes("resgnn", args, nodes=100, edges=400.0)[1] == 4 * 16 * 500  # type: ignore[index]
    finally:
        from revgnn_dgl.zoo import estimates

        estimates._CONSTANT_MEMORY.discard("resgnn")
