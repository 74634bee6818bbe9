"""The trials: a worker's loop (ask, train, tell), in this process or in ``jobs`` worker processes
started and ended by :class:`revgnn_dgl.processes.Children`."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

from ...errors import RevGNNError, TrainingError
from ...log import ROOT, get_logger
from ..config import TrainConfig
from .settings import ASK_LOCK, TRIAL_LOCK, TuneSettings, _optuna
from .space import SearchSpace
from .store import (
    _claim_stream,
    _counted,
    _fail_dead_trials,
    _flock,
    _make_pruner,
    _open_study,
    _sampler_seed,
    _storage,
    _trial_dir,
)

log = get_logger(__name__)


WORKER_GRACE_S = 30.0  # for a stopped worker to tell the study its trial was interrupted


@dataclass
class _Job:
    """What a worker needs (picklable for a spawned process)."""

    base: Dict[str, Any]
    space: SearchSpace
    settings: TuneSettings
    deadline: Optional[float] = None  # time.time() after which no trial starts
    stop_at: Optional[float] = None  # time.time() after which a running trial stops (--budget)


def _run_workers(job: _Job) -> None:
    """``jobs`` spawned worker processes on the shared study; an error in one ends the others."""
    from ...processes import INTERRUPTED, Children

    # Leaving the block stops the workers left: SIGTERM, and each fails its trial as interrupted and
    # queues it again; one stuck past its grace is killed (its trial stays RUNNING, failed on the next run).
    with Children(grace_s=WORKER_GRACE_S) as workers:
        for index in range(job.settings.jobs):  # fresh interpreters: no torch state shared with this one
            workers.start_function(_worker_main, (job, index, os.getpid()), name=f"tune-worker-{index}")
        failed = workers.watch(poll_s=0.5)
        if failed is not None and failed.exitcode in INTERRUPTED:  # a worker stopped by Ctrl-C or SIGTERM
            raise KeyboardInterrupt
        if failed is not None:
            raise TrainingError(f"{failed.name} failed (exit status {failed.exitcode}); its message is above.")


def _worker_main(job: _Job, index: int, parent: int) -> None:
    """A spawned worker: its trials, an error as one line on stderr and exit status 1; SIGTERM (from the
    parent, or from the OS when the parent dies) stops it as Ctrl-C does, with status 143."""
    import sys

    from ...errors import is_user_error
    from ...processes import run_child

    def on_error(err: Exception) -> int:
        if not is_user_error(err):
            raise err
        print(f"Error: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
        return 1

    status, _ = run_child(parent, lambda: _work(job, index), on_error)
    sys.exit(status)


def _work(job: _Job, index: int) -> None:
    """One worker's loop: fail dead trials, check the budget, ask for a trial, train it, tell."""
    optuna = _optuna()
    settings, space = job.settings, job.space
    base = TrainConfig.from_mapping(job.base, "the study's settings")
    with _flock(Path(settings.out) / ASK_LOCK):
        storage = _storage(settings)
        probe = _open_study(base, space, settings, storage)
        # Another seed per worker, per process on the study and per continuation: no stream redraws another's points.
        seed = _sampler_seed(settings, index, len(probe.trials), _claim_stream(probe))
        sampler = optuna.samplers.TPESampler(seed=seed)
        study = _open_study(base, space, settings, storage, sampler=sampler, pruner=_make_pruner(settings, base, space))
    distributions = space.distributions()
    while True:
        with ExitStack() as trial_lock:
            # The workers of this machine count and ask one at a time, so that --trials is exact; a new
            # trial's lock is held before the next worker looks for dead trials.
            with _flock(Path(settings.out) / ASK_LOCK):
                _fail_dead_trials(study, storage)
                if settings.trials is not None and _counted(study) >= settings.trials:
                    return
                if job.deadline is not None and time.time() >= job.deadline:
                    return
                trial = study.ask(fixed_distributions=distributions)
                run_dir = _trial_dir(settings, trial.number)
                trial_lock.enter_context(_flock(run_dir / TRIAL_LOCK))  # released once the study knows the end
                trial.set_user_attr("lock", str(run_dir / TRIAL_LOCK))
                trial.set_user_attr("run_dir", str(run_dir))
                trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            _run_trial(study, trial, base, space, run_dir, job.stop_at)


def _run_trial(study: Any, trial: Any, base: TrainConfig, space: SearchSpace, run_dir: Path,
               stop_at: Optional[float] = None) -> None:  # fmt: skip
    """One trial, in its locked run directory: trained with pruning, and told to the study.

    A point the trainer refuses or that diverges fails alone (the study goes on); anything else
    (Ctrl-C, an OS error, a bug) fails it as interrupted, queued again, and stops the study.
    """
    optuna = _optuna()
    state = optuna.trial.TrialState
    shown = f"trial {trial.number} ({', '.join(f'{k}={_short(v)}' for k, v in trial.params.items())})"
    tic = time.perf_counter()
    try:
        # min_lr above a sampled lr, a conv that cannot read the edge features, a diverged run: bad points.
        config = dataclasses.replace(space.apply(base, trial.params, f"trial {trial.number}"), out=str(run_dir))
        summary = _train_trial(trial, config, run_dir, stop_at)
    except optuna.TrialPruned as pruned:
        study.tell(trial, state=state.PRUNED)
        log.info(f"{shown}: pruned {pruned} ({time.perf_counter() - tic:.1f} s)")
        return
    except RevGNNError as err:
        message = " ".join(str(err).split())
        trial.set_user_attr("error", message)
        study.tell(trial, state=state.FAIL)
        log.info(f"{shown}: failed, {message}")
        return
    except BaseException:  # Ctrl-C, a closed pipe, a full disk, a bug: not the point's fault, so tried again
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=state.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        raise
    trial.set_user_attr("test", summary["test"]["mean"])
    trial.set_user_attr("metric", summary["metric"])
    study.tell(trial, summary["val"]["mean"])
    log.info(f"{shown}: val {summary['metric']} {summary['val']['mean']:.4f}, test {summary['test']['mean']:.4f} "
             f"({time.perf_counter() - tic:.1f} s)")  # fmt: skip


def _train_trial(trial: Any, config: TrainConfig, run_dir: Path, stop_at: Optional[float] = None) -> Dict[str, Any]:
    """Train the trial's run; its output goes to ``RUN_DIR/train.log``; every evaluation reports the
    best validation score so far (the objective) to the pruner. Past ``stop_at`` (``time.time()``,
    the end of ``--budget``) the trial stops at its next evaluation, as a pruned one."""
    optuna = _optuna()
    from ..loop import train

    best: Dict[str, float] = {}

    def on_epoch(record: Dict[str, Any]) -> None:
        if record["val"] is None:
            return
        if stop_at is not None and time.time() >= stop_at:  # every seed's evaluations: the budget is wall time
            why = f"at epoch {record['epoch']} of seed {record['seed']}: the budget ended"
            trial.set_user_attr("budget", True)
            write(f"stopped {why}: an interrupted run, which train --resume would continue")
            raise optuna.TrialPruned(why)
        if record["seed"] != config.seed:  # the first seed's epochs are the steps
            return
        best["val"] = max(best.get("val", -math.inf), record["val"])
        trial.report(best["val"], record["epoch"])
        if trial.should_prune():
            why = f"at epoch {record['epoch']} (best val {best['val']:.4f})"
            write(f"pruned by the study {why}: an interrupted run, which train --resume would continue")
            raise optuna.TrialPruned(why)

    with _trial_log(run_dir / "train.log") as write:
        return train(config, progress=False, on_epoch=on_epoch)


class _StudyOnly(logging.Filter):
    """On the screen while a trial trains: the study's own lines only (the trainer's go to the trial's log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith(__package__ or "")


class _TrialOnly(_StudyOnly):
    def filter(self, record: logging.LogRecord) -> bool:
        return not super().filter(record)


@contextmanager
def _trial_log(path: Path) -> Iterator[Callable[[str], None]]:
    """Inside the block the package's messages, but the study's own, and every warning go to ``path``
    (``RUN_DIR/train.log``, never through a link), not to the screen; yields a function that writes a line there."""
    from ...files import open_nofollow

    package = logging.getLogger(ROOT)
    screen, handlers = _StudyOnly(), list(package.handlers)
    log_fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(log_fd, "a", encoding="utf-8") as stream, warnings.catch_warnings():

        def write(line: str) -> None:
            stream.write(line + "\n")
            stream.flush()

        # The run's warnings (a dataset's, every evaluation's) are the trial's: in its log, not on the screen.
        warnings.showwarning = lambda message, category, *args, **kwargs: write(f"warning: {message}")
        to_file = logging.StreamHandler(stream)
        to_file.setFormatter(logging.Formatter("%(message)s"))
        to_file.addFilter(_TrialOnly())
        for handler in handlers:
            handler.addFilter(screen)
        package.addHandler(to_file)
        try:
            yield write
        finally:
            package.removeHandler(to_file)
            for handler in handlers:
                handler.removeFilter(screen)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
