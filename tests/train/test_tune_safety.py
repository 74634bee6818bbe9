"""``tune``'s study folder under the run folder's rules (issue 34): no write through a planted link,
every count and seed bounded, a search space checked against the model's bounds and read with the
strict YAML loader, an in-memory storage refused, a damaged study in one line, and two processes on
one study drawing distinct points."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest
from click.testing import CliRunner

pytest.importorskip("optuna")
import optuna  # noqa: E402

from revgnn_dgl.cli import cli  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=200", "--model", "revgnn-112",
        "--num-layers", "2", "--hidden", "8", "--train-parts", "1", "--eval-parts", "1", "--device", "cpu",
        "--threads", "1"]  # fmt: skip
SPACE = ["--space", "lr=loguniform:1e-3:1e-1", "--space", "dropout=float:0:0.5"]


def run_cli(args: List[str]) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=True)


def one_error_line(result: Any) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"


# ---------------------------------------------------------------------- planted links
PLANTED = ["study.db", "trials", "trials/trial-0000", "trials/trial-0000/train.log", "trials/trial-0000/.tune.lock",
           "trials.csv", "optimization_history.png", ".ask.lock", "best.yaml", "study.db-journal"]  # fmt: skip


@pytest.mark.parametrize("name", PLANTED)
@pytest.mark.parametrize("dangling", [False, True])
def test_a_planted_link_in_the_study_folder_is_refused_before_any_write(
    tmp_path: Path, name: str, dangling: bool
) -> None:
    victim = tmp_path / "victims" / "precious"
    victim.parent.mkdir()
    if not dangling:
        victim.write_text("precious\n") if "/" in name or name != "trials" else victim.mkdir()
    out = tmp_path / "study"
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).symlink_to(victim)
    before = digest(victim)
    listing = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    line = one_error_line(run_cli(["tune", "--out", str(out), "--trials", "1", "--epochs", "1", *SPACE, *TINY]))
    assert "is a symbolic link" in line and str(out / name) in line, line
    assert digest(victim) == before and (victim.exists() or dangling) and not (dangling and victim.exists())
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == listing  # nothing written in the folder


def test_a_trial_folder_linked_after_the_check_is_refused_when_resolved(tmp_path: Path) -> None:
    from revgnn_dgl.errors import ConfigError
    from revgnn_dgl.train.tune import TuneSettings, _trial_dir

    out = tmp_path / "study"
    (out / "trials").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "trials" / "trial-0003").symlink_to(outside)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        _trial_dir(TuneSettings(out=str(out)), 3)
    assert not list(outside.iterdir())


# ---------------------------------------------------------------------- bounds and one line
@pytest.mark.parametrize("extra, words", [
    (["--jobs", "100000"], "--jobs 100000 would start 100000 processes"),
    (["--sampler-seed", str(2**40)], "--sampler-seed=1099511627776 is more than the supported maximum"),
    (["--sampler-seed", "-1"], "--sampler-seed must be at least 0"),
    (["--storage", "sqlite://"], "an in-memory database lives in one process only"),
    (["--storage", "sqlite:///:memory:"], "an in-memory database lives in one process only"),
    (["--space", "num_layers=int:2:50000000"], "num_layers=50000000 is more than the supported maximum of 4096"),
    (["--space", "hidden=logint:8:4194304"], "hidden=4194304 is more than the supported maximum"),
    (["--space", "model_args.aggregator=choice:!!python/name:os.system,max"], "is not valid YAML"),
])  # fmt: skip
def test_a_bad_setting_is_one_line_before_anything_starts(tmp_path: Path, extra: List[str], words: str) -> None:
    out = tmp_path / "study"
    line = one_error_line(run_cli(["tune", "--out", str(out), "--trials", "1", "--epochs", "1", *SPACE, *TINY, *extra]))
    assert words in line, line
    assert not multiprocessing.active_children() and not out.exists()


def _one_trial(out: Path) -> None:
    result = run_cli(["tune", "--out", str(out), "--trials", "1", "--epochs", "1", "--pruner", "none", *SPACE, *TINY])
    assert result.exit_code == 0, result.output


def test_a_study_db_of_an_unknown_schema_version_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "study"
    out.mkdir()
    optuna.create_study(storage=f"sqlite:///{out / 'study.db'}", study_name="tune")
    with sqlite3.connect(out / "study.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'v99.bogus'")
    line = one_error_line(run_cli(["tune", "--out", str(out), "--trials", "1", "--epochs", "1", *SPACE, *TINY]))
    assert "--storage" in line


def test_an_edited_trial_attribute_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "study"
    _one_trial(out)
    with sqlite3.connect(out / "study.db") as db:
        changed = db.execute("UPDATE trial_user_attributes SET value_json = '\"many\"' WHERE key = 'test'").rowcount
    assert changed == 1
    line = one_error_line(run_cli(["tune", "--out", str(out), "--trials", "1", "--epochs", "1", "--pruner", "none",
                                   *SPACE, *TINY]))  # fmt: skip
    assert "not what revgnn-dgl writes" in line


# ---------------------------------------------------------------------- distinct points
def test_each_process_on_a_study_gets_its_own_sampler_stream(tmp_path: Path) -> None:
    from revgnn_dgl.train.tune import TuneSettings, _claim_stream, _sampler_seed

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="tune")
    settings = TuneSettings(out=str(tmp_path))
    seeds = [_sampler_seed(settings, 0, 0, _claim_stream(study)) for _ in range(3)]  # three processes, no trial yet
    assert seeds[0] == 0 and len(set(seeds)) == 3  # the first keeps the historic seed


@pytest.mark.slow
def test_two_concurrent_tunes_on_one_study_evaluate_distinct_points(tmp_path: Path) -> None:
    out = tmp_path / "study"
    out.mkdir()
    args = [
        sys.executable,
        "-m",
        "revgnn_dgl",
        "tune",
        "--out",
        str(out),
        "--trials",
        "6",
        "--epochs",
        "1",
        "--pruner",
        "none",
        *SPACE,
        *TINY,
    ]  # the same command, the same --sampler-seed, twice at once
    procs = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    trials = optuna.load_study(study_name="tune", storage=f"sqlite:///{out / 'study.db'}").get_trials()
    points = [tuple(sorted(t.params.items())) for t in trials]
    assert len(points) == 6 and len(set(points)) == 6, points
