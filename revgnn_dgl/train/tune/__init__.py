"""Hyper-parameter search with Optuna: a study of normal training runs, pruned from their epochs.

One module per concern, read in this order: :mod:`.space` (:func:`parse_space` and
:func:`read_space_file` turn ``--space`` items and a YAML file into a :class:`SearchSpace`, checked
against :class:`~revgnn_dgl.train.TrainConfig` and the model's builder before any trial starts),
:mod:`.study` (:func:`tune` opens, or continues, the study in Optuna's RDB storage, :mod:`.store`),
:mod:`.workers` (the trials, in this process or in ``jobs`` worker processes, each trial a normal
run directory under ``OUT/trials/``, trained by :func:`revgnn_dgl.train.train` with an
``on_epoch`` hook that reports the best validation score so far and raises
:class:`optuna.TrialPruned` when the pruner, :mod:`.pruners`, says so), and :mod:`.report` (the
table of the best trials, ``best.yaml``, a ``train --config`` file, ``trials.csv`` and PNG plots).

Why processes and not threads for ``jobs``: a trial seeds and draws from torch's, numpy's and
Python's global generators, and sets torch's process-wide thread count, so threads would draw
from each other's streams and no trial would reproduce. Each worker is a spawned process that
shares the study through the storage, as Optuna's own multi-process recipe does.

Why a lock per trial: a trial left RUNNING by a killed process must be failed (and its
parameters queued again), never counted twice. Its worker holds an ``flock`` on
``TRIAL_DIR/.tune.lock`` for the whole trial; the kernel drops it however the process ends, so a
RUNNING trial whose lock can be taken is dead. (Workers on other machines, sharing a server
database, are not seen this way: their dead trials stay RUNNING and are not counted.)

Importing this package loads neither optuna nor torch: a bad search space is refused at once.
"""

from __future__ import annotations

from .report import LEGEND_ROWS, _finish, _fit_legend
from .settings import TuneSettings, default_study_dir
from .space import KINDS, Param, SearchSpace, parse_space, read_space_file
from .store import _claim_stream, _make_pruner, _sampler_seed, _trial_dir, prune_warmup_epochs, refuse_study_links
from .study import _pin_threads, tune
from .workers import _run_trial

__all__ = [
    "KINDS",
    "Param",
    "SearchSpace",
    "TuneSettings",
    "parse_space",
    "read_space_file",
    "tune",
    "default_study_dir",
    "prune_warmup_epochs",
    "refuse_study_links",
    # the package's own names, which its tests reach
    "LEGEND_ROWS",
    "_claim_stream",
    "_finish",
    "_fit_legend",
    "_make_pruner",
    "_pin_threads",
    "_run_trial",
    "_sampler_seed",
    "_trial_dir",
]
