"""DistDGL's files and shared memory (issue 34): a partition description checked before any server
sizes its memory from it, the host lock never opened through a link, the shared memory of this
command's servers removed by its exact names and nobody else's, and the servers' folder of a
command killed by SIGKILL removed at the next start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from ddp_jobs import subprocess_env
from suite_env import interrupt_group_when

from revgnn_dgl.cli import cli
from revgnn_dgl.data import load_dataset
from revgnn_dgl.data.partitions import META_FILE, PartitionedDataset, partition_dataset
from revgnn_dgl.errors import DatasetError, DistributedError
from revgnn_dgl.train import distgraph
from revgnn_dgl.train.distgraph import OWNER_FILE, SERVERS_PREFIX, SHM_FILE

SHM = Path("/dev/shm")
needs_shm = pytest.mark.skipif(
    not SHM.is_dir() or not Path("/proc/self/maps").exists(), reason="Linux /dev/shm and /proc"
)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = load_dataset("synthetic-proteins", num_nodes=300)
    config = partition_dataset(ds, 1, tmp_path_factory.mktemp("dist") / "parts", method="random", name="torch",
                               dataset_options={"num_nodes": 300})["config"]  # fmt: skip
    return Path(config)


def edited(parts: Path, tmp_path: Path, meta: dict = None, conf: dict = None, raw: str = None) -> Path:
    """A copy of the partition folder with its description or DGL's configuration edited."""
    folder = tmp_path / "edited"
    shutil.copytree(parts.parent, folder)
    config = folder / parts.name
    if meta:
        data = json.loads((folder / META_FILE).read_text())
        (folder / META_FILE).write_text(json.dumps({**data, **meta}))
    if conf:
        data = json.loads(config.read_text())
        config.write_text(json.dumps({**data, **conf}))
    if raw is not None:
        config.write_text(raw)
    return config


@pytest.mark.parametrize("meta, conf, words", [
    ({"graph_name": ""}, {"graph_name": ""}, "graph name '' must be 1 to 64 letters"),
    ({"graph_name": "torch*"}, {"graph_name": "torch*"}, "graph name 'torch*' must be"),
    ({}, {"node_map": {"_N": [[0, 500000000]]}}, "node_map is not 1 contiguous range(s) of the description's 300"),
    ({}, {"edge_map": {"_N:_E:_N": [[0, 1]]}}, "edge_map is not 1 contiguous range(s)"),
    ({"num_outputs": "many"}, {}, "num_outputs must be an integer"),
    ({"num_nodes": 500000000}, {}, "node_map is not 1 contiguous range(s) of the description's 500000000"),
])  # fmt: skip
def test_a_crafted_description_is_one_line_before_any_server(parts: Path, tmp_path: Path, meta: dict, conf: dict,
                                                              words: str) -> None:  # fmt: skip
    config = edited(parts, tmp_path, meta=meta, conf=conf)
    with pytest.raises(DatasetError) as err:
        PartitionedDataset(config)
    assert words in str(err.value)
    result = CliRunner().invoke(
        cli, ["train", "--partitions", str(config), "--nproc", "2", "--out", str(tmp_path / "o")]
    )
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(lines) == 1 and words in lines[0], result.output
    assert not (tmp_path / "o").exists()


def test_a_deeply_nested_configuration_is_one_line(parts: Path, tmp_path: Path) -> None:
    config = edited(parts, tmp_path, raw="[" * 200_000 + "]" * 200_000)
    with pytest.raises(DatasetError, match="unreadable"):
        PartitionedDataset(config)


def test_the_host_lock_is_never_opened_through_a_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tmp_path / "precious"
    victim.write_text("precious\n")
    link = tmp_path / "revgnn-dgl-distgraph.lock"
    link.symlink_to(victim)
    monkeypatch.setattr(distgraph, "HOST_LOCK", link)
    with pytest.raises(DistributedError, match="never writes through a link"):
        with distgraph._host_lock():
            pass
    dangling = tmp_path / "dangling.lock"
    dangling.symlink_to(tmp_path / "created")
    monkeypatch.setattr(distgraph, "HOST_LOCK", dangling)
    with pytest.raises(DistributedError):
        with distgraph._host_lock():
            pass
    assert victim.read_text() == "precious\n" and not (tmp_path / "created").exists()


@needs_shm
def test_the_names_a_server_maps_are_recorded_exactly(tmp_path: Path) -> None:
    name = f"revgnn-test-{uuid.uuid4().hex}"
    code = (
        f"import mmap, os, sys, time\nfd = os.open('/dev/shm/{name}', os.O_RDWR | os.O_CREAT)\n"
        "os.ftruncate(fd, 4096)\nm = mmap.mmap(fd, 4096)\nprint('ok', flush=True)\ntime.sleep(60)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ok"
        distgraph._record_shared_memory([server], tmp_path)
        distgraph._record_shared_memory([server], tmp_path)  # once each
        assert (tmp_path / SHM_FILE).read_text().splitlines().count(name) == 1
    finally:
        server.kill()
        server.wait()
        (SHM / name).unlink(missing_ok=True)


@needs_shm
def test_the_folder_of_a_killed_command_goes_at_the_next_start_with_its_shared_memory(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is gone
    ours, decoy = f"torch_{uuid.uuid4().hex}", f"torch_{uuid.uuid4().hex}-kvdata-"
    for name in (ours, decoy):
        (SHM / name).write_bytes(b"x")
    orphan = Path(tempfile.mkdtemp(prefix=SERVERS_PREFIX))
    (orphan / OWNER_FILE).write_text(f"{dead.pid}\n")
    (orphan / SHM_FILE).write_text(f"{ours}\n")
    alive = Path(tempfile.mkdtemp(prefix=SERVERS_PREFIX))
    (alive / OWNER_FILE).write_text(f"{os.getpid()}\n")
    try:
        distgraph._remove_orphaned_folders()
        assert not orphan.exists() and not (SHM / ours).exists()
        assert alive.is_dir() and (SHM / decoy).exists()  # a live command's folder, another program's memory
    finally:
        shutil.rmtree(orphan, ignore_errors=True)
        shutil.rmtree(alive, ignore_errors=True)
        for name in (ours, decoy):
            (SHM / name).unlink(missing_ok=True)


@needs_shm
@pytest.mark.slow
def test_decoys_named_after_the_graph_survive_a_distdgl_run(parts: Path, tmp_path: Path) -> None:
    """Another program's /dev/shm entries named like the graph ('torch') and like DGL's ('-kvdata-'),
    made while the job runs, survive its cleanup; the job's own shared memory does not."""
    out = tmp_path / "run"
    before = set(os.listdir(SHM))
    args = ["--model", "wide", "--num-layers", "2", "--hidden", "8", "--epochs", "2", "--train-parts", "2",
            "--eval-parts", "1", "--nproc", "2", "--servers", "1", "--threads", "1", "--device", "cpu"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "revgnn_dgl", "train", "--partitions", str(parts), *args, "--out",
                             str(out)], env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    decoys = [f"torch_{uuid.uuid4().hex}", f"torch{uuid.uuid4().hex}-kvdata-"]
    try:
        deadline = time.monotonic() + 240
        while not (out / "config.yaml").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.05)
        for name in decoys:
            (SHM / name).write_bytes(b"another program's\n")
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-2000:]
        assert all((SHM / name).read_bytes() == b"another program's\n" for name in decoys)
        left = set(os.listdir(SHM)) - before - set(decoys)
        assert not [n for n in left if n.startswith("torch") or n.endswith("-kvdata-")], left
        assert not list(Path(tempfile.gettempdir()).glob(f"{SERVERS_PREFIX}*/{OWNER_FILE}")) or all(
            int(p.read_text()) != proc.pid for p in Path(tempfile.gettempdir()).glob(f"{SERVERS_PREFIX}*/{OWNER_FILE}")
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for name in decoys:
            (SHM / name).unlink(missing_ok=True)


@pytest.mark.slow
def test_ctrl_c_before_epoch_1_of_partitions_leaves_nothing_that_blocks_the_same_command(tmp_path: Path) -> None:
    """Issue 33: Ctrl-C (SIGINT to the process group) once rank 0 has written config.yaml, in a first epoch that
    takes seconds: exit 130 with one line, no process, no folder that refuses the same command."""

    ds = load_dataset("synthetic-proteins", num_nodes=30000)
    config = partition_dataset(ds, 1, tmp_path / "parts", method="random", dataset_options={"num_nodes": 30000})[
        "config"
    ]
    out = tmp_path / "run"
    args = [sys.executable, "-m", "revgnn_dgl", "train", "--partitions", config, "--model", "wide", "--num-layers", "6",
            "--hidden", "64", "--epochs", "1", "--train-parts", "2", "--eval-parts", "1", "--nproc", "2", "--servers",
            "1", "--threads", "1", "--device", "cpu", "--dist-timeout", "60", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(args, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    stderr = interrupt_group_when(proc, out / "config.yaml", within_s=240, wait_s=120)
    assert proc.returncode == 130, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    # DGL's RPC layer prints its own lines on Ctrl-C in the trainers ("User pressed Ctrl+C, Exiting", from C++);
    # the command's own is one line, the last.
    ours = [line for line in lines if "rpc.cc" not in line and "Ctrl+C" not in line and "Interface" not in line
            and "IP address" not in line and "terminate called" not in line]  # fmt: skip
    assert len(ours) == 1 and ours == lines[-1:] and "Traceback" not in stderr, stderr[-2000:]
    for _ in range(100):
        if not subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).stdout:
            break
        time.sleep(0.1)
    assert not subprocess.run(["pgrep", "-a", "-g", str(proc.pid)], capture_output=True, text=True).stdout
    if (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().strip():
        pytest.skip("epoch 1 finished before the interrupt on this machine: a resumable run is kept, rightly")
    assert not out.exists() or not {"config.yaml", "metrics.jsonl"} & {p.name for p in out.iterdir()}
