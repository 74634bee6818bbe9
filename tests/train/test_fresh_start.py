"""A fresh ``train`` removes, when it fails to start, only what it created (issue 34, issue 33).

A second command refused by the lock leaves the holder's run alone; a ``--runs N`` into a folder
holding a finished ``run-K``, or any file of the trainer's names, is refused before anything is
written unless ``--overwrite``; an interrupted ``--runs N`` writes the summary of its finished
seeds; the command that started a rank 0 stopped by a signal undoes what it wrote; the counts a
command line can ask for are bounded before any process starts.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, List

import pytest
from click.testing import CliRunner
from suite_env import TINY_TRAIN_ARGS, interrupt_group_when

from revgnn_dgl.cli import cli
from revgnn_dgl.train import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, TrainConfig, read_metrics, train
from revgnn_dgl.train.rundir import LOCK_FILE, FreshStart, RunLock

REPO = Path(__file__).resolve().parents[2]
TINY = TINY_TRAIN_ARGS
TINY_CONFIG = dict(model="wide", dataset="synthetic-proteins", dataset_options={"num_nodes": 200}, num_layers=2,
                   hidden=8, train_parts=2, eval_parts=1, device="cpu", threads=1)  # fmt: skip


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def snapshot(folder: Path) -> Dict[str, str]:
    """Every entry under ``folder``: a file's sha256, a folder's mark."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}  # fmt: skip


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def quiet(line: str) -> None:
    """Swallow progress lines."""


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``--runs 2``, as its run-K folders alone (out's own config.yaml and summary gone)."""
    out = tmp_path_factory.mktemp("finished") / "D"
    result = invoke("train", *TINY, "--epochs", "2", "--runs", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    (out / CONFIG_FILE).unlink()
    (out / SUMMARY_FILE).unlink()
    return out


def copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------ the holder of a run loses nothing
def test_a_command_refused_by_the_lock_leaves_the_holders_run_alone(tmp_path: Path, monkeypatch) -> None:
    """The holder has locked, signed and written config.yaml and an empty metrics.jsonl, as a real run
    in its first epoch: a second command is refused and removes none of it, and so is a third.

    Two commands started at once both find the folder empty in the check before the lock (the race
    of the issue): that first check is made to pass here, so that the lock is what refuses."""
    from revgnn_dgl.train import loop

    monkeypatch.setattr(loop, "refuse_existing_run", lambda config, overwrite=False: None)
    out = tmp_path / "LR2"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from pathlib import Path
            from revgnn_dgl.train.rundir import RunLock
            with RunLock({str(out)!r}):
                Path({str(out)!r}, "config.yaml").write_text("model: wide\\n")
                Path({str(out)!r}, "metrics.jsonl").write_text("")
                print("locked", flush=True)
                sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(out)
        assert set(before) == {LOCK_FILE, CONFIG_FILE, METRICS_FILE}
        for _ in range(2):  # the second command, then a third: both refused
            line = one_error_line(invoke("train", *TINY, "--epochs", "1", "--out", str(out)))
            assert f"in use by another revgnn-dgl process (pid {holder.pid})" in line
            assert snapshot(out) == before
        with pytest.raises(Exception, match=f"pid {holder.pid}"):  # the API, too
            train(TrainConfig(**TINY_CONFIG, epochs=1, out=str(out)), progress=False)
        assert snapshot(out) == before
    finally:
        holder.communicate("\n", timeout=30)


# ------------------------------------------------------------------ a finished run-K survives
@pytest.mark.parametrize("how", ["failed", "successful", "overlapping"])
def test_a_finished_run_k_survives_a_runs_n_into_the_same_out(tmp_path: Path, finished_runs: Path, how: str) -> None:
    out = copy_tree(finished_runs, tmp_path / "D")
    before = snapshot(out)
    assert len(read_metrics(out / "run-0")) == 2
    extra = {"failed": ["--lr", "1e30", "--grad-clip", "0", "--runs", "2"], "successful": ["--runs", "2"],
             "overlapping": ["--runs", "3"]}[how]  # fmt: skip
    line = one_error_line(invoke("train", *TINY, "--epochs", "1", *extra, "--out", str(out)))
    assert f"{out} already holds a run" in line and "run-0" in line and "--overwrite" in line
    assert snapshot(out) == before


def test_an_interrupted_runs_n_into_a_finished_out_changes_nothing(tmp_path: Path, finished_runs: Path) -> None:
    out = copy_tree(finished_runs, tmp_path / "D")
    before = snapshot(out)

    def stop(record: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(Exception, match="already holds a run"):
        train(TrainConfig(**TINY_CONFIG, epochs=1, runs=2, out=str(out)), progress=False, on_epoch=stop)
    assert snapshot(out) == before


def test_overwrite_replaces_the_finished_runs(tmp_path: Path, finished_runs: Path) -> None:
    out = copy_tree(finished_runs, tmp_path / "D")
    result = invoke("train", *TINY, "--epochs", "1", "--runs", "2", "--overwrite", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert [len(read_metrics(out / f"run-{k}")) for k in (0, 1)] == [1, 1]
    usage = invoke("train", "--resume", str(out), "--overwrite")
    assert usage.exit_code == 2 and "give one of them" in usage.output


@pytest.mark.parametrize("name", ["summary.json", "best.safetensors", "state.safetensors"])
def test_a_foreign_file_of_a_trainer_name_is_refused_unless_overwrite(tmp_path: Path, name: str) -> None:
    out = tmp_path / "theirs"
    out.mkdir()
    (out / name).write_bytes(b"someone's results\n")
    (out / "notes.txt").write_text("mine\n")
    before = snapshot(out)
    line = one_error_line(invoke("train", *TINY, "--epochs", "1", "--out", str(out)))
    assert f"{out} holds files of the names the trainer writes ({name})" in line and "--overwrite" in line
    assert snapshot(out) == before
    assert invoke("train", *TINY, "--epochs", "1", "--overwrite", "--out", str(out)).exit_code == 0
    assert (out / name).read_bytes() != b"someone's results\n" and (out / "notes.txt").read_text() == "mine\n"


# ------------------------------------------------------------------ issue 33: what an interrupted start leaves
def test_an_interrupted_runs_n_writes_the_summary_of_the_finished_seeds(tmp_path: Path) -> None:
    out = tmp_path / "three"
    config = TrainConfig(**TINY_CONFIG, epochs=2, runs=3, seed=5, out=str(out))

    def stop_in_the_second_run(record: dict) -> None:
        if record["seed"] == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False, on_epoch=stop_in_the_second_run)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert [r["seed"] for r in summary["runs"]] == [5] and summary["runs_planned"] == 3
    assert summary["val"]["mean"] == summary["runs"][0]["val"]
    # --resume finishes the others and writes the whole summary.
    done = train(config, resume=True, progress=False)
    assert [r["seed"] for r in done["runs"]] == [5, 6, 7]
    assert "runs_planned" not in json.loads((out / SUMMARY_FILE).read_text())


def _killed_rank_0(out: Path) -> None:
    """A rank 0 that locked, signed and wrote config.yaml and an empty metrics.jsonl, then was SIGKILLed."""
    with RunLock(out):
        (out / CONFIG_FILE).write_text("model: wide\n")
        (out / METRICS_FILE).write_text("")
        os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("made", [False, True])
def test_the_command_undoes_what_its_killed_rank_0_wrote(tmp_path: Path, made: bool) -> None:
    out = tmp_path / "ranks"
    if made:  # a folder the user made stays, with the user's files
        out.mkdir()
        (out / "notes.txt").write_text("mine\n")
    config = TrainConfig(**TINY_CONFIG, nproc=2, out=str(out))
    start = FreshStart(config)
    rank = multiprocessing.get_context("fork").Process(target=_killed_rank_0, args=(out,))
    rank.start()
    rank.join(30)
    assert rank.exitcode == -signal.SIGKILL and (out / CONFIG_FILE).exists()
    start.undo_after_ranks()
    assert not out.exists() if not made else sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_the_command_leaves_a_run_another_command_holds_or_wrote(tmp_path: Path) -> None:
    out = tmp_path / "other"
    config = TrainConfig(**TINY_CONFIG, nproc=2, out=str(out))
    start = FreshStart(config)
    # Another command's rank 0 (not a child of this process) signed the lock and wrote: not ours to remove.
    out.mkdir()
    (out / LOCK_FILE).write_text("999999\n1\n")
    (out / CONFIG_FILE).write_text("model: wide\n")
    before = snapshot(out)
    start.undo_after_ranks()
    assert snapshot(out) == before
    with RunLock(out, sign=True):  # held: not touched either (signed by this very process, as a rank would not be)
        start.undo_after_ranks()
    assert set(snapshot(out)) == set(before)


def _pgid_processes(pgid: int) -> List[str]:
    return subprocess.run(["pgrep", "-a", "-g", str(pgid)], capture_output=True, text=True).stdout.splitlines()


@pytest.mark.slow
def test_ctrl_c_before_epoch_1_of_nproc_2_leaves_nothing_that_blocks_the_same_command(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) once rank 0 has written config.yaml, in a first
    epoch that takes seconds: exit 130 with one line, no process left, the same command not refused."""
    out = tmp_path / "nproc2"
    args = [sys.executable, "-m", "revgnn_dgl", "train", *[a if a != "num_nodes=200" else "num_nodes=30000" for a in TINY],
            "--hidden", "64", "--num-layers", "6", "--epochs", "1", "--nproc", "2", "--dist-timeout", "60",
            "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    stderr = interrupt_group_when(proc, out / CONFIG_FILE, within_s=180, wait_s=60)
    assert proc.returncode == 130, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    for _ in range(50):
        if not _pgid_processes(proc.pid):
            break
        time.sleep(0.1)
    assert not _pgid_processes(proc.pid)
    if (out / METRICS_FILE).exists() and read_metrics(out):
        pytest.skip("epoch 1 finished before the interrupt on this machine: a resumable run is kept, rightly")
    assert lines[0].startswith("Interrupted before the first epoch finished"), lines
    assert not out.exists() or not {CONFIG_FILE, METRICS_FILE} & {p.name for p in out.iterdir()}


# ------------------------------------------------------------------ counts bounded before any process starts
def _shm() -> set:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.mark.parametrize("args, figure", [
    (["train", *TINY, "--nproc", "100000"], "--nproc 100000 would start 100000 processes"),
    (["train", *TINY, "--nproc", "300"], "--nproc 300 would start 300 processes"),
    (["train", *TINY, "--runs", "1000000000"], "runs must be in [1, 1000], got 1000000000"),
    (["train", *TINY, "--nproc", "2", "--dist-timeout", "inf"], "positive number of seconds up to 604800"),
    (["train", *TINY, "--nproc", "2", "--dist-timeout", "1e308"], "positive number of seconds up to 604800"),
])  # fmt: skip
def test_each_count_is_bounded_before_any_process_starts(tmp_path: Path, args: List[str], figure: str) -> None:
    shm = _shm()
    out = tmp_path / "bounded"
    line = one_error_line(invoke(*args, "--out", str(out)))
    assert figure in line, line
    assert not multiprocessing.active_children() and not out.exists()
    assert not {name for name in _shm() - shm if name.startswith("sem.loky")}


def test_nan_timeout_is_refused(tmp_path: Path) -> None:
    line = one_error_line(invoke("train", *TINY, "--nproc", "2", "--dist-timeout", "nan", "--out", str(tmp_path / "o")))
    assert "positive number of seconds up to 604800" in line and "nan" in line
    assert not multiprocessing.active_children() and not (tmp_path / "o").exists()


def test_servers_are_counted_with_the_ranks(tmp_path: Path) -> None:
    from revgnn_dgl.errors import ConfigError
    from revgnn_dgl.train import launch

    config = TrainConfig(
        **TINY_CONFIG, nproc=2, servers=1000, partitions=str(tmp_path / "g.json"), out=str(tmp_path / "o")
    )
    with pytest.raises(ConfigError, match="--nproc 2 and --servers 1000 would start 1002 processes"):
        launch(config)
    assert not multiprocessing.active_children()


def test_a_launchers_variable_that_is_no_number_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RANK": "abc", "LOCAL_RANK": "0", "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "revgnn_dgl", "train", *TINY, "--epochs", "1", "--out",
                           str(tmp_path / "o")], env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[-1].startswith("Error: ") and "RANK='abc'" in lines[-1]
