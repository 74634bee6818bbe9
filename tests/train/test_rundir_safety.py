"""Run directories: nothing outside them written through a link, nothing inside them lost.

Planted symbolic links where the trainer writes (the lock, each seed's metrics, the checkpoints,
the state, the summary, the predictions) are refused with one line on a fresh ``--out`` and on
``--resume``, and their targets stay byte-identical; a resume that cannot continue exactly, or
that is refused for any reason, leaves the directory byte-identical; a fresh run that fails
before its first epoch leaves nothing that blocks the same command.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict

import pytest
from click.testing import CliRunner
from suite_env import TINY_TRAIN_ARGS

from revgnn_dgl.cli import cli

TINY = TINY_TRAIN_ARGS


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def snapshot(folder: Path) -> Dict[str, str]:
    """Every entry under ``folder``: a link's target, a file's sha256, a folder's mark."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            out[key] = "-> " + os.readlink(path)
        elif path.is_file():
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[key] = "dir"
    return out


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    assert invoke("train", *TINY, "--epochs", "2", "--runs", "2", "--out", str(out)).exit_code == 0
    return out


LINKED = [".lock", "metrics.jsonl", "config.yaml", "best.safetensors", "last.safetensors", "state.safetensors",
          "summary.json", "run-1/metrics.jsonl", "run-0/state.safetensors", "run-1"]  # fmt: skip


@pytest.mark.parametrize("name", LINKED)
def test_a_planted_link_on_a_fresh_out_is_refused_and_its_target_untouched(tmp_path: Path, name: str) -> None:
    victim = tmp_path / "victims" / "precious"
    victim.parent.mkdir()
    victim.write_text("precious\n")
    out = tmp_path / "runs" / "D1"
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).symlink_to(victim)
    before = snapshot(out)
    line = one_error_line(invoke("train", *TINY, "--epochs", "1", "--runs", "2", "--out", str(out)))
    assert "is a symbolic link" in line and str(out / name) in line
    assert victim.read_text() == "precious\n"
    assert snapshot(out) == before


@pytest.mark.parametrize(
    "name", ["metrics.jsonl", "state.safetensors", "run-0/last.safetensors", ".lock", "summary.json"]
)
def test_a_planted_link_in_a_run_to_resume_is_refused(tmp_path: Path, finished: Path, name: str) -> None:
    import shutil

    out = tmp_path / "received"
    shutil.copytree(finished, out)
    victim = tmp_path / "precious"
    victim.write_text("precious\n")
    (out / name).unlink(missing_ok=True)
    (out / name).symlink_to(victim)
    before = snapshot(out)
    line = one_error_line(invoke("train", "--resume", str(out), "--epochs", "3"))
    assert "is a symbolic link" in line
    assert victim.read_text() == "precious\n" and snapshot(out) == before


def test_predictions_are_never_written_through_a_link(tmp_path: Path, finished: Path) -> None:
    victim = tmp_path / "precious.npz"
    victim.write_text("precious\n")
    link = tmp_path / "pred.npz"
    link.symlink_to(victim)
    line = one_error_line(invoke("evaluate", "--run", str(finished / "run-0"), "--save-predictions", str(link)))
    assert "symbolic link" in line and victim.read_text() == "precious\n"


def test_resume_without_state_is_refused_and_changes_nothing(tmp_path: Path, finished: Path) -> None:
    import shutil

    out = tmp_path / "nostate"
    shutil.copytree(finished, out)
    (out / "run-1" / "state.safetensors").unlink()
    before = snapshot(out)
    line = one_error_line(invoke("train", "--resume", str(out), "--epochs", "4"))
    assert "has 2 epoch(s) in metrics.jsonl but no state.safetensors" in line and "Nothing was changed" in line
    assert snapshot(out) == before


def test_a_refused_resume_changes_nothing(tmp_path: Path, finished: Path) -> None:
    import shutil

    out = tmp_path / "damaged"
    shutil.copytree(finished, out)
    metrics = out / "run-0" / "metrics.jsonl"
    metrics.write_text("{not json\n" + metrics.read_text())
    before = snapshot(out)
    line = one_error_line(invoke("train", "--resume", str(out), "--epochs", "22"))
    assert "not valid JSON" in line
    assert snapshot(out) == before  # config.yaml still says epochs 2, the lock holds no new pid


def test_a_failed_start_leaves_nothing_that_blocks_the_same_command(tmp_path: Path) -> None:
    out = tmp_path / "fails"
    teacher = tmp_path / "not-a-run"  # refused when the run starts, after its folder was opened
    teacher.mkdir()
    args = ["train", *TINY, "--epochs", "2", "--teacher", str(teacher), "--out", str(out)]
    first = invoke(*args)
    assert first.exit_code == 1 and "not a finished run directory" in first.output, first.output
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    second = invoke(*args)
    assert second.exit_code == 1 and "already holds a run" not in second.output
    # An --out the user made beforehand stays, emptied of what the failed start wrote.
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    assert invoke(*args).exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_stale_temporary_files_are_removed_and_links_and_user_files_kept(tmp_path: Path) -> None:
    from revgnn_dgl.train.rundir import remove_stale_temp_files

    names = [
        ".state.safetensors.tmpab12cd34",
        "metrics.jsonl.tmp123",
        ".tmpYc1T23",
        "notes.tmp.txt",
        ".tmpfile-of-mine",
    ]
    for name in names:
        (tmp_path / name).write_text("x")
    victim = tmp_path.parent / f"{tmp_path.name}-victim"
    victim.write_text("precious")
    (tmp_path / ".best.safetensors.tmpzz").symlink_to(victim)
    removed = sorted(p.name for p in remove_stale_temp_files(tmp_path))
    assert removed == [".state.safetensors.tmpab12cd34", ".tmpYc1T23", "metrics.jsonl.tmp123"]
    assert (tmp_path / "notes.tmp.txt").exists() and (tmp_path / ".tmpfile-of-mine").exists()
    assert (tmp_path / ".best.safetensors.tmpzz").is_symlink() and victim.read_text() == "precious"
