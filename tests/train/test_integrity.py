"""Run directories with integrity: one process per run, whole files, refused damage, honest stops,
nothing left behind by a refused command, and crashes at any write that resume exactly."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import dgl
import pytest
import torch
from safetensors.torch import load_file, save_file

from revgnn_dgl import ZooError, create_model
from revgnn_dgl.files import write_json
from revgnn_dgl.train import (
    BEST_FILE,
    CONFIG_FILE,
    LAST_FILE,
    METRICS_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    ConfigError,
    TrainConfig,
    TrainingDiverged,
    TrainingStateError,
    read_metrics,
    train,
)
from revgnn_dgl.train.rundir import LOCK_FILE, RunLock, remove_stale_temp_files
from revgnn_dgl.train.state import load_training_state
from revgnn_dgl.zoo.checkpoint import (
    CheckpointError,
    build_from_checkpoint,
    config_sha256,
    load_checkpoint,
    save_checkpoint,
)

TINY = dict(model="wide", dataset="synthetic-proteins", dataset_options={"num_nodes": 200}, num_layers=2,
            hidden=8, train_parts=2, eval_parts=1, device="cpu")  # fmt: skip
REPO = Path(__file__).resolve().parents[2]


def quiet(line: str) -> None:
    """Swallow progress lines."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    train(TrainConfig(**TINY, epochs=3, out=str(out)), progress=False)
    return out


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for path in src.iterdir():
        if path.is_file():
            (dst / path.name).write_bytes(path.read_bytes())
    return dst


# ------------------------------------------------------------------ one process per run
def test_a_second_process_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from revgnn_dgl.train.rundir import RunLock
            with RunLock({str(tmp_path)!r}):
                print("locked", flush=True)
                sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=f"in use by another revgnn-dgl process \\(pid {holder.pid}\\)"):
            with RunLock(tmp_path):
                pass
        out = tmp_path
        with pytest.raises(ConfigError, match=f"pid {holder.pid}"):
            train(TrainConfig(**TINY, epochs=1, out=str(out)), progress=False)
        assert not (out / CONFIG_FILE).exists() and not (out / METRICS_FILE).exists()
    finally:
        holder.communicate("\n", timeout=30)
    with RunLock(tmp_path):  # released when the holder exited
        pass


# ------------------------------------------------------------------ honest stops
def test_exploding_learning_rate_stops_with_the_epoch_and_keeps_finite_checkpoints(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"^epoch \d+: .*(loss|gradient norm) is (nan|inf)"):
        train(TrainConfig(**TINY, epochs=20, lr=1e30, grad_clip=0.0, out=str(out)), progress=False)
    for name in (BEST_FILE, LAST_FILE):
        if (out / name).exists():
            state = load_checkpoint(out / name).state_dict
            assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert not (out / SUMMARY_FILE).exists()
    if (out / METRICS_FILE).exists():  # a run that diverged in its first epoch leaves no folder at all
        for line in (out / METRICS_FILE).read_text().splitlines():
            json.loads(line)  # strict JSON: no NaN tokens
    else:
        assert not out.exists()


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0"])
def test_non_finite_or_non_positive_lr_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="lr must be a positive finite number"):
        TrainConfig().updated({"lr": float(value)})


@pytest.mark.parametrize("seed", [-1, 2**32, 99999999999])
def test_seed_out_of_range_refused(seed: int) -> None:
    with pytest.raises(ConfigError, match="seed must be in"):
        TrainConfig().updated({"seed": seed})


def test_strict_json_refuses_nan(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"non-finite numbers as JSON: val.mean = nan"):
        write_json(tmp_path / "s.json", {"val": {"mean": float("nan")}})
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ refused damage
def test_damaged_state_is_refused_and_left_alone(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "run")
    state = run / STATE_FILE
    raw = bytearray(state.read_bytes())
    rng = random.Random(0)
    header_end = 8 + int.from_bytes(raw[:8], "little")
    for i in rng.sample(range(header_end, len(raw)), 50):
        raw[i] ^= 0xFF
    state.write_bytes(bytes(raw))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    with pytest.raises(TrainingStateError, match="damaged: its tensors do not match the checksum"):
        train(TrainConfig(**TINY, epochs=5, out=str(run)), resume=True, progress=False)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before


def test_empty_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        TrainConfig.from_file(tmp_path / CONFIG_FILE)


def test_edited_config_disagreeing_with_the_state_is_refused(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "run")
    config = TrainConfig.from_file(run / CONFIG_FILE)
    edited = config.updated({"lr": 0.5, "epochs": 5, "out": str(run)})
    before = (run / CONFIG_FILE).read_bytes()
    with pytest.raises(
        ConfigError, match=r"differs from the one the run was trained with \(lr: saved 0.001, now 0.5\)"
    ):
        train(edited, resume=True, progress=False)
    assert (run / CONFIG_FILE).read_bytes() == before  # a refused resume rewrites nothing


def test_resume_with_fewer_epochs_than_done_is_refused(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "run")
    config = TrainConfig.from_file(run / CONFIG_FILE).updated({"epochs": 2, "out": str(run)})
    with pytest.raises(ConfigError, match="has already trained 3 epochs; --epochs 2 must be more"):
        train(config, resume=True, progress=False)


def test_torn_metrics_line_is_dropped_with_a_note(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = copy_run(finished, tmp_path / "run")
    with open(run / METRICS_FILE, "a") as fh:
        fh.write('{"epoch": 4, "loss": 0.6')
    config = TrainConfig.from_file(run / CONFIG_FILE).updated({"epochs": 4, "out": str(run)})
    train(config, resume=True, progress=False)
    lines = capsys.readouterr().out.splitlines()
    assert any("dropped a torn last line" in line for line in lines)
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3, 4]


def test_validation_errors_leave_nothing_in_out(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ZooError, match="hidden=15 is not divisible by groups=2"):
        train(TrainConfig(**{**TINY, "hidden": 15}, epochs=1, out=str(out)), progress=False)
    assert not out.exists()
    with pytest.raises(ConfigError, match="not an argument of"):
        train(TrainConfig(**TINY, epochs=1, out=str(out), model_args={"hiden": 4}), progress=False)
    assert not out.exists()


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    for name in (".best.safetensors.tmpab12", "state.safetensors.tmp4242", ".metrics.jsonl.tmpx"):
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / "notes.tmp.txt").write_text("mine")
    removed = sorted(p.name for p in remove_stale_temp_files(tmp_path))
    assert removed == [".best.safetensors.tmpab12", ".metrics.jsonl.tmpx", "state.safetensors.tmp4242"]
    assert (tmp_path / "notes.tmp.txt").exists()


# ------------------------------------------------------------------ checkpoints from elsewhere
def test_crafted_huge_header_is_refused_before_allocation(tmp_path: Path) -> None:
    model = create_model("wide", num_layers=2, hidden=8)
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    header = json.loads(meta["revgnn_dgl"])
    header["arguments"]["hidden"] = 1048576  # 2 TB of weights if built
    save_file(tensors, str(tmp_path / "evil.safetensors"), metadata={"revgnn_dgl": json.dumps(header)})
    with pytest.raises(CheckpointError, match="metadata does not match the checksum"):
        build_from_checkpoint(tmp_path / "evil.safetensors")
    header["sha256"] = config_sha256(header)  # a crafted file can carry a matching checksum
    save_file(tensors, str(tmp_path / "evil.safetensors"), metadata={"revgnn_dgl": json.dumps(header)})
    with pytest.raises(
        CheckpointError, match=r"header describes a model of about 24.0 TiB of weights, but the file holds"
    ):
        build_from_checkpoint(tmp_path / "evil.safetensors")


def test_non_finite_weights_refused_unless_allowed(tmp_path: Path) -> None:
    model = create_model("wide", num_layers=2, hidden=8)
    with torch.no_grad():
        model.head.weight[0, 3] = float("nan")
        model.head.bias[1] = float("inf")
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    with pytest.raises(
        CheckpointError, match="2 non-finite value\\(s\\) .* in 2 weight\\(s\\), the first being 'head.bias'"
    ):
        build_from_checkpoint(path)
    rebuilt = build_from_checkpoint(path, allow_nonfinite=True)
    assert torch.isnan(rebuilt.head.weight[0, 3])


# ------------------------------------------------------------------ crashes at any write
KILL_POINTS = [("checkpoint", 3), ("state", 2), ("metrics", 3)]


def run_cli(args, env_extra=None, timeout=300):
    env = {**os.environ, "OUTDATED_IGNORE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "revgnn_dgl", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)  # fmt: skip


@pytest.mark.slow
def test_sigkill_at_any_write_leaves_loadable_files_and_resumes_exactly(tmp_path: Path) -> None:
    common = ["train", "--model", "wide", "--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=200",
              "--num-layers", "2", "--hidden", "8", "--train-parts", "2", "--eval-parts", "1", "--device", "cpu",
              "--threads", "1", "--epochs", "4", "--edge-dropout", "0.1"]  # fmt: skip
    straight = tmp_path / "straight"
    done = run_cli([*common, "--out", str(straight)])
    assert done.returncode == 0, done.stderr
    reference = load_training_state(straight / STATE_FILE).model
    for point, count in KILL_POINTS:
        out = tmp_path / f"{point}-{count}"
        killed = run_cli([*common, "--out", str(out)], {"REVGNN_DGL_FAULT": f"{point}:{count}"})
        assert killed.returncode == -9, (point, count, killed.stderr[-500:])
        for name in (BEST_FILE, LAST_FILE):  # whatever exists is whole
            if (out / name).exists():
                load_checkpoint(out / name)
        if (out / STATE_FILE).exists():
            load_training_state(out / STATE_FILE)
        resumed = run_cli(["train", "--resume", str(out)])
        assert resumed.returncode == 0, (point, count, resumed.stderr[-1000:])
        final = load_training_state(out / STATE_FILE).model
        assert all(torch.equal(final[k], reference[k]) for k in reference), (point, count)
        assert [r["epoch"] for r in read_metrics(out)] == [1, 2, 3, 4]
        assert not [p for p in out.iterdir() if ".tmp" in p.name]


# ------------------------------------------------------------------ random damage
def mutate(data: bytes, rng: random.Random) -> bytes:
    raw = bytearray(data)
    kind = rng.choice(["flip", "truncate", "insert", "zero"])
    if kind == "flip":
        for i in rng.sample(range(len(raw)), rng.randint(1, 8)):
            raw[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del raw[rng.randrange(len(raw)) :]
    elif kind == "insert":
        i = rng.randrange(len(raw))
        raw[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        i = rng.randrange(len(raw))
        raw[i : i + 64] = bytes(len(raw[i : i + 64]))
    return bytes(raw)


def test_mutated_checkpoints_and_states_load_correctly_or_fail_cleanly(finished: Path, tmp_path: Path) -> None:
    rng = random.Random(1234)
    best = load_checkpoint(finished / BEST_FILE)
    state = load_training_state(finished / STATE_FILE)
    target = tmp_path / "x.safetensors"
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(150):
        source = BEST_FILE if trial % 2 else STATE_FILE
        target.write_bytes(mutate((finished / source).read_bytes(), rng))
        try:
            if source == BEST_FILE:
                got = load_checkpoint(target).state_dict
                want = best.state_dict
            else:
                got = load_training_state(target).model
                want = state.model
        except (CheckpointError, TrainingStateError) as err:
            assert "\n" not in str(err)
            outcomes["refused"] += 1
            continue
        # A mutation the checks cannot see must have left the weights intact.
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
        outcomes["loaded"] += 1
    assert outcomes["refused"] > 100


@pytest.mark.slow
def test_mutated_graph_files_load_or_fail_cleanly(tmp_path: Path) -> None:
    """DGL's reader is C++: run the trials in a child so that a crash fails the test instead of the suite."""
    dgl.seed(0)
    torch.manual_seed(0)
    g = dgl.rand_graph(30, 120)
    g.ndata["feat"] = torch.randn(30, 4)
    g.ndata["label"] = torch.arange(30) % 3
    split = torch.arange(30) % 5
    g.ndata["train_mask"], g.ndata["val_mask"], g.ndata["test_mask"] = split < 3, split == 3, split == 4
    dgl.save_graphs(str(tmp_path / "graph.bin"), [g])
    code = textwrap.dedent(f"""
        import random, sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from tests.train.test_integrity import mutate
        from revgnn_dgl.data import DatasetError, load_dataset
        rng = random.Random(7)
        src = Path({str(tmp_path / "graph.bin")!r}).read_bytes()
        ok = bad = 0
        for trial in range(60):
            path = Path({str(tmp_path)!r}) / f"m{{trial}}.bin"
            path.write_bytes(mutate(src, rng))
            try:
                ds = load_dataset(str(path))
                assert ds.graph.num_nodes() > 0
                ok += 1
            except DatasetError as err:
                assert "\\n" not in str(err), str(err)
                bad += 1
        print(ok, bad)
    """)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                           env={**os.environ, "OUTDATED_IGNORE": "1"})  # fmt: skip
    assert child.returncode == 0, child.stderr[-2000:]
    ok, bad = map(int, child.stdout.split()[-2:])
    assert ok + bad == 60 and bad > 0


@pytest.mark.slow
def test_save_every_writes_less_and_resumes_exactly(tmp_path: Path) -> None:
    """--save-every 3: the state and last checkpoint at epochs 3 and 6 only; killed at the start of
    epoch 5 (state of epoch 3), --resume redoes epochs 4-5 and ends with the uninterrupted weights."""
    common = ["train", "--model", "wide", "--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=200",
              "--num-layers", "2", "--hidden", "8", "--train-parts", "2", "--eval-parts", "1", "--device", "cpu",
              "--threads", "1", "--epochs", "6", "--edge-dropout", "0.1"]  # fmt: skip
    straight = tmp_path / "straight"
    assert run_cli([*common, "--out", str(straight)]).returncode == 0
    sparse = tmp_path / "sparse"
    killed = run_cli([*common, "--save-every", "3", "--out", str(sparse)], {"REVGNN_DGL_FAULT": "rank0-epoch5:1:kill"})
    assert killed.returncode == -9, killed.stderr[-500:]
    assert load_training_state(sparse / STATE_FILE).epoch == 3
    assert [r["epoch"] for r in read_metrics(sparse)] == [1, 2, 3, 4]  # every epoch's line, state of epoch 3
    resumed = run_cli(["train", "--resume", str(sparse)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout and "after epoch 3" in resumed.stdout
    assert [r["epoch"] for r in read_metrics(sparse)] == list(range(1, 7))
    ours, theirs = load_training_state(sparse / STATE_FILE), load_training_state(straight / STATE_FILE)
    assert ours.epoch == theirs.epoch == 6
    assert all(torch.equal(ours.model[k], theirs.model[k]) for k in theirs.model)
    for name in (BEST_FILE, LAST_FILE):
        a, b = load_checkpoint(sparse / name).state_dict, load_checkpoint(straight / name).state_dict
        assert all(torch.equal(a[k], b[k]) for k in b), name


@pytest.mark.slow
def test_twenty_kills_during_writes_leave_no_temporary_file(tmp_path: Path) -> None:
    """20 SIGKILLs inside checkpoint, state and metrics writes of one run, each followed by
    --resume, and a final resume to the end: nothing but the run's own files remains (every
    write goes through the project's own temporary names, which the next start removes)."""
    common = ["train", "--model", "wide", "--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=200",
              "--num-layers", "2", "--hidden", "8", "--train-parts", "2", "--eval-parts", "1", "--device", "cpu",
              "--threads", "1", "--epochs", "30"]  # fmt: skip
    out = tmp_path / "run"
    rng = random.Random(28)
    kills = 0
    first = True
    while kills < 20:
        point = rng.choice(["checkpoint", "state", "metrics"])
        args = [*common, "--out", str(out)] if first else ["train", "--resume", str(out)]
        done = run_cli(args, {"REVGNN_DGL_FAULT": f"{point}:{rng.randint(1, 2)}"})
        if done.returncode == -9:
            kills += 1
            first = False
        else:
            assert done.returncode == 0, done.stderr[-1000:]
            break  # the run finished before the point was reached: enough
    final = run_cli(["train", "--resume", str(out)])
    assert final.returncode == 0, final.stderr[-2000:]
    allowed = {LOCK_FILE, CONFIG_FILE, METRICS_FILE, BEST_FILE, LAST_FILE, STATE_FILE, SUMMARY_FILE}
    assert {p.name for p in out.iterdir()} <= allowed, sorted(p.name for p in out.iterdir())
    assert kills >= 10, kills
    assert [r["epoch"] for r in read_metrics(out)] == list(range(1, 31))
