"""A study's settings (:class:`TuneSettings`), the names it writes in its folder, and optuna, imported on demand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ...errors import ConfigError
from ..config import TrainConfig

#: What a study folder holds besides the trials' run directories.
STUDY_DB, BEST_CONFIG, TRIALS_CSV, TRIALS_DIR = "study.db", "best.yaml", "trials.csv", "trials"


#: The locks: a trial's (in its run directory, held by its worker) and the study folder's (held to ask).
TRIAL_LOCK, ASK_LOCK = ".tune.lock", ".ask.lock"


#: What makes a study: a re-run with other settings is refused, not mixed into it.
_STUDY_ATTR = "revgnn_dgl"


#: The seeds TPE takes (numpy's) less the offsets of the workers and streams (:func:`_sampler_seed`).
MAX_SAMPLER_SEED = 2**31 - 1


#: The names a study writes in its folder (and may therefore never be links), besides the trials.
STUDY_FILES = (STUDY_DB, f"{STUDY_DB}-journal", f"{STUDY_DB}-wal", f"{STUDY_DB}-shm", BEST_CONFIG, TRIALS_CSV,
               ASK_LOCK, "optimization_history.png", "param_importances.png", "intermediate_values.png")  # fmt: skip


@dataclass
class TuneSettings:
    """How a study runs (picklable: each worker process gets a copy).

    Parameters
    ----------
    out : str
        The study folder: ``study.db`` (the default storage), ``trials/trial-NNNN`` run directories,
        ``best.yaml``, ``trials.csv`` and the plots.
    trials : int, optional
        Stop once the study holds this many trials (finished, pruned, failed, or running now);
        re-running the command continues up to it.
    timeout : float, optional
        Start no new trial this many seconds after the study started (running trials finish).
    budget : float, optional
        Minutes of wall time from the command's start: no trial starts after them, and a trial
        still running when they end is stopped at its next evaluated epoch, recorded as pruned
        (user attribute ``budget``: its directory is an interrupted run that ``train --resume``
        would finish). With ``timeout`` too, new trials stop at the earlier of the two.
    jobs : int
        Trials at once, each in its own worker process.
    storage : str, optional
        An SQLAlchemy URL; default ``sqlite:///OUT/study.db``.
    study_name : str
        The study's name in the storage.
    pruner : str
        ``patient`` (:class:`~revgnn_dgl.train.tune.pruners.ProgressPruner`: a trial is pruned only when
        its best validation score has stopped rising for ``prune_patience`` epochs and it is below
        the other trials' median), ``median`` (Optuna's MedianPruner), ``hyperband`` or ``none``.
    prune_startup, prune_warmup : int
        Trials that are never pruned, and epochs of each trial before pruning may start (patient,
        median; hyperband: its minimum resource). ``prune_warmup`` None: the learning-rate warm-up
        or a tenth of the epochs, whichever is longer (:func:`prune_warmup_epochs`).
    prune_patience : int, optional
        ``patient``: epochs without progress before a trial may be pruned; None: a tenth of the
        epochs, at least 5 (:func:`~revgnn_dgl.train.tune.pruners.default_patience`).
    sampler_seed : int
        Seed of the TPE sampler (offset by the worker and the trials already in the study).
    top : int
        Rows of the table of the best trials.
    """

    out: str
    trials: Optional[int] = None
    timeout: Optional[float] = None
    budget: Optional[float] = None
    jobs: int = 1
    storage: Optional[str] = None
    study_name: str = "tune"
    pruner: str = "patient"
    prune_startup: int = 4
    prune_warmup: Optional[int] = None
    prune_patience: Optional[int] = None
    sampler_seed: int = 0
    top: int = 5

    def __post_init__(self) -> None:
        # A knob of one pruner given with another would be silently ignored: say so instead.
        if self.prune_patience is not None and self.pruner != "patient":
            raise ConfigError(
                f"--prune-patience is the patient pruner's; --pruner {self.pruner} does not use it: drop it, or "
                "use --pruner patient."
            )

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out).resolve() / STUDY_DB}"


def default_study_dir(config: TrainConfig) -> str:
    """``runs/tune-MODEL-DATASET``: no time stamp, so that the same command continues the same study."""
    return f"runs/tune-{config.model}-{Path(config.dataset).stem}"


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("tune needs optuna: pip install 'revgnn_dgl[tune]'.") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours to print
    return optuna
