"""revgnn-dgl tune: search spaces refused before any trial, the on_epoch hook, studies end to end,
killed and continued, and shared by two processes."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from click.testing import CliRunner

pytest.importorskip("optuna")
import optuna  # noqa: E402

from revgnn_dgl.cli import cli  # noqa: E402
from revgnn_dgl.train import ConfigError, TrainConfig, read_metrics, train  # noqa: E402
from revgnn_dgl.train.tune import parse_space, read_space_file  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=200", "--model", "revgnn-112",
        "--num-layers", "2", "--hidden", "8", "--train-parts", "1", "--eval-parts", "1", "--device", "cpu",
        "--threads", "1"]  # fmt: skip
SPACE = ["--space", "lr=loguniform:1e-3:1e-1", "--space", "dropout=float:0:0.5",
         "--space", "model_args.aggregator=choice:max,softmax,mean"]  # fmt: skip


def tune_args(out: Path, trials: int, epochs: int = 3, *extra: str) -> List[str]:
    return ["tune", "--out", str(out), "--trials", str(trials), "--epochs", str(epochs), *SPACE, *TINY, *extra]


def run_cli(args: List[str]) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=True)


def load_trials(out: Path) -> List[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="tune", storage=f"sqlite:///{out / 'study.db'}").get_trials()


def cli_process(args: List[str], **env: str) -> subprocess.Popen:
    """``python -m revgnn_dgl ARGS`` in its own process (with ``env`` added)."""
    return subprocess.Popen([sys.executable, "-m", "revgnn_dgl", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **env})  # fmt: skip


# ---------------------------------------------------------------------- bad search spaces
@pytest.mark.parametrize(
    "items, words",
    [
        (["lrr=loguniform:1e-4:1e-1"], ["unknown option 'lrr'", "did you mean 'lr'"]),
        (["lr=loguniform:1e-1:1e-4"], ["range [0.1, 0.0001] is empty"]),
        (["num_layers=int:8:8"], ["range [8, 8] is empty"]),
        (["num_layers=float:2:4"], ["num_layers must be an integer"]),
        (["num_layers=int:2:4.5"], ["high must be an integer"]),
        (["dropout=float:0:1.5"], ["dropout must be in [0, 1)"]),
        (["lr=logunifrom:1e-4:1e-1"], ["unknown kind 'logunifrom'", "did you mean 'loguniform'"]),
        (["lr=loguniform:0:1"], ["LOW > 0"]),
        (["optimizer=choice:adam,sgd"], ["optimizer must be adam or adamw or rmsprop"]),
        (["model_args.agregator=choice:max,mean"], ["not an argument of", "did you mean 'aggregator'"]),
        (["out=choice:a,b"], ["cannot be searched"]),
        (["model=choice:revgnn-112,revgnn-113"], ["unknown model", "revgnn-113"]),
        (["lr"], ["expected KEY=SPEC"]),
    ],
)
def test_bad_space_is_one_line_before_any_trial(items: List[str], words: List[str], tmp_path: Path) -> None:
    args = ["tune", "--out", str(tmp_path / "study"), "--trials", "2", *TINY]
    for item in items:
        args += ["--space", item]
    result = run_cli(args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "study").exists()  # nothing started, nothing written


@pytest.mark.parametrize(
    "text, words",
    [
        ("lrr: loguniform:1e-4:1e-1\n", ["unknown option 'lrr'", "did you mean 'lr'"]),
        ("hidden: {type: int, low: 64, high: 16}\n", ["range [64, 16] is empty"]),
        ("hidden: {type: int, low: 16, hihg: 64}\n", ["unknown field 'hihg'", "did you mean 'high'"]),
        ("epochs: {type: int, low: ten, high: 20}\n", ["low must be an integer, got 'ten'"]),
        ("model_args:\n  conv: {type: choice, choices: gen}\n", ["a choice needs choices"]),
        ("- lr\n", ["must hold a mapping"]),
    ],
)
def test_bad_space_file_is_one_line_before_any_trial(text: str, words: List[str], tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(text)
    result = run_cli(["tune", "--out", str(tmp_path / "study"), "--trials", "2", "--space-file", str(space), *TINY])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "study").exists()


def test_space_file_and_items_read_alike(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("lr: loguniform:1e-4:1e-1\nnum_layers: {type: int, low: 4, high: 16, step: 4}\n"
                     "model_args:\n  conv: {type: choice, choices: [gcn, gen]}\n")  # fmt: skip
    from_file = read_space_file(str(space))
    from_items = parse_space(["lr=loguniform:1e-4:1e-1", "num_layers=int:4:16:4", "model_args.conv=choice:gcn,gen"])
    assert from_file.params == from_items.params
    dist = from_items.params["num_layers"].distribution()
    assert (dist.low, dist.high, dist.step) == (4, 16, 4)
    with pytest.raises(ConfigError, match="searched twice"):
        read_space_file(str(space), parse_space(["lr=float:0.1:0.2"]))


def test_an_end_is_required(tmp_path: Path) -> None:
    result = run_cli(["tune", "--out", str(tmp_path / "s"), *SPACE, *TINY])
    assert result.exit_code == 2 and "give --trials N, --timeout SECONDS or both" in result.output


# ---------------------------------------------------------------------- the trainer's hook
def test_on_epoch_stop_leaves_a_run_that_resumes_exactly(tmp_path: Path) -> None:
    config = TrainConfig(model="revgnn-112", dataset="synthetic-proteins", dataset_options={"num_nodes": 200},
                         num_layers=2, hidden=8, train_parts=2, eval_parts=1, device="cpu", threads=1, epochs=4)  # fmt: skip
    seen: List[Dict[str, Any]] = []

    class Stop(Exception):
        pass

    def stop_at_2(record: Dict[str, Any]) -> None:
        seen.append(record)
        if record["epoch"] == 2:
            raise Stop

    stopped = str(tmp_path / "stopped")
    with pytest.raises(Stop):
        train(TrainConfig(**{**config.to_dict(), "out": stopped}), on_epoch=stop_at_2)
    assert [(r["epoch"], r["seed"]) for r in seen] == [(1, 0), (2, 0)] and seen[1]["val"] is not None
    assert [r["epoch"] for r in read_metrics(stopped)] == [1, 2]  # the stopping epoch's line is written
    resumed = train(TrainConfig(**{**config.to_dict(), "out": stopped}), resume=True)
    whole = train(TrainConfig(**{**config.to_dict(), "out": str(tmp_path / "whole")}))
    assert resumed["val"] == whole["val"] and resumed["test"] == whole["test"]


# ---------------------------------------------------------------------- studies
@pytest.mark.slow
def test_a_four_trial_study_end_to_end_and_its_best_config_reproduces(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "study"
    result = run_cli(tune_args(out, 4, 3, "--prune-startup", "2"))
    assert result.exit_code == 0, result.output
    trials = load_trials(out)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert {t.state for t in trials} <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    for t in trials:
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir == out.resolve() / "trials" / f"trial-{t.number:04d}"
        config = TrainConfig.from_file(run_dir / "config.yaml")
        assert config.out == str(run_dir) and config.lr == t.params["lr"]
        assert config.model_args["aggregator"] == t.params["model_args.aggregator"]
        epochs = [r["epoch"] for r in read_metrics(run_dir)]
        if t.state == optuna.trial.TrialState.COMPLETE:
            summary = json.loads((run_dir / "summary.json").read_text())
            assert summary["val"]["mean"] == t.value and epochs == [1, 2, 3]
        else:  # pruned: an interrupted run at the pruned epoch
            assert not (run_dir / "summary.json").exists() and epochs == list(range(1, len(epochs) + 1))
            assert max(t.intermediate_values) == len(epochs)
    best = max((t for t in trials if t.value is not None), key=lambda t: t.value)
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert f"best {complete} trial(s) by validation rocauc" in result.output
    assert f"best config (trial {best.number})" in result.output
    best_file = out / "best.yaml"
    import yaml

    saved = yaml.safe_load(best_file.read_text())
    assert "out" not in saved and saved["threads"] == 1 and saved["lr"] == best.params["lr"]
    for name in ("optimization_history", "param_importances", "intermediate_values"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    import csv

    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # relative to where tune ran (here tmp_path), so a committed table names no checkout
    assert [r["user_attrs_run_dir"] for r in rows] == [f"study/trials/trial-{n:04d}" for n in range(4)]
    again = run_cli(["train", "--config", str(best_file), "--out", str(tmp_path / "again"), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output.strip().splitlines()[-1])["val"]["mean"] == best.value  # exactly


@pytest.mark.slow
def test_killed_study_continues_without_repeating_finished_trials(tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = tune_args(out, 4, 3, "--pruner", "none")
    # SIGKILL (no cleanup, as a power cut would) mid-trial: each trial starts its epoch 2 once, so the
    # 3rd start is trial 2's, after its first epoch's files.
    killed = cli_process(args, REVGNN_DGL_FAULT="rank0-epoch2:3:kill")
    output, _ = killed.communicate(timeout=600)
    assert killed.returncode == -9, output
    before = load_trials(out)
    assert [t.state.name for t in before] == ["COMPLETE", "COMPLETE", "RUNNING"]
    finished = {
        t.number: (t.value, (Path(t.user_attrs["run_dir"]) / "metrics.jsonl").stat().st_mtime_ns) for t in before[:2]
    }

    again = cli_process(args)
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 0, output
    assert "trial 2 was interrupted" in output
    trials = load_trials(out)
    states = [t.state.name for t in trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"], states
    assert trials[2].user_attrs["interrupted"] is True
    assert trials[3].user_attrs["retry_of"] == 2 and trials[3].params == trials[2].params  # retried, same point
    for number, (value, mtime) in finished.items():  # not trained again
        assert trials[number].value == value
        assert (Path(trials[number].user_attrs["run_dir"]) / "metrics.jsonl").stat().st_mtime_ns == mtime
    assert sum(t.state.name == "COMPLETE" for t in trials) == 4  # --trials 4: the killed one is not counted
    assert "trial 0 (" not in output and "trial 1 (" not in output


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study_without_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "study"
    out.mkdir()
    args = tune_args(out, 6, 3, "--pruner", "none")
    first = cli_process(args)
    second = cli_process([*args, "--sampler-seed", "7"])  # another seed: the processes' points differ
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    trials = load_trials(out)
    assert [t.number for t in trials] == list(range(6))  # exactly --trials, each number once
    assert all(t.state.name == "COMPLETE" for t in trials)
    ran = [[n for n in range(6) if f"trial {n} (" in text] for text in outputs]
    assert sorted(ran[0] + ran[1]) == list(range(6))  # each trial trained by one process
    assert ran[0] and ran[1], outputs  # both did work
    workers = {t.user_attrs["worker"].split(":")[1] for t in trials}
    assert workers == {str(first.pid), str(second.pid)}
    for t in trials:
        assert [r["epoch"] for r in read_metrics(t.user_attrs["run_dir"])] == [1, 2, 3]  # one run per directory


@pytest.mark.slow
def test_jobs_run_trials_in_worker_processes(tmp_path: Path) -> None:
    out = tmp_path / "study"
    study = cli_process(tune_args(out, 4, 2, "--jobs", "2", "--pruner", "none"))
    output, _ = study.communicate(timeout=600)
    assert study.returncode == 0, output
    trials = load_trials(out)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2 and str(study.pid) not in {w.split(":")[1] for w in workers}  # two spawned workers
    assert (out / "best.yaml").is_file() and "best config (trial" in output


def child_pids(pid: int) -> List[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"after {seconds} s: {what}"
        time.sleep(0.2)


def started_workers(study: subprocess.Popen, out: Path) -> List[int]:
    """``tune --jobs 2``'s workers, once both trials have written an epoch."""

    def training() -> bool:
        assert study.poll() is None, study.communicate()[0]
        return all((out / "trials" / f"trial-{n:04d}" / "metrics.jsonl").is_file() for n in (0, 1))

    wait_for(training, 300, "no two trials training")
    return [p for p in child_pids(study.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_study_leaves_no_worker_running(tmp_path: Path, sig: signal.Signals) -> None:
    # SIGTERM runs the study's cleanup; SIGKILL runs none: then the OS tells the workers (their parent died).
    out = tmp_path / "study"
    args = tune_args(out, 3, 400, "--jobs", "2", "--pruner", "none")
    study = cli_process(args)
    workers = started_workers(study, out)
    assert len(workers) == 2
    study.send_signal(sig)
    output, _ = study.communicate(timeout=120)
    assert study.returncode == (143 if sig == signal.SIGTERM else -9), output
    wait_for(lambda: not any(alive(p) for p in workers), 60, f"workers {workers} still running")
    if sig == signal.SIGTERM:
        assert "Interrupted; the finished trials are in the study" in output and "Traceback" not in output
    trials = load_trials(out)
    for t in trials[:2]:
        if t.state.name == "FAIL":  # told by its worker (which queues the same point again, if it gets that far)
            assert t.user_attrs["interrupted"] is True
        else:  # the signal landed inside a storage write: RUNNING with a free lock, failed by the next run
            assert t.state.name == "RUNNING", t.state
            with open(t.user_attrs["lock"], "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # no process holds it: the trial is dead


def test_timeout_ends_the_study_and_other_settings_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["tune", "--out", str(out), "--timeout", "0.001", "--epochs", "2", *SPACE, *TINY]
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    assert "0 trial(s);" in result.output and "no trial has finished yet" in result.output  # from the start
    assert load_trials(out) == [] and not (out / "best.yaml").exists()
    other = run_cli([*args[: -len(TINY)], "--space", "weight_decay=float:0:0.01", *TINY])
    assert other.exit_code == 1
    assert other.output.strip().splitlines() == [
        f"Error: study 'tune' in sqlite:///{out.resolve()}/study.db was started with other settings (the search "
        "space); re-run it with them, or start another with --out DIR or --study-name NAME."
    ]
    longer = run_cli([*args, "--epochs", "3"])
    assert longer.exit_code == 1 and "other settings (epochs)" in longer.output


def test_a_trial_stopped_by_an_error_not_its_own_is_retried_not_counted(tmp_path: Path, monkeypatch) -> None:
    from revgnn_dgl import faults

    out = tmp_path / "study"
    args = tune_args(out, 2, 1, "--pruner", "none")
    monkeypatch.setattr(faults, "_reached", {})
    monkeypatch.setenv("REVGNN_DGL_FAULT", "rank0-epoch1:1:raise")  # a bug in the first trial's first epoch
    broken = run_cli(args)
    assert isinstance(broken.exception, RuntimeError)  # a bug shows as one, with its traceback
    trials = load_trials(out)
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"] and trials[0].user_attrs["interrupted"] is True
    monkeypatch.delenv("REVGNN_DGL_FAULT")
    again = run_cli(args)
    assert again.exit_code == 0, again.output
    trials = load_trials(out)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].params == trials[0].params


def test_pruning_waits_for_the_lr_warmup_or_a_tenth_of_the_epochs() -> None:
    from revgnn_dgl.train.tune import SearchSpace, TuneSettings, _make_pruner, prune_warmup_epochs

    base = TrainConfig(epochs=150, warmup_epochs=10)
    assert prune_warmup_epochs(TuneSettings(out="x"), base) == 15
    assert prune_warmup_epochs(TuneSettings(out="x"), TrainConfig(epochs=50, warmup_epochs=10)) == 10
    assert prune_warmup_epochs(TuneSettings(out="x", prune_warmup=0), base) == 0  # given: as given
    pruner = _make_pruner(TuneSettings(out="x", pruner="median"), base, SearchSpace())
    assert pruner._n_warmup_steps == 15
    patient = _make_pruner(TuneSettings(out="x"), base, SearchSpace())  # the default
    assert (patient.n_warmup_steps, patient.patience, patient.n_startup_trials) == (15, 15, 4)


@pytest.mark.parametrize("pruner", ["median", "hyperband", "none"])
def test_prune_patience_with_another_pruner_is_refused_not_ignored(pruner: str) -> None:
    from revgnn_dgl.train.tune import TuneSettings

    with pytest.raises(ConfigError, match=f"--pruner {pruner} does not use it"):
        TuneSettings(out="x", pruner=pruner, prune_patience=5)
    assert TuneSettings(out="x", prune_patience=5).prune_patience == 5  # the patient pruner's own


def test_a_long_legend_is_folded_into_columns_inside_the_saved_figure() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from revgnn_dgl.train.tune import LEGEND_ROWS, _fit_legend

    figure, axes = plt.subplots()
    for n in range(2 * LEGEND_ROWS + 1):
        axes.plot([0, 1], [n, n], label=f"Trial{n}")
    axes.legend(bbox_to_anchor=(1.05, 1.0))  # as Optuna's plot_intermediate_values: one column
    figure.canvas.draw()
    assert axes.get_legend().get_window_extent().height > figure.bbox.height  # runs off the figure
    _fit_legend(axes)
    legend = axes.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [f"Trial{n}" for n in range(2 * LEGEND_ROWS + 1)]
    figure.canvas.draw()
    assert legend.get_window_extent().height < figure.bbox.height
    plt.close(figure)


@pytest.mark.parametrize("jobs, threads", [(1, 2), (2, 1)])
def test_jobs_share_the_free_cores_when_threads_are_not_given(monkeypatch, tmp_path: Path, jobs: int,
                                                               threads: int) -> None:  # fmt: skip
    # Two 2-thread trials on two free cores ran oversubscribed: the default counts every job's process.
    import revgnn_dgl.env
    import revgnn_dgl.limits
    import revgnn_dgl.train.tune as tune_module
    from revgnn_dgl.train.tune import _pin_threads

    monkeypatch.setattr(revgnn_dgl.limits, "cpu_cores", lambda: 2)
    monkeypatch.setattr(revgnn_dgl.env, "load_average", lambda: 0.0)
    seen: Dict[str, Any] = {}
    monkeypatch.setattr(tune_module, "tune", lambda base, space, settings, **_: seen.update(base=base))
    args = tune_args(tmp_path / "study", 2)
    at = args.index("--threads")
    args = args[:at] + args[at + 2 :] + ["--jobs", str(jobs)]
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    assert seen["base"].threads == threads
    # the Python API's default, for a base without a thread count
    assert _pin_threads(seen["base"].updated({"threads": None}), jobs).threads == threads


# ---------------------------------------------------------------------- issue 39: pruning by progress, budgets
def _curve(values: Dict[int, float]) -> Dict[int, float]:
    """A best-so-far curve, as tune reports it."""
    best, out = float("-inf"), {}
    for step in sorted(values):
        best = max(best, values[step])
        out[step] = best
    return out


def _study_with_finished_trials(pruner: Any) -> Any:
    """Four finished trials that rise fast and plateau at 0.70 from epoch 20 (what the early leaders do)."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for k in range(4):
        trial = study.ask()
        for step, value in _curve({s: min(0.70, 0.55 + 0.015 * s) + 0.001 * k for s in range(2, 101, 2)}).items():
            trial.report(value, step)
        study.tell(trial, 0.70 + 0.001 * k)
    return study


def _late_peaker(step: int) -> float:
    """Behind everyone early (0.52 at epoch 10), still rising at 0.002 an epoch, above them all by epoch 100."""
    return 0.50 + 0.002 * step + 0.0005 * (step % 4 == 0)


def test_the_patient_pruner_keeps_a_trial_behind_early_but_improving_and_prunes_a_stalled_one() -> None:
    from revgnn_dgl.train.tune.pruners import ProgressPruner

    # Optuna's MedianPruner at a fixed early epoch cuts the late peaker: the behaviour issue 39 replaces.
    median = _study_with_finished_trials(optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=10))
    trial = median.ask()
    for step in range(2, 11, 2):
        trial.report(_late_peaker(step), step)
    assert trial.should_prune()

    study = _study_with_finished_trials(ProgressPruner(patience=10, n_startup_trials=4, n_warmup_steps=10))
    rising = study.ask()
    curve = _curve({s: _late_peaker(s) for s in range(2, 101, 2)})
    for step, value in curve.items():
        rising.report(value, step)
        assert not rising.should_prune(), f"pruned at epoch {step} while still improving ({value:.3f})"
    assert curve[10] < 0.6 < 0.70 < curve[100]  # behind at the early epoch, ahead at the end
    study.tell(rising, curve[100])

    stuck = study.ask()  # at chance from the start: nothing to wait for
    pruned_at = None
    for step in range(2, 101, 2):
        stuck.report(0.5, step)
        if stuck.should_prune():
            pruned_at = step
            break
    assert pruned_at == 12  # the warm-up (10), then 10 epochs without progress: judged, and behind

    leader = study.ask()  # stalled but ahead of the others' median: kept
    for step, value in _curve({s: min(0.75, 0.60 + 0.02 * s) for s in range(2, 101, 2)}).items():
        leader.report(value, step)
        assert not leader.should_prune()


def test_tune_budget_starts_no_trial_after_it(tmp_path: Path, monkeypatch) -> None:
    """A 0.1-minute budget and trials that each take longer: the study ends with the trials that started
    inside the budget, the one running at its end stopped at its next evaluation and recorded as pruned."""
    from revgnn_dgl.train.tune import workers as tune_module  # where the worker's loop finds _run_trial

    starts: List[float] = []
    real_run_trial = tune_module._run_trial

    def timed(study, trial, *args, **kwargs):
        starts.append(time.time())
        return real_run_trial(study, trial, *args, **kwargs)

    monkeypatch.setattr(tune_module, "_run_trial", timed)
    budget_s = 6.0
    out = tmp_path / "study"
    tic = time.time()
    result = run_cli(["tune", "--out", str(out), "--budget", str(budget_s / 60), "--epochs", "2000", "--pruner", "none",
                      *SPACE, *TINY])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "budget: 0.1 min" in result.output
    trials = load_trials(out)
    assert len(starts) == len(trials) >= 1
    assert all(start < tic + budget_s for start in starts)  # none started after the budget
    last = trials[-1]
    assert last.state == optuna.trial.TrialState.PRUNED and last.user_attrs["budget"] is True
    assert "the budget ended" in result.output
    assert time.time() - tic < budget_s + 60  # stopped, not trained to its 2000th epoch


def test_no_space_searches_the_default_space_of_the_graph_and_prints_the_retraining_command(tmp_path: Path) -> None:
    out = tmp_path / "study"
    result = run_cli(["tune", "--out", str(out), "--trials", "2", "--epochs", "2", "--pruner", "none", *TINY])
    assert result.exit_code == 0, result.output
    # synthetic-proteins: dense features with edge features and GENConv: its aggregator is searched
    assert "no --space given: searching the default space for a graph with 8-dim dense node features" in result.output
    assert "model_args.aggregator=choice:max,softmax,mean" in result.output
    assert "weight_decay=loguniform:1e-06:0.01" in result.output and "input_dropout" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == f"train it for 3 seeds: revgnn-dgl train --config {out / 'best.yaml'} --runs 3 --out {out}-best"
    assert lines[-2].startswith("best config (trial ") and "lr=" in lines[-2] and "model_args.aggregator=" in lines[-2]


def test_default_spaces_follow_the_kind_of_graph() -> None:
    import torch

    from revgnn_dgl.train.spaces import default_space_items

    class Graph:
        def __init__(self, feat: torch.Tensor) -> None:
            self.ndata = {"feat": feat}

    class Data:
        def __init__(self, feat: torch.Tensor, edge_feats: int, task: str) -> None:
            self.graph, self.num_edge_feats, self.task = Graph(feat), edge_feats, task
            self.num_node_feats, self.num_outputs = feat.shape[1], 3

    bags = (torch.rand(100, 50) < 0.02).float()
    items, kind = default_space_items(TrainConfig(model="revgnn-112"), Data(bags, 0, "multiclass"))
    assert "input_dropout=float:0:0.6" in items and "model_args.conv=choice:gen,gcn,sage" in items
    assert "sparse" in kind and "no edge features" in kind
    fixed = TrainConfig(model="revgnn-112", model_args={"conv": "gcn"})
    assert not any(i.startswith("model_args.conv") for i in default_space_items(fixed, Data(bags, 0, "multiclass"))[0])
    dense = torch.randn(100, 8)
    items, kind = default_space_items(TrainConfig(model="revgnn-112"), Data(dense, 4, "multilabel"))
    assert "model_args.aggregator=choice:max,softmax,mean" in items and "input_dropout=float:0:0.6" not in items
    assert "dense" in kind and "4-dim edge features" in kind and "multi-label" in kind
