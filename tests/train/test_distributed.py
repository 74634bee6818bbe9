"""Data-parallel training over graph partitions: 2 processes, gloo, CPU, small graphs.

Starting processes is what costs here (each imports torch and DGL), so three jobs do all the
work: a run killed by SIGKILL on rank 1 (``--nproc 2``), one spawned 2-rank job that takes the
one-step checks, three 3-epoch runs and the killed run's resume, and a torchrun job whose rank 1
raises. The one-process references run in the test process.

Tolerances. Gradients are compared after one plain SGD step (lr 1, no clipping: the parameters
move by exactly the gradient, so a gradient reduced twice or missed would show) with
``atol=1e-6``: one rank's gradient equals the one-process gradient of the half-weighted loss up
to a power-of-two scaling, which float arithmetic does exactly, so what remains is the order of
float32 additions in the all-reduce (a few ulps of values below 10) and, for DEQ-GNN, the adjoint
solver's least-squares regularisation, which is not exactly scale-invariant. The 3-epoch runs
(Adam, clipping) are compared with ``atol=1e-5``: 9 Adam steps of lr 0.01 amplify ulp-level
differences at most by a small factor. Measured differences are printed by the tests.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

import pytest
from click.testing import CliRunner
from ddp_jobs import MODELS, STEP_MODELS, job, max_diff, mean_loss_step, one_step, run_config, subprocess_env

from revgnn_dgl.bench import selfcheck
from revgnn_dgl.cli import cli
from revgnn_dgl.nn import GroupRevRes
from revgnn_dgl.train import (
    BEST_FILE,
    CONFIG_FILE,
    LAST_FILE,
    METRICS_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    ConfigError,
    TrainConfig,
    read_metrics,
    train,
)
from revgnn_dgl.train.distributed import Context, free_port, spawn
from revgnn_dgl.train.rundir import LOCK_FILE
from revgnn_dgl.zoo import create_model
from revgnn_dgl.zoo.checkpoint import load_checkpoint

# DEQ-GNN's solver stops short of its tolerance on these tiny training graphs; that is not tested here.
# Multi-process jobs (spawned ranks, torchrun) take tens of seconds on 2 cores: slow, so the inner
# loop (-m "not slow") leaves them to the full run.
pytestmark = [pytest.mark.filterwarnings("ignore::revgnn_dgl.nn.solvers.ConvergenceWarning"), pytest.mark.slow]


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """``revgnn-dgl train --nproc 2`` whose rank 1 is killed (SIGKILL) at the start of epoch 3."""
    out = tmp_path_factory.mktemp("killed") / "run"
    c = run_config("revgnn")
    args = [
        "--model", c.model, "--num-layers", str(c.num_layers), "--hidden", str(c.hidden), "--dropout", str(c.dropout),
        "--lr", str(c.lr), "--train-parts", str(c.train_parts), "--eval-parts", str(c.eval_parts),
        "--eval-views", str(c.eval_views),  # not the wide card's recipe of 10
        "--edge-dropout", str(c.edge_dropout), "--input-dropout", str(c.input_dropout),
        "--dataset", c.dataset, "--dataset-option", "num_nodes=300", "--device", "cpu", "--epochs", str(c.epochs),
        "--nproc", "2", "--threads", "1", "--dist-timeout", "60", "--out", str(out),
    ]  # fmt: skip
    tic = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "revgnn_dgl", "train", *args],
        env=subprocess_env(REVGNN_DGL_FAULT="rank1-epoch3:1:kill"), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return {"out": out, "proc": proc, "seconds": time.monotonic() - tic}


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory, killed_run: Dict[str, Any]) -> Dict[str, Any]:
    """The 2-rank job's results on each rank, and where its runs are."""
    out = tmp_path_factory.mktemp("ddp")
    results = spawn(job, 2, str(out), str(killed_run["out"]), threads=1, timeout_s=120)
    return {"out": out, "ranks": results}


# ---------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", list(STEP_MODELS))
def test_one_step_equals_mean_loss_step(ddp: Dict[str, Any], name: str) -> None:
    rank0, rank1 = (r["steps"][name] for r in ddp["ranks"])
    reference = mean_loss_step(name)
    one_process = one_step(Context(), name, parts_per_step=2)
    moved = max_diff(reference, one_step(Context(), name, 1)["params"])  # two steps, one per part
    diffs = (max_diff(rank0["params"], reference), max_diff(rank0["params"], one_process["params"]))
    print(f"{name}: |2 ranks - mean-loss step| = {diffs[0]:.2e}, |2 ranks - parts_per_step=2| = {diffs[1]:.2e}")
    assert max_diff(rank0["params"], rank1["params"]) == 0.0  # DDP keeps the replicas identical
    assert diffs[0] <= 1e-6 and diffs[1] <= 1e-6
    assert moved > 1e-3  # the step on one part is far from the step on the mean: the check has teeth
    assert rank0["loss"] == pytest.approx(one_process["loss"], abs=1e-6)
    if name == "revgnn":
        model = create_model("wide", num_layers=3, hidden=16)
        assert all(not m.disable for m in model.modules() if isinstance(m, GroupRevRes))


@pytest.mark.parametrize("name", list(STEP_MODELS))
def test_each_gradient_is_accumulated_once_per_step(ddp: Dict[str, Any], name: str) -> None:
    # DDP's hook sits on the AccumulateGrad node these counts come from: exactly one firing per
    # parameter and step, also for WT-RevGNN's block that every layer reuses. (A gradient reduced
    # twice or missed would also break the equality of the test above, and DDP itself raises
    # on a double mark; find_unused_parameters=False raises on a missed one.)
    for rank in ddp["ranks"]:
        fired = rank["steps"][name]["fired"]
        assert set(fired.values()) == {1}, {k: v for k, v in fired.items() if v != 1}


def test_a_parameter_without_gradient_stops_the_step(ddp: Dict[str, Any]) -> None:
    for rank in ddp["ranks"]:
        assert "unused_probe" in rank["unused_error"] and "no gradient" in rank["unused_error"]


@pytest.mark.parametrize("name", list(MODELS))
def test_two_ranks_equal_one_process_with_two_parts_per_step(ddp: Dict[str, Any], tmp_path: Path, name: str) -> None:
    reference = tmp_path / name
    jobs = Path(__file__).resolve().parents[1] / "ddp_jobs.py"
    done = subprocess.run([sys.executable, str(jobs), "reference", name, str(reference)], env=subprocess_env(OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    two = ddp["out"] / name
    a, b = load_checkpoint(two / LAST_FILE).state_dict, load_checkpoint(reference / LAST_FILE).state_dict
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"{name}: 3 epochs, |2 ranks - 1 process with parts_per_step=2| = {diff:.2e}")
    assert a.keys() == b.keys() and diff <= 1e-5
    for x, y in zip(read_metrics(two), read_metrics(reference)):
        assert x["epoch"] == y["epoch"]
        for key in ("loss", "val", "test"):
            assert x[key] == pytest.approx(y[key], abs=1e-5), (x["epoch"], key)


def test_the_selfcheck_step_through_the_distributed_path(ddp: Dict[str, Any]) -> None:
    single = selfcheck._one_step(Context(), "cpu", 2, 2)
    for rank in ddp["ranks"]:
        assert max_diff(rank["selfcheck"], single) <= selfcheck.DDP_TOLERANCE


def test_an_error_on_rank_0_stops_every_rank(ddp: Dict[str, Any]) -> None:
    (type0, message0), (type1, message1) = (r["overwrite_error"] for r in ddp["ranks"])
    assert type0 == "ConfigError" and "already holds a run" in message0
    # Refused in the run directory's step, after the data and the model were checked (docs/architecture.md).
    assert type1 == "PeerFailedError" and message1.startswith("rank 0 of 2 failed while preparing the run directory: ")
    assert message0 in message1


def test_only_rank_0_writes(ddp: Dict[str, Any]) -> None:
    for name in MODELS:
        run = ddp["out"] / name
        assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3]  # both ranks writing would double them
        names = sorted(p.name for p in run.iterdir())
        assert names == sorted({CONFIG_FILE, METRICS_FILE, LAST_FILE, STATE_FILE, BEST_FILE, SUMMARY_FILE, LOCK_FILE})
        assert TrainConfig.from_file(run / CONFIG_FILE).nproc == 2


def test_killed_rank_stops_the_job_with_one_line(killed_run: Dict[str, Any]) -> None:
    proc = killed_run["proc"]
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: rank 1 of 2 was killed by signal SIGKILL"], proc.stderr
    print(f"killed job ended after {killed_run['seconds']:.1f} s (process start-up included)")


def test_resume_after_kill_equals_uninterrupted_run(ddp: Dict[str, Any], killed_run: Dict[str, Any]) -> None:
    resumed, straight = killed_run["out"], ddp["out"] / "revgnn"
    a, b = (
        TrainConfig.from_file(resumed / CONFIG_FILE).to_dict(),
        TrainConfig.from_file(straight / CONFIG_FILE).to_dict(),
    )
    assert {**a, "out": None, "threads": None} == {**b, "out": None, "threads": None}  # the same recipe
    ra, rb = read_metrics(resumed), read_metrics(straight)
    assert [r["epoch"] for r in ra] == [1, 2, 3]
    for x, y in zip(ra, rb):
        for key in ("loss", "val", "test"):
            assert x[key] == pytest.approx(y[key], abs=1e-6), (x["epoch"], key)
    wa, wb = load_checkpoint(resumed / LAST_FILE).state_dict, load_checkpoint(straight / LAST_FILE).state_dict
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-6


def test_resume_refuses_another_world_size(killed_run: Dict[str, Any], tmp_path: Path) -> None:
    out = killed_run["out"]  # trained by 2 processes
    result = CliRunner().invoke(cli, ["train", "--resume", str(out), "--nproc", "3"])
    assert result.exit_code == 1 and "--nproc 2" in result.output, result.output
    config = TrainConfig.from_file(out / CONFIG_FILE)
    with pytest.raises(ConfigError, match="nproc is 2 but this is one process"):
        train(config, resume=True)
    with pytest.raises(ConfigError, match="trained by 2 process"):
        train(config.updated({"nproc": 1}), resume=True)
    assert TrainConfig.from_file(out / CONFIG_FILE) == config  # untouched
    # The saved state knows its configuration too, whatever a config.yaml beside it says.
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / STATE_FILE).write_bytes((out / STATE_FILE).read_bytes())
    with pytest.raises(ConfigError, match="nproc: saved 2, now 1"):
        train(config.updated({"nproc": 1, "out": str(moved)}), resume=True)


def test_torchrun_rank_failure_stops_the_job_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    port = free_port()
    c = run_config("revgnn")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(port), "--monitor-interval", "1",
        "-m", "revgnn_dgl", "train", "--model", c.model, "--num-layers", "2", "--hidden", "16",
        "--train-parts", "4", "--eval-parts", "2", "--dataset", c.dataset, "--dataset-option", "num_nodes=300",
        "--device", "cpu", "--epochs", "3", "--threads", "1", "--dist-timeout", "60", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(
        command,
        env=subprocess_env(REVGNN_DGL_FAULT="rank1-epoch2:1:raise"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    assert "Error: rank 1 of 2: RuntimeError: injected failure (REVGNN_DGL_FAULT=rank1-epoch2:1:raise)" in lines, (
        proc.stderr
    )
    # Rank 0 wrote epoch 1 alone, and the run stopped in epoch 2.
    assert [r["epoch"] for r in read_metrics(out)] == [1]
    assert TrainConfig.from_file(out / CONFIG_FILE).nproc == 2


# ---------------------------------------------------------------------- one process, no job
def test_parts_per_step_in_one_process_is_the_mean_loss_step() -> None:
    step = one_step(Context(), "revgnn", parts_per_step=2)
    assert max_diff(step["params"], mean_loss_step("revgnn")) <= 1e-6
