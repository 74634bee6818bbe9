"""Multi-process runs end: every clean 2-process run exits 0 soon after its last write, through
torchrun and through ``--nproc 2``; SIGINT and SIGTERM to the launcher stop every process, exit
130 / 143, and leave a run that ``--resume`` finishes with the weights of an uninterrupted one.

Before, 7 of 11 torchrun runs hung after writing summary.json: gloo's process-group destructor
(torch 2.2) joins a thread that waits for the GIL. The bound below is a hang detector, not a
speed assertion.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest
import torch
from ddp_jobs import subprocess_env

from revgnn_dgl.train import BEST_FILE, LAST_FILE, SUMMARY_FILE, read_metrics
from revgnn_dgl.train.distributed import free_port
from revgnn_dgl.zoo.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

#: Seconds a finished run may take to exit after its summary is written: a hang detector.
EXIT_BOUND_S = 60
TINY = ["--model", "wide", "--num-layers", "2", "--hidden", "8", "--train-parts", "2", "--eval-parts", "1",
        "--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=120", "--device", "cpu",
        "--threads", "1", "--dist-timeout", "60"]  # fmt: skip
#: Consecutive clean runs per launcher.
REPEATS = int(os.environ.get("REVGNN_DGL_EXIT_REPEATS", "20"))


def _torchrun(args: List[str]) -> List[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
            "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "--monitor-interval", "1",
            "-m", "revgnn_dgl", "train", *args]  # fmt: skip


def _nproc(args: List[str]) -> List[str]:
    return [sys.executable, "-m", "revgnn_dgl", "train", "--nproc", "2", *args]


def _run_and_time_exit(command: List[str], out: Path) -> float:
    """Run ``command`` to its end; the seconds between summary.json appearing and the exit."""
    proc = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    summary, written = out / SUMMARY_FILE, None
    deadline = time.monotonic() + 240
    while proc.poll() is None:
        if written is None and summary.exists():
            written = time.monotonic()
        now = time.monotonic()
        if now > deadline or (written is not None and now - written > EXIT_BOUND_S):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"{' '.join(command[-6:])}: still running {now - (written or now):.0f} s after its summary")
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-2000:]
    assert summary.exists() and f"outputs in {out}" in stdout, stdout[-1000:]
    return time.monotonic() - (written or time.monotonic())


@pytest.mark.parametrize("launcher", ["torchrun", "nproc"])
def test_consecutive_two_process_runs_all_exit(tmp_path: Path, launcher: str) -> None:
    build = _torchrun if launcher == "torchrun" else _nproc
    lags = []
    for i in range(REPEATS):
        out = tmp_path / f"run{i}"
        lags.append(_run_and_time_exit(build([*TINY, "--epochs", "1", "--out", str(out)]), out))
        assert [r["epoch"] for r in read_metrics(out)] == [1]
    print(f"\n{launcher}: {REPEATS} runs, exit {max(lags):.2f} s at most after the summary")


def _start_and_interrupt(command: List[str], out: Path, sig: int) -> subprocess.CompletedProcess:
    """Start a long run, send ``sig`` to the launcher once epoch 2 is written, wait for the whole job to end."""
    proc = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while len(read_metrics(out)) < 2 if (out / "metrics.jsonl").exists() else True:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the run never reached epoch 2"
        time.sleep(0.05)
    proc.send_signal(sig)
    try:
        stdout, stderr = proc.communicate(timeout=EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the launcher did not end within {EXIT_BOUND_S} s of {signal.Signals(sig).name}")
    # No rank survives its launcher (they share its session); helpers such as multiprocessing's
    # resource tracker may take a moment to see their parent gone.
    leftovers: List[str] = []
    for _ in range(50):
        leftovers = subprocess.run(
            ["pgrep", "-a", "-s", str(proc.pid)], capture_output=True, text=True
        ).stdout.splitlines()
        if not leftovers:
            break
        time.sleep(0.1)
    assert not leftovers, f"processes left after {signal.Signals(sig).name}: {leftovers}"
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupting_the_launcher_stops_every_rank_and_resumes_exactly(tmp_path: Path, sig: int, code: int) -> None:
    reference = tmp_path / "reference"
    subprocess.run(_nproc([*TINY, "--epochs", "6", "--out", str(reference)]), env=subprocess_env(), check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    out = tmp_path / "interrupted"
    done = _start_and_interrupt(_nproc([*TINY, "--epochs", "40", "--out", str(out)]), out, sig)
    assert done.returncode == code, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Interrupted (") and "lost" in lines[-1], done.stderr[-2000:]
    assert f"--resume {out}" in lines[-1] and "Traceback" not in done.stderr
    kept = len(read_metrics(out))
    assert kept >= 2
    # Resume to the reference's 6 epochs (or past them, if the run got further): the weights of an uninterrupted run.
    target = max(6, kept)
    if target > 6:
        subprocess.run(_nproc([*TINY, "--epochs", str(target), "--out", str(reference / "longer")]), env=subprocess_env(),
                       check=True, capture_output=True, timeout=300)  # fmt: skip
        reference = reference / "longer"
    resumed = subprocess.run([sys.executable, "-m", "revgnn_dgl", "train", "--resume", str(out), "--epochs", str(target)],
                             env=subprocess_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for name in (LAST_FILE, BEST_FILE):
        ours, theirs = load_checkpoint(out / name).state_dict, load_checkpoint(reference / name).state_dict
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the OS's parent-death signal is Linux's")
def test_a_launcher_killed_by_sigkill_takes_its_ranks_with_it(tmp_path: Path) -> None:
    # SIGKILL runs no cleanup in the launcher: its ranks must end all the same, and the run resume.
    out = tmp_path / "killed"
    done = _start_and_interrupt(_nproc([*TINY, "--epochs", "200", "--out", str(out)]), out, signal.SIGKILL)
    assert done.returncode == -signal.SIGKILL
    more = str(len(read_metrics(out)) + 1)
    resumed = subprocess.run([sys.executable, "-m", "revgnn_dgl", "train", "--resume", str(out), "--epochs", more],
                             env=subprocess_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]


@pytest.mark.parametrize("rank", [0, 1])
def test_a_port_held_by_another_program_is_one_line_within_the_timeout(rank: int) -> None:
    """Rank 0 cannot bind a taken port; rank 1 meets a server that is no torch store and never
    answers. Both end with one line within --dist-timeout (and a margin), never a traceback."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # the kernel accepts connections; nothing ever speaks
        port = server.getsockname()[1]
        env = subprocess_env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                             MASTER_PORT=str(port))  # fmt: skip
        args = [a if a != "60" else "5" for a in TINY]  # --dist-timeout 5
        tic = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "revgnn_dgl", "train", *args, "--epochs", "1"], env=env,
                              capture_output=True, text=True, timeout=120, cwd=str(Path(__file__).parent))  # fmt: skip
        seconds = time.monotonic() - tic
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"Error: rank {rank} of 2") and str(port) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert seconds < 5 + 5 + 30, seconds  # the timeout, the watchdog's margin, and start-up on a busy machine
