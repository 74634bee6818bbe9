"""The path of ``revgnn-dgl train`` is the one docs/architecture.md describes, in that order.

A profiler records which of the package's modules the trainer (``train/loop.py``) calls, in order.
Each step of the path is one stretch of that record: the data and the model are checked before
the run directory is touched, the run directory (``train/rundir.py``, and ``train/resume.py`` on a
resume) is entered once, the runs follow, and ``summary.json`` comes last. What every step uses
(the plumbing of ``files.py``, ``log.py``, ``limits.py``...; the config, the process context and
the dataset passed along) is left out of the record.
"""

from __future__ import annotations

import sys
from itertools import groupby
from pathlib import Path
from typing import Any, Callable, List, Tuple

import pytest

from revgnn_dgl.errors import DatasetError
from revgnn_dgl.train import TrainConfig, train

TINY = dict(model="wide", dataset="synthetic-proteins", dataset_options={"num_nodes": 200}, num_layers=2, hidden=8,
            train_parts=2, eval_parts=1, device="cpu", threads=1)  # fmt: skip
ORCHESTRATOR = "revgnn_dgl.train.loop"
#: Used by every step: the plumbing's homes, and the objects handed along (config, context, dataset).
EVERYWHERE = {"revgnn_dgl.files", "revgnn_dgl.log", "revgnn_dgl.limits", "revgnn_dgl.env", "revgnn_dgl.faults",
              "revgnn_dgl.errors", "revgnn_dgl.train.config", "revgnn_dgl.train.distributed",
              "revgnn_dgl.data.base"}  # fmt: skip


def called_by_the_trainer(run: Callable[[], Any]) -> List[Tuple[str, str]]:
    """(module, function) of every call the trainer's module makes into another of the package's."""
    calls: List[Tuple[str, str]] = []

    def profile(frame, event, arg):  # noqa: ARG001
        if event != "call" or frame.f_back is None or frame.f_back.f_globals.get("__name__") != ORCHESTRATOR:
            return
        module = frame.f_globals.get("__name__", "")
        if module.startswith("revgnn_dgl") and module != ORCHESTRATOR and module not in EVERYWHERE:
            calls.append((module, frame.f_code.co_name))

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return calls


def stretches(calls: List[Tuple[str, str]]) -> List[str]:
    """The modules in the order they are entered, one entry per stretch of consecutive calls."""
    return [module for module, _ in groupby(module for module, _ in calls)]


def first(calls: List[Tuple[str, str]], module: str, function: str = "") -> int:
    return next(i for i, (m, f) in enumerate(calls) if m == module and (not function or f == function))


def last(calls: List[Tuple[str, str]], module: str) -> int:
    return max(i for i, (m, _) in enumerate(calls) if m == module)


def assert_the_documented_order(calls: List[Tuple[str, str]], resume: bool) -> None:
    order = stretches(calls)
    # The run directory is entered once (the resume's checks inside that stretch).
    rundir = [m for m in order if m in ("revgnn_dgl.train.rundir", "revgnn_dgl.train.resume")]
    assert len(rundir) == (3 if resume else 1), order
    if resume:
        assert rundir == ["revgnn_dgl.train.rundir", "revgnn_dgl.train.resume", "revgnn_dgl.train.rundir"], order
    opened, closed = first(calls, "revgnn_dgl.train.rundir"), last(calls, "revgnn_dgl.train.rundir")
    # Before it: the data loaded and on its device, the model checked on the meta device.
    for function in ("load_dataset_for", "model_overrides", "on"):
        assert first(calls, "revgnn_dgl.train.data", function) < opened, function
    assert first(calls, "revgnn_dgl.zoo.factory", "create_model") < opened
    assert not any(m == "revgnn_dgl.train.data" and f in ("load_dataset_for", "model_overrides", "on")
                   for m, f in calls[opened:])  # fmt: skip
    # After it: the runs (each seeded, built, trained, saved), then the summary, last.
    assert closed < first(calls, "revgnn_dgl.train.device", "seed_everything")
    # An epoch's files: the best checkpoint (a fresh run's first epoch always improves), the metrics
    # line that marks the epoch done, then the state.
    line = first(calls, "revgnn_dgl.train.metrics_log", "append_metrics")
    assert closed < line
    if not resume:
        assert closed < first(calls, "revgnn_dgl.zoo.checkpoint") < line
    assert first(calls, "revgnn_dgl.train.metrics_log", "append_metrics") < first(
        calls, "revgnn_dgl.train.state", "save_training_state"
    )
    assert order[-1] == "revgnn_dgl.train.summary", order
    assert "revgnn_dgl.train.resume" not in order[order.index("revgnn_dgl.train.rundir") + len(rundir) :]


@pytest.mark.parametrize("runs", [1, 2])
def test_a_fresh_train_follows_the_documented_path(tmp_path: Path, runs: int) -> None:
    config = TrainConfig(**TINY, epochs=2, runs=runs, out=str(tmp_path / "run"))
    calls = called_by_the_trainer(lambda: train(config, progress=False))
    assert_the_documented_order(calls, resume=False)


def test_a_resume_follows_the_documented_path(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    train(TrainConfig(**TINY, epochs=1, out=out), progress=False)
    config = TrainConfig(**TINY, epochs=2, out=out)
    calls = called_by_the_trainer(lambda: train(config, resume=True, progress=False))
    assert_the_documented_order(calls, resume=True)
    assert first(calls, "revgnn_dgl.train.state", "load_training_state") > last(calls, "revgnn_dgl.train.rundir")


def test_the_check_fails_on_a_module_entered_twice(tmp_path: Path) -> None:
    """The run directory checked before the data loads, then locked after (as it once was), fails the check."""
    config = TrainConfig(**TINY, epochs=1, out=str(tmp_path / "run"))
    calls = called_by_the_trainer(lambda: train(config, progress=False))
    assert_the_documented_order(calls, resume=False)
    with pytest.raises(AssertionError):
        assert_the_documented_order([("revgnn_dgl.train.rundir", "refuse_existing_run")] + calls, resume=False)


def test_overwrite_removes_nothing_before_the_data_is_good(tmp_path: Path) -> None:
    """--overwrite replaces a run only once the data and the model are known to be good."""
    out = tmp_path / "run"
    train(TrainConfig(**TINY, epochs=1, out=str(out)), progress=False)
    before = sorted(p.name for p in out.iterdir())
    bad = TrainConfig(**{**TINY, "dataset_options": {"num_nodes": -5}}, epochs=1, out=str(out))
    with pytest.raises(DatasetError, match="num_nodes"):
        train(bad, overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == before


def test_the_command_reaches_the_trainer_through_each_module_once(tmp_path: Path) -> None:
    """``train_command``: the options' rules and the config (``settings``), then ``launch``, which trains."""
    from revgnn_dgl.train.command import train_command

    calls: List[Tuple[str, str]] = []

    def profile(frame, event, arg):  # noqa: ARG001
        caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back is not None else ""
        module = frame.f_globals.get("__name__", "")
        if event == "call" and caller in ("revgnn_dgl.train.command", "revgnn_dgl.train.launcher") and \
                module.startswith("revgnn_dgl") and module not in EVERYWHERE | {caller}:  # fmt: skip
            calls.append((module, frame.f_code.co_name))

    given = {**TINY, "epochs": 1, "out": str(tmp_path / "run")}
    sys.setprofile(profile)
    try:
        train_command(given, lambda outcome: None)
    finally:
        sys.setprofile(None)
    order = stretches(calls)
    assert order == ["revgnn_dgl.train.settings", "revgnn_dgl.train.launcher", "revgnn_dgl.train.loop"], order
