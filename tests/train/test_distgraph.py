"""Training on a partitioned graph through DGL's graph servers (DistDGL), on 127.0.0.1 with gloo.

The step check spawns 2 trainers beside 2 graph servers (a main and a backup) and compares the
weights after one optimizer step with one process holding the graph, in float64. The slow tests
run the command itself: a short run, a run whose trainer is killed with SIGKILL, and its resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch
from ddp_jobs import subprocess_env
from distgraph_jobs import dist_step, make_partition, reference_step
from grad_check import assert_gradients_match

from revgnn_dgl.data import load_dataset
from revgnn_dgl.data.partitions import partition_dataset
from revgnn_dgl.errors import ConfigError, DistributedError
from revgnn_dgl.train import TrainConfig
from revgnn_dgl.train.distgraph import HOST_LOCK, _host_lock, graph_servers
from revgnn_dgl.train.distributed import spawn
from revgnn_dgl.zoo.checkpoint import load_checkpoint


def test_two_trainer_step_equals_one_process_step(tmp_path: Path) -> None:
    config_path = make_partition(tmp_path / "parts")
    job = TrainConfig(partitions=config_path, nproc=2, servers=2)
    with graph_servers(job):
        ranks = spawn(dist_step, 2, config_path, threads=1, timeout_s=120)
    reference = reference_step(config_path)
    for name, value in reference["before"].items():  # the same initial weights everywhere
        assert (ranks[0]["before"][name] == value).all() and (ranks[1]["before"][name] == value).all()
    want = {k: torch.from_numpy(reference["after"][k] - reference["before"][k]) for k in reference["after"]}
    for rank in ranks:
        # The updates (SGD, lr 1: minus the averaged gradients) with the shared float64 check.
        got = {k: torch.from_numpy(rank["after"][k] - rank["before"][k]) for k in reference["after"]}
        assert_gradients_match(got, want)
    for name in reference["after"]:  # DDP keeps the replicas identical
        assert (ranks[0]["after"][name] == ranks[1]["after"][name]).all()


def test_one_machine_serves_one_partition(tmp_path: Path) -> None:
    ds = load_dataset("synthetic-proteins", num_nodes=100)
    config_path = partition_dataset(ds, 2, tmp_path / "two", method="random")["config"]
    with pytest.raises(ConfigError, match="one partition per machine"):
        with graph_servers(TrainConfig(partitions=config_path, nproc=2)):
            pass


def test_fewer_parts_than_trainers_is_one_line_before_any_process(tmp_path: Path) -> None:
    from revgnn_dgl.train import launch

    config_path = make_partition(tmp_path / "parts")
    config = TrainConfig(partitions=config_path, nproc=2, train_parts=1, out=str(tmp_path / "run"), device="cpu")
    with pytest.raises(ConfigError, match="--train-parts 1 is fewer than the 2 parts"):
        launch(config)
    assert not (tmp_path / "run").exists() and not _servers_left()


def test_a_second_job_on_the_machine_is_refused(tmp_path: Path) -> None:
    config_path = make_partition(tmp_path / "parts")
    with _host_lock():
        with pytest.raises(DistributedError, match="another DistDGL job"):
            with graph_servers(TrainConfig(partitions=config_path, nproc=1)):
                pass
    assert HOST_LOCK.exists()


# ---------------------------------------------------------------------- the command
ARGS = ["--model", "wide", "--num-layers", "2", "--hidden", "16", "--dropout", "0.2", "--epochs", "4",
        "--train-parts", "4", "--eval-parts", "2", "--lr", "0.01", "--nproc", "2", "--servers", "2",
        "--threads", "1", "--device", "cpu"]  # fmt: skip


def _train(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "revgnn_dgl", "train", *args], env=subprocess_env(**env),
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _servers_left() -> List[str]:
    """Processes of this user still running a graph server of the project."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"revgnn_dgl.train.distgraph" in (entry / "cmdline").read_bytes():
                found.append(entry.name)
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory: pytest.TempPathFactory) -> str:
    ds = load_dataset("synthetic-proteins", num_nodes=600)
    return partition_dataset(ds, 1, tmp_path_factory.mktemp("dist") / "parts", dataset_options={"num_nodes": 600})[
        "config"
    ]


@pytest.fixture(scope="module")
def whole_run(partitioned: str, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    out = tmp_path_factory.mktemp("whole") / "run"
    tic = time.monotonic()
    proc = _train("--partitions", partitioned, *ARGS, "--out", str(out))
    return {"proc": proc, "out": out, "seconds": time.monotonic() - tic}


@pytest.mark.slow
def test_short_run_trains_writes_once_per_epoch_and_ends(whole_run: Dict[str, Any]) -> None:
    proc, out = whole_run["proc"], whole_run["out"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]  # rank 0 alone writes: one line per epoch
    assert all(0 <= r["val"] <= 1 and r["loss"] > 0 for r in records)
    assert records[-1]["loss"] < records[0]["loss"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"][0]["epochs"] == 4 and "--partitions" in summary["command"]
    config = (out / "config.yaml").read_text()
    assert "partitions:" in config and "dataset: synthetic-proteins" in config
    assert not _servers_left()
    # The collective evaluation scores as one process holding the graph does, on the same parts.
    scored = subprocess.run([sys.executable, "-m", "revgnn_dgl", "evaluate", "--run", str(out), "--json"],
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-2000:]
    scores = json.loads(scored.stdout.strip().splitlines()[-1])
    best = summary["runs"][0]
    assert abs(scores["val"] - best["val"]) < 1e-6 and abs(scores["test"] - best["test"]) < 1e-6


@pytest.mark.slow
def test_killed_trainer_gives_one_line_and_resumes_exactly(partitioned: str, whole_run: Dict[str, Any],
                                                           tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "killed"
    proc = _train("--partitions", partitioned, *ARGS, "--out", str(out), REVGNN_DGL_FAULT="rank1-epoch3:1:kill")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: rank 1 of 2 was killed by signal SIGKILL"], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not _servers_left()
    assert not [p for p in Path("/dev/shm").glob("*-kvdata-")]  # the killed job's shared memory is gone
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    resumed = _train("--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert whole_run["proc"].returncode == 0
    a = load_checkpoint(out / "last.safetensors").state_dict
    b = load_checkpoint(whole_run["out"] / "last.safetensors").state_dict
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 4
    assert not _servers_left()


@pytest.mark.slow
def test_ctrl_c_stops_trainers_and_servers(partitioned: str, tmp_path: Path) -> None:
    import signal

    out = tmp_path / "interrupted"
    args = [a if a != "4" else "200" for a in ARGS]  # --epochs 200: still training when Ctrl-C comes
    proc = subprocess.Popen([sys.executable, "-m", "revgnn_dgl", "train", "--partitions", partitioned, *args,
                             "--out", str(out)], env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (
        (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text()
    ):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "--resume" in stderr and "Traceback" not in stderr
    assert not _servers_left()
    assert not [p for p in Path("/dev/shm").glob("*-kvdata-")]


@pytest.mark.slow
def test_a_command_killed_by_sigkill_leaves_no_graph_server(partitioned: str, tmp_path: Path) -> None:
    # The servers run in their own session (Ctrl-C is the command's to handle): only the OS's
    # parent-death signal can end them when the command dies without its cleanup.
    import signal

    out = tmp_path / "killed"
    args = [a if a != "4" else "200" for a in ARGS]
    shared_before = set(Path("/dev/shm").iterdir())
    proc = subprocess.Popen([sys.executable, "-m", "revgnn_dgl", "train", "--partitions", partitioned, *args,
                             "--out", str(out)], env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "the run never wrote an epoch"
            time.sleep(0.5)
        assert _servers_left()
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 60
        while _servers_left() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _servers_left()
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], capture_output=True)  # its trainers, if any are left
        for pid in _servers_left():  # so that a failure here leaves no server for the next tests
            os.kill(int(pid), signal.SIGKILL)
        for path in set(Path("/dev/shm").iterdir()) - shared_before:  # what no cleanup ran to remove
            path.unlink(missing_ok=True)
