"""Two machines for real: jobs across emulated hosts (``tests/hosts.py``), with faults.

Each host is a network namespace with its own address, hostname and /dev/shm, joined to the
others by a bridge in a namespace of its own; every address used here exists only inside the
namespaces the test made, and the ``emulated_hosts`` fixture removes them after the test, also
when it fails. Where namespaces cannot be made the tests skip (fail in CI) with the reason.

The torchrun tests run the README's two-machine command, one per host, unchanged but for CPU
(``--nproc-per-node 1 --device cpu``): it trains and equals one process with
``--parts-per-step 2`` bit for bit; a rank SIGKILLed on one host, or one host's link taken
down mid-epoch, ends the command on every host within ``--dist-timeout`` plus a margin, with one
``Error:`` line naming the lost host, nothing left running on either host, and ``--resume``
ends with the weights of the uninterrupted run. Through a slow link that drops packets
(``tc ... tbf``, since this kernel has no ``sch_netem``; the netem test skips here), training
ends with the same weights.

The DistDGL tests run the per-machine command (``--partitions ... --ip-config ...``) on each host
over 2 METIS partitions: one step equals the one-process step (float64, the shared check), every
node's features read across hosts equal the source graph's, a 6-epoch run writes only on rank
0's host and ``evaluate --run`` reproduces its scores; a killed trainer and a cut link end the job
on both hosts and ``--resume`` is bit-exact.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence

import pytest
import torch
from ddp_jobs import subprocess_env
from hosts import EmulatedHosts, Host, netem_unavailable, sweep

from revgnn_dgl.train import read_metrics
from revgnn_dgl.zoo.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

#: Seconds a lost host may take to end the job beyond --dist-timeout: process start-up of torchrun's
#: agent after its child ended, and a loaded 2-core machine (measured: 4 s at load 6).
MARGIN_S = 30.0
DIST_TIMEOUT = 20
RECIPE = ["--model", "wide", "--num-layers", "3", "--hidden", "16", "--dropout", "0.3", "--train-parts", "5",
          "--eval-parts", "2", "--lr", "0.01", "--edge-dropout", "0.1", "--input-dropout", "0.1",
          "--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=300", "--device", "cpu",
          "--threads", "1"]  # fmt: skip


# ---------------------------------------------------------------------- the emulated hosts themselves
def test_hosts_are_separate_machines_and_leave_nothing(emulated_hosts) -> None:
    hosts = emulated_hosts(2)
    a, b = hosts[0], hosts[1]
    assert (a.address, b.address) == ("10.213.0.1", "10.213.0.2")
    assert a.run(["hostname"]).stdout.strip() == "h0" and b.run(["hostname"]).stdout.strip() == "h1"
    resolve = [sys.executable, "-c", "import socket; print(socket.gethostbyname(socket.gethostname()))"]
    assert a.run(resolve).stdout.strip() == a.address  # what gloo offers its peers
    assert hosts.ping(0, 1) and hosts.ping(1, 0)
    # Each host's /dev/shm is its own: DGL's shared memory of one is invisible to the other.
    a.run(["sh", "-c", "echo x > /dev/shm/rvgh-probe"])
    assert a.shared_memory() == ["rvgh-probe"] and b.shared_memory() == []
    assert not Path("/dev/shm/rvgh-probe").exists()
    sleeper = b.popen(["sleep", "600"])
    assert sleeper.pid and b.pids()
    names = hosts.namespaces
    hosts.close()
    assert sleeper.wait(timeout=30) != 0  # killed with the host
    assert not set(names) & set(_netns())


def test_hosts_are_removed_after_a_failure_ctrl_c_and_sigkill(tmp_path: Path) -> None:
    _require_hosts()
    with pytest.raises(RuntimeError):
        with EmulatedHosts(2) as hosts:
            names = hosts.namespaces
            raise RuntimeError("a failing test")
    assert not set(names) & set(_netns())
    # Ctrl-C of the script beside the benchmarks while a command runs on each host: exit 130, all gone.
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "emulated_hosts.py"
    with _killed_at_the_end(script) as proc:
        prefix = f"rvgh-{proc.pid}-"
        _wait_for(lambda: sum(n.startswith(prefix) for n in _netns()) == 3 and _sleepers(proc.pid), 60)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert not [n for n in _netns() if n.startswith(prefix)] and not _sleepers(proc.pid)
    # SIGKILL: no teardown runs; the holders die with it, and the sweeper removes what is left.
    with _killed_at_the_end(script) as proc:
        prefix = f"rvgh-{proc.pid}-"
        _wait_for(lambda: sum(n.startswith(prefix) for n in _netns()) == 3 and _sleepers(proc.pid), 60)
        proc.kill()
        proc.wait(timeout=30)
        assert [n for n in _netns() if n.startswith(prefix)]  # left behind
        removed = sweep()
        assert len([n for n in removed if n.startswith(prefix)]) == 3
        assert not [n for n in _netns() if n.startswith(prefix)] and not _sleepers(proc.pid)
        assert not list(Path(tempfile.gettempdir()).glob(f"{prefix}*"))  # its folders too


@contextlib.contextmanager
def _killed_at_the_end(script: Path) -> Iterator[subprocess.Popen]:
    """``emulated_hosts.py -- sleep 600`` in its own session; whatever the test's outcome, the session
    is killed and its namespaces swept at the end (a failing test leaves no host behind)."""
    proc = subprocess.Popen([sys.executable, str(script), "--", "sleep", "600"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        sweep()


def test_where_namespaces_cannot_be_made_the_test_skips_or_fails_in_ci(tmp_path: Path) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text("def test_probe(emulated_hosts):\n    emulated_hosts(2)\n")
    conftest = Path(__file__).resolve().parents[1] / "conftest.py"
    (tmp_path / "conftest.py").write_text(conftest.read_text())
    for ci, expect in (("", "1 skipped"), ("true", "1 error")):  # pytest.fail in a fixture: an error
        env = subprocess_env(
            PATH="/nonexistent",
            CI=ci,
            PYTHONPATH=os.pathsep.join([str(conftest.parent), str(Path(__file__).resolve().parents[2])]),
        )
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:randomly", "-p", "no:cacheprovider",
                               str(probe)], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
        assert expect in done.stdout, done.stdout[-2000:]
        assert "emulated hosts need ip, nsenter, unshare, tc" in done.stdout, done.stdout[-2000:]


# ---------------------------------------------------------------------- torchrun across two hosts
def _torchrun(host: Host, master: str, out: Path, *args: str, epochs: int = 3, **env: str) -> subprocess.Popen:
    """The README's multi-machine command on ``host`` (CPU: one process per host)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(host.index),
               "--nproc-per-node", "1", "--master-addr", master, "--master-port", "29500",
               "-m", "revgnn_dgl", "train", *args]  # fmt: skip
    if "--resume" not in args:
        command += [*RECIPE, "--epochs", str(epochs), "--dist-timeout", str(DIST_TIMEOUT), "--out", str(out)]
    return host.popen(command, env=subprocess_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs: Sequence[subprocess.Popen], timeout: float) -> List[Dict[str, Any]]:
    tic = time.monotonic()
    done = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(1.0, timeout - (time.monotonic() - tic)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"a host's command did not end within {timeout:.0f} s: {err[-2000:]}")
        done.append({"code": proc.returncode, "out": out, "err": err, "seconds": time.monotonic() - tic})
    return done


def _weights(path: Path) -> Dict[str, torch.Tensor]:
    return load_checkpoint(path / "last.safetensors").state_dict


def _one_process(out: Path, epochs: int = 3) -> None:
    done = subprocess.run([sys.executable, "-m", "revgnn_dgl", "train", *RECIPE, "--epochs", str(epochs),
                           "--parts-per-step", "2", "--out", str(out)], env=subprocess_env(OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_torchrun_on_two_hosts_equals_one_process_with_two_parts_per_step(emulated_hosts, tmp_path: Path) -> None:
    hosts = emulated_hosts(2)
    rank0_out, other_out = tmp_path / "h0" / "run", tmp_path / "h1" / "run"
    procs = [_torchrun(hosts[0], hosts[0].address, rank0_out), _torchrun(hosts[1], hosts[0].address, other_out)]
    _one_process(tmp_path / "one")
    done = _finish(procs, 600)
    assert [d["code"] for d in done] == [0, 0], done[0]["err"][-2000:] + done[1]["err"][-2000:]
    assert not other_out.exists()  # only rank 0's host writes the run directory
    assert [r["epoch"] for r in read_metrics(rank0_out)] == [1, 2, 3]
    a, b = _weights(rank0_out), _weights(tmp_path / "one")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    for x, y in zip(read_metrics(rank0_out), read_metrics(tmp_path / "one")):
        assert (x["loss"], x["val"], x["test"]) == (y["loss"], y["val"], y["test"])
    assert not hosts[0].pids() and not hosts[1].pids()


def _started(out: Path, timeout: float = 300) -> None:
    _wait_for(lambda: (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().strip(), timeout)


def _trainers(host: Host) -> List[int]:
    found = []
    for pid in host.pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"revgnn_dgl" in cmdline and b"torch.distributed.run" not in cmdline and b"nsenter" not in cmdline:
            found.append(pid)
    return found


def _spawned(host: Host) -> List[int]:
    """The trainers the per-machine command started on ``host`` (torch.multiprocessing's spawned children)."""
    found = []
    for pid in host.pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.spawn" in cmdline and b"spawn_main" in cmdline:
            found.append(pid)
    return found


def _errors(done: Sequence[Dict[str, Any]]) -> List[List[str]]:
    return [[line for line in d["err"].splitlines() if line.startswith("Error:")] for d in done]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 6-epoch run the fault tests resume to: one process, two parts per step (bit-equal, above)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    _one_process(out, epochs=6)
    return out


def _resume_and_compare(hosts: EmulatedHosts, out: Path, uninterrupted: Path) -> None:
    kept = len(read_metrics(out))
    assert 1 <= kept < 6
    procs = [_torchrun(h, hosts[0].address, out, "--resume", str(out), "--dist-timeout", "120") for h in hosts]
    done = _finish(procs, 600)
    assert [d["code"] for d in done] == [0, 0], done[0]["err"][-2000:] + done[1]["err"][-2000:]
    assert [r["epoch"] for r in read_metrics(out)] == list(range(1, 7))
    a, b = _weights(out), _weights(uninterrupted)
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit


def _check_ended(hosts: EmulatedHosts, done: Sequence[Dict[str, Any]], limit: float) -> None:
    for d in done:
        assert d["code"] != 0 and d["seconds"] <= limit, (d["code"], d["seconds"], d["err"][-1500:])
    for host in hosts:
        assert not host.pids(), f"left running on {host.name}: {host.pids()}"
        assert host.shared_memory() == [], host.shared_memory()


def test_torchrun_rank_killed_on_one_host_ends_the_job_and_resumes(emulated_hosts, uninterrupted: Path,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    hosts = emulated_hosts(2)
    out = tmp_path / "run"
    procs = [_torchrun(h, hosts[0].address, out, epochs=6) for h in hosts]
    _started(out)
    killed = _trainers(hosts[1])
    assert len(killed) == 1
    os.kill(killed[0], signal.SIGKILL)
    done = _finish(procs, DIST_TIMEOUT + MARGIN_S)
    _check_ended(hosts, done, DIST_TIMEOUT + MARGIN_S)
    errors = _errors(done)
    assert len(errors[0]) == 1 and "lost contact with rank 1 on host h1 (10.213.0.2)" in errors[0][0], errors
    assert errors[1] == []  # the killed rank says nothing; torchrun's agent on h1 reports its exit code
    print(f"killed rank: the job ended {done[0]['seconds']:.1f} s later; {errors[0][0]}")
    _resume_and_compare(hosts, out, uninterrupted)


def test_torchrun_link_down_mid_epoch_ends_the_job_on_both_hosts_and_resumes(emulated_hosts, uninterrupted: Path,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    hosts = emulated_hosts(2)
    out = tmp_path / "run"
    procs = [_torchrun(h, hosts[0].address, out, epochs=6) for h in hosts]
    _started(out)
    hosts[1].link(up=False)
    done = _finish(procs, DIST_TIMEOUT + MARGIN_S)
    _check_ended(hosts, done, DIST_TIMEOUT + MARGIN_S)
    errors = _errors(done)
    # Each side names the host it lost (a timeout names no peer: every rank on another host).
    assert len(errors[0]) == 1 and "lost contact with rank 1 on host h1 (10.213.0.2)" in errors[0][0], errors
    assert len(errors[1]) == 1 and "lost contact with rank 0 on host h0 (10.213.0.1)" in errors[1][0], errors
    print(f"link down: ended after {done[0]['seconds']:.1f} / {done[1]['seconds']:.1f} s; {errors[0][0]}")
    hosts[1].link(up=True)
    _resume_and_compare(hosts, out, uninterrupted)


def test_torchrun_under_delay_and_loss_trains_to_the_same_weights(emulated_hosts, tmp_path: Path) -> None:
    why = netem_unavailable()
    if why:
        pytest.skip(why)
    hosts = emulated_hosts(2)
    for host in hosts:
        host.tc("qdisc", "add", "dev", "eth0", "root", "netem", "delay", "20ms", "5ms", "loss", "2%")
    out = tmp_path / "run"
    procs = [_torchrun(h, hosts[0].address, out) for h in hosts]
    _one_process(tmp_path / "one")
    done = _finish(procs, 600)
    assert [d["code"] for d in done] == [0, 0], done[0]["err"][-2000:]
    a, b = _weights(out), _weights(tmp_path / "one")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_through_a_slow_lossy_link_trains_to_the_same_weights(emulated_hosts, tmp_path: Path) -> None:
    # Without sch_netem: a token bucket (tc tbf) at 1 Mbit/s with a 4 KB queue delays every burst and
    # drops what overflows the queue; TCP retransmits, and training must not notice.
    hosts = emulated_hosts(2)
    for host in hosts:
        host.tc("qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "1mbit", "burst", "4kb", "limit", "4kb")
    out = tmp_path / "run"
    procs = [_torchrun(h, hosts[0].address, out) for h in hosts]
    _one_process(tmp_path / "one")
    done = _finish(procs, 600)
    assert [d["code"] for d in done] == [0, 0], done[0]["err"][-2000:] + done[1]["err"][-2000:]
    stats = [host.tc("-s", "qdisc", "show", "dev", "eth0").stdout for host in hosts]
    dropped = [int(text.split("dropped")[1].split()[0].rstrip(",")) for text in stats]
    print(f"tbf 1mbit: packets dropped h0 {dropped[0]}, h1 {dropped[1]}")
    assert sum(dropped) > 0, stats  # the link did lose packets
    a, b = _weights(out), _weights(tmp_path / "one")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------- helpers
def _require_hosts() -> None:
    """What the ``emulated_hosts`` fixture does where namespaces cannot be made: fail in CI, else skip."""
    from hosts import unavailable
    from suite_env import missing_requirement

    why = unavailable()
    if why:
        missing_requirement(why, "run the suite as root on Linux with iproute2 and util-linux")


def _netns() -> List[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _sleepers(parent: int) -> List[int]:
    """The ``sleep 600`` processes the script started on its hosts (found by command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == b"sleep\x00600\x00":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


# ---------------------------------------------------------------------- DistDGL across two hosts
def _ip_config(hosts: EmulatedHosts, folder: Path) -> Path:
    path = folder / "ip_config.txt"
    path.write_text("".join(f"{h.address} 30050\n" for h in hosts))
    return path


@pytest.mark.parametrize("link", ["plain", "slow-lossy"])
def test_distdgl_step_on_two_hosts_equals_one_process_and_reads_every_feature(emulated_hosts, tmp_path: Path,
                                                                              link: str) -> None:  # fmt: skip
    import pickle

    import numpy as np
    from distgraph_jobs import float64_dataset, make_partition, reference_machine_step
    from grad_check import assert_gradients_match

    hosts = emulated_hosts(2)
    if link == "slow-lossy":  # as in the torchrun test above: 1 Mbit/s, a 4 KB queue, drops
        for host in hosts:
            host.tc("qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "1mbit", "burst", "4kb", "limit", "4kb")
    config_path = make_partition(tmp_path / "parts", parts=2, method="metis")
    ip_config = _ip_config(hosts, tmp_path)
    tests = str(Path(__file__).resolve().parents[1])
    procs = []
    for host in hosts:
        code = (f"import distgraph_jobs; distgraph_jobs.run_host_step({config_path!r}, {str(ip_config)!r}, "
                f"{str(tmp_path / host.name)!r}, 2)")  # fmt: skip
        procs.append(host.popen([sys.executable, "-c", code], env=subprocess_env(PYTHONPATH=tests), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True))  # fmt: skip
    reference = reference_machine_step(config_path)
    done = _finish(procs, 600)
    assert [d["code"] for d in done] == [0, 0], done[0]["err"][-2000:] + done[1]["err"][-2000:]
    ranks = [pickle.loads((tmp_path / h.name).read_bytes())[0] for h in hosts]
    assert [r["machine"] for r in ranks] == [0, 1] and [r["host"][0] for r in ranks] == ["h0", "h1"]
    # Each trainer trained on its own host's partition, and read every node's features, the other
    # host's included, as the source graph holds them (in the partition's numbering).
    sizes = [r["nodes"].size for r in ranks]
    assert sizes[0] > 0 and sizes[1] > 0 and sum(sizes) == reference["features"].shape[0]
    for rank in ranks:
        assert np.array_equal(rank["features"], reference["features"])
    ids = (
        __import__("revgnn_dgl.data.partitions", fromlist=["PartitionedDataset"])
        .PartitionedDataset(config_path)
        .original_ids()
    )
    source = float64_dataset().graph.ndata["feat"].numpy()
    assert np.array_equal(ranks[1]["features"], source[ids["nodes"]])
    for name, value in reference["before"].items():
        assert all(np.array_equal(r["before"][name], value) for r in ranks)
    want = {k: torch.from_numpy(reference["after"][k] - reference["before"][k]) for k in reference["after"]}
    for rank in ranks:
        got = {k: torch.from_numpy(rank["after"][k] - rank["before"][k]) for k in reference["after"]}
        assert_gradients_match(got, want)  # the shared float64 check
    for name in reference["after"]:
        assert np.array_equal(ranks[0]["after"][name], ranks[1]["after"][name])
    # The check has teeth: the step on one machine's partition alone is far from it.
    if link == "slow-lossy":
        stats = [host.tc("-s", "qdisc", "show", "dev", "eth0").stdout for host in hosts]
        dropped = [int(text.split("dropped")[1].split()[0].rstrip(",")) for text in stats]
        print(f"DistDGL step through tbf 1mbit: packets dropped h0 {dropped[0]}, h1 {dropped[1]}")
        assert sum(dropped) > 0, stats
    alone = reference_machine_step(config_path, machines=[0])["after"]
    assert max(float(np.abs(alone[k] - reference["after"][k]).max()) for k in alone) > 1e-3
    for host in hosts:
        assert not host.pids() and host.shared_memory() == []


DIST_ARGS = [
    "--model",
    "wide",
    "--num-layers",
    "2",
    "--hidden",
    "16",
    "--dropout",
    "0.2",
    "--train-parts",
    "4",
    "--eval-parts",
    "2",
    "--lr",
    "0.01",
    "--nproc",
    "2",
    "--servers",
    "1",
    "--threads",
    "1",
    "--device",
    "cpu",
]


@pytest.fixture(scope="module")
def metis_parts(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``revgnn-dgl partition synthetic-proteins --parts 2 --method metis``: the documented first step."""
    out = tmp_path_factory.mktemp("metis") / "parts"
    done = subprocess.run([sys.executable, "-m", "revgnn_dgl", "partition", "synthetic-proteins", "--dataset-option",
                           "num_nodes=600", "--parts", "2", "--method", "metis", "--out", str(out)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return str(out / "synthetic_proteins.json")


def _machine_command(host: Host, parts: str, ip_config: Path, out: Path, *args: str, **env: str) -> subprocess.Popen:
    """The documented per-machine command: the same on every machine, --out only read on rank 0's."""
    command = [sys.executable, "-m", "revgnn_dgl", "train", *args, "--ip-config", str(ip_config)]
    if "--resume" not in args:
        command += ["--partitions", parts, *DIST_ARGS, "--dist-timeout", str(DIST_TIMEOUT), "--out", str(out)]
    return host.popen(command, env=subprocess_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def distdgl_straight(metis_parts: str, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """The uninterrupted 6-epoch DistDGL run over two hosts (module-scoped: the fault tests resume to it)."""
    _require_hosts()
    folder = tmp_path_factory.mktemp("straight2")
    with EmulatedHosts(2) as hosts:
        ip_config = _ip_config(hosts, folder)
        before = [h.counters() for h in hosts]
        procs = [_machine_command(h, metis_parts, ip_config, folder / h.name / "run", "--epochs", "6") for h in hosts]
        done = _finish(procs, 900)
        after = [h.counters() for h in hosts]
        left = [(h.pids(), h.shared_memory()) for h in hosts]
    return {
        "done": done,
        "out": folder / "h0" / "run",
        "other": folder / "h1" / "run",
        "left": left,
        "sent": [b["tx_bytes"] - a["tx_bytes"] for a, b in zip(before, after)],
    }


def test_distdgl_on_two_hosts_writes_only_on_rank_0s_host_and_evaluates_alike(distdgl_straight: Dict[str, Any]) -> None:
    done, out = distdgl_straight["done"], distdgl_straight["out"]
    assert [d["code"] for d in done] == [0, 0], done[0]["err"][-2000:] + done[1]["err"][-2000:]
    assert "Machine (0)" in done[0]["out"] + done[0]["err"] and "Machine (1)" in done[1]["out"] + done[1]["err"]
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2, 3, 4, 5, 6]  # one line per epoch: rank 0 alone
    assert not distdgl_straight["other"].exists()  # the other host's --out is never written
    assert "epoch 1/6" in done[0]["out"] and "epoch" not in done[1]["out"]
    assert distdgl_straight["left"] == [([], []), ([], [])]  # nothing running, no shared memory, on either host
    print(f"bytes sent by h0, h1 over 6 epochs: {distdgl_straight['sent']}")
    scored = subprocess.run([sys.executable, "-m", "revgnn_dgl", "evaluate", "--run", str(out), "--json"],
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-2000:]
    scores = json.loads(scored.stdout.strip().splitlines()[-1])
    best = json.loads((out / "summary.json").read_text())["runs"][0]
    assert abs(scores["val"] - best["val"]) < 1e-6 and abs(scores["test"] - best["test"]) < 1e-6


def _distdgl_fault(
    hosts: EmulatedHosts, metis_parts: str, tmp_path: Path, fault, **h1_env: str
) -> List[Dict[str, Any]]:
    ip_config = _ip_config(hosts, tmp_path)
    out = tmp_path / "h0" / "run"
    procs = [_machine_command(h, metis_parts, ip_config, tmp_path / h.name / "run", "--epochs", "6",
                              **(h1_env if h is hosts[1] else {})) for h in hosts]  # fmt: skip
    _started(out)
    fault()
    done = _finish(procs, DIST_TIMEOUT + MARGIN_S)
    _check_ended(hosts, done, DIST_TIMEOUT + MARGIN_S)
    return done


def _distdgl_resume(hosts: EmulatedHosts, parts: str, tmp_path: Path, straight: Dict[str, Any]) -> None:
    out = tmp_path / "h0" / "run"
    kept = len(read_metrics(out))
    assert 1 <= kept < 6
    ip_config = tmp_path / "ip_config.txt"
    # As documented: rank 0's machine resumes its run directory, the other types its first command
    # again (with its own --out, never written): rank 0 tells every trainer to resume.
    procs = [
        _machine_command(hosts[0], "", ip_config, out, "--resume", str(out), "--dist-timeout", "120"),
        _machine_command(hosts[1], parts, ip_config, tmp_path / "h1" / "run", "--epochs", "6"),
    ]
    done = _finish(procs, 900)
    assert [d["code"] for d in done] == [0, 0], done[0]["err"][-2000:] + done[1]["err"][-2000:]
    assert [r["epoch"] for r in read_metrics(out)] == list(range(1, 7))
    a, b = _weights(out), _weights(straight["out"])
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    assert not (tmp_path / "h1" / "run").exists()
    for host in hosts:
        assert not host.pids() and host.shared_memory() == []


def test_distdgl_trainer_killed_on_one_host_ends_the_job_and_resumes(emulated_hosts, metis_parts: str,
                                                                     distdgl_straight: Dict[str, Any], tmp_path: Path) -> None:  # fmt: skip
    hosts = emulated_hosts(2)
    # The trainer on h1 sends itself SIGKILL as its epoch 3 starts (the fault hook): a SIGKILL sent
    # from here once epoch 1 was written could land after the tiny 6-epoch job had ended.
    done = _distdgl_fault(hosts, metis_parts, tmp_path, lambda: None, REVGNN_DGL_FAULT="rank1-epoch3:1:kill")
    errors = _errors(done)
    assert len(errors[0]) == 1 and "lost contact with rank 1 on host h1 (10.213.0.2)" in errors[0][0], errors
    assert errors[1] == ["Error: rank 1 of 2 was killed by signal SIGKILL"], errors
    print(f"DistDGL, killed trainer: ended after {done[0]['seconds']:.1f} / {done[1]['seconds']:.1f} s; {errors}")
    _distdgl_resume(hosts, metis_parts, tmp_path, distdgl_straight)


def test_distdgl_link_down_mid_epoch_ends_the_job_and_resumes(emulated_hosts, metis_parts: str,
                                                              distdgl_straight: Dict[str, Any], tmp_path: Path) -> None:  # fmt: skip
    hosts = emulated_hosts(2)
    done = _distdgl_fault(hosts, metis_parts, tmp_path, lambda: hosts[1].link(up=False))
    errors = _errors(done)
    assert len(errors[0]) == 1 and "host h1 (10.213.0.2)" in errors[0][0], errors
    assert len(errors[1]) == 1 and "host h0 (10.213.0.1)" in errors[1][0], errors
    print(f"DistDGL, link down: ended after {done[0]['seconds']:.1f} / {done[1]['seconds']:.1f} s; {errors}")
    hosts[1].link(up=True)
    _distdgl_resume(hosts, metis_parts, tmp_path, distdgl_straight)
