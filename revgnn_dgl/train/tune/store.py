"""The study in its storage: opened (and refused when started with other settings), its folder
checked for links, the locks that make ``--trials`` exact and find dead trials, the sampler seeds
and the pruner."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator

from ...errors import ConfigError
from ...log import get_logger
from ..config import TrainConfig
from .settings import _STUDY_ATTR, STUDY_FILES, TRIAL_LOCK, TRIALS_DIR, TuneSettings, _optuna
from .space import SearchSpace

log = get_logger(__name__)


def refuse_study_links(out: str) -> None:
    """Refuse a study folder where the tuner would write through a symbolic link: its own files,
    ``trials``, each ``trials/trial-NNNN`` and the files a trial writes there (its log, its lock and
    the trainer's). One line, before anything is written.

    Raises
    ------
    ConfigError
        Naming the first link and where it points.
    """
    from ..rundir import RUN_FILES

    folder = Path(out)
    trials = folder / TRIALS_DIR
    candidates = [folder / name for name in STUDY_FILES] + [trials]
    if trials.is_dir() and not trials.is_symlink():
        for trial in sorted(trials.iterdir()):
            candidates.append(trial)
            if trial.is_dir() and not trial.is_symlink():
                candidates += [trial / name for name in ("train.log", TRIAL_LOCK, *RUN_FILES)]
    for path in candidates:
        _refuse_link(path)


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise ConfigError(f"{path} is a symbolic link (to {os.readlink(path)}): revgnn-dgl never writes through a "
                          "link; remove it, or choose another --out.")  # fmt: skip


def _trial_dir(settings: TuneSettings, number: int) -> Path:
    """A new trial's run directory, checked for links before and after it is resolved: never outside
    the study's ``trials`` folder."""
    trials = Path(settings.out, TRIALS_DIR)
    _refuse_link(trials)
    path = trials / f"trial-{number:04d}"
    _refuse_link(path)
    resolved = path.resolve()
    if resolved.parent != trials.resolve():
        raise ConfigError(f"{path} resolves to {resolved}, outside {trials}: revgnn-dgl never writes through a link.")
    resolved.mkdir(parents=True, exist_ok=True)
    _refuse_link(resolved)
    for name in ("train.log", TRIAL_LOCK):
        _refuse_link(resolved / name)
    return resolved


def _sampler_seed(settings: TuneSettings, index: int, trials: int, stream: int) -> int:
    """The TPE seed of a worker: the first stream of a study keeps the historic seed (``sampler_seed + 1000 *
    worker + trials so far``); every later stream opened on the study (another worker, another process
    on the same study, a re-run) draws its own, so that processes sharing a study do not repeat points."""
    seed = settings.sampler_seed + 1000 * index + trials
    if stream:
        import numpy as np

        seed = int(np.random.SeedSequence([settings.sampler_seed, index, trials, stream]).generate_state(1)[0])
    return seed % 2**32


def _claim_stream(study: Any) -> int:
    """The number of sampler streams opened on the study before this one, counted in the study (called
    under the study folder's ask lock, so that two processes of this machine never claim the same)."""
    claimed = int(study.user_attrs.get("sampler_streams", 0) or 0)
    study.set_user_attr("sampler_streams", claimed + 1)
    return claimed


def _shown_url(settings: TuneSettings) -> str:
    """The storage URL without its password, for the screen."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(settings.storage_url()).render_as_string(hide_password=True)
    except ArgumentError:
        return settings.storage_url()


def _storage(settings: TuneSettings) -> Any:
    from sqlalchemy.exc import SQLAlchemyError

    url = settings.storage_url()
    # SQLite: wait for another worker's write instead of failing with "database is locked".
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return _optuna().storages.RDBStorage(url, engine_kwargs=engine)
    except (ImportError, SQLAlchemyError, RuntimeError, ValueError) as err:  # a malformed URL, a missing driver, a
        # server not reached, a database whose schema version this optuna does not know
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--storage {_shown_url(settings)}: {first}") from None


def _open_study(base: TrainConfig, space: SearchSpace, settings: TuneSettings, storage: Any, create: bool = False,
                sampler: Any = None, pruner: Any = None) -> Any:  # fmt: skip
    """The study in ``storage``, created if new; refused when it was started with other settings."""
    optuna = _optuna()
    study = optuna.create_study(storage=storage, study_name=settings.study_name, direction="maximize",
                                load_if_exists=True, sampler=sampler, pruner=pruner)  # fmt: skip
    what = _identity(base, space)
    saved = study.user_attrs.get(_STUDY_ATTR)
    if saved is None and create:
        study.set_user_attr(_STUDY_ATTR, what)
    elif saved is not None and saved != what:
        differ = sorted(
            k for k in set(saved["config"]) | set(what["config"]) if saved["config"].get(k) != what["config"].get(k)
        )
        changed = (["the search space"] if saved["space"] != what["space"] else []) + differ
        raise ConfigError(
            f"study {settings.study_name!r} in {_shown_url(settings)} was started with other settings "
            f"({', '.join(changed)}); re-run it with them, or start another with --out DIR or --study-name NAME."
        )
    return study


def _identity(base: TrainConfig, space: SearchSpace) -> Dict[str, Any]:
    """What must stay the same for a re-run to continue the study (not where or how fast it runs)."""
    config = {k: v for k, v in base.to_dict().items() if k not in ("out", "threads", "device", "save_every", "logger")}
    return {"space": space.to_dict(), "config": config}


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (waiting for it); the kernel drops it however the process ends."""
    from ...files import file_lock, open_nofollow

    fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)  # a planted link is refused, never written through
    try:
        with file_lock(fd):
            yield
    finally:
        os.close(fd)


def prune_warmup_epochs(settings: TuneSettings, base: TrainConfig) -> int:
    """Epochs before a trial may be pruned: as given, else the lr warm-up or a tenth of the epochs.

    Measured on HumLoc (a 16-layer RevGNN, 150 epochs, 10 of lr warm-up): with no warm-up the
    median pruner stopped 9 of 30 trials at their first evaluation, at chance level inside the lr
    warm-up, among them every trial of the aggregator of the study's best test score.
    """
    if settings.prune_warmup is not None:
        return settings.prune_warmup
    return max(base.warmup_epochs, base.epochs // 10)


def _make_pruner(settings: TuneSettings, base: TrainConfig, space: SearchSpace) -> Any:
    """The pruner; its steps are the epochs (those evaluated)."""
    optuna = _optuna()
    warmup = prune_warmup_epochs(settings, base)
    if settings.pruner == "patient":
        from .pruners import ProgressPruner, default_patience

        patience = settings.prune_patience if settings.prune_patience is not None else default_patience(base.epochs)
        return ProgressPruner(patience, n_startup_trials=settings.prune_startup, n_warmup_steps=warmup)
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.prune_startup, n_warmup_steps=warmup)
    if settings.pruner == "hyperband":
        most = "auto" if "epochs" in space.params else base.epochs  # searched epochs: the longest trial seen
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup), max_resource=most)
    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {settings.pruner!r}; valid: patient, median, hyperband, none.")


def _counted(study: Any) -> int:
    """The trials that use up ``--trials``: all but those failed because their process died."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state in (state.COMPLETE, state.PRUNED, state.RUNNING)
        or (t.state == state.FAIL and not t.user_attrs.get("interrupted"))
    )


def _fail_dead_trials(study: Any, storage: Any) -> None:
    """Fail each RUNNING trial whose worker is gone (its lock is free) and queue its parameters again."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    study_id = None
    for trial in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        lock = trial.user_attrs.get("lock")
        if (
            not isinstance(lock, str)
            or not lock
            or not Path(lock).is_file()
            or Path(lock).is_symlink()
            or _held(Path(lock))
        ):
            continue
        study_id = study_id if study_id is not None else storage.get_study_id_from_name(study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            storage.set_trial_user_attr(trial_id, "interrupted", True)
            storage.set_trial_state_values(trial_id, state.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # it finished meanwhile, or another worker failed it first
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        log.info(f"trial {trial.number} was interrupted (its process ended): failed, its parameters queued again")


def _held(path: Path) -> bool:
    """Whether a process holds the flock on ``path`` (taking it for a moment to see)."""
    from ...files import acquire_lock

    fd = os.open(
        path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    )  # a path from the study: no link followed
    try:
        acquire_lock(fd, blocking=False)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we took
    return False
