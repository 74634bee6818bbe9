"""``tune``: check the space and the settings, open the study, run its trials, write its outputs."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Dict

from ...errors import ConfigError
from ...log import get_logger
from ..config import TrainConfig
from .report import _finish
from .settings import ASK_LOCK, MAX_SAMPLER_SEED, TRIALS_DIR, TuneSettings, _optuna
from .space import SearchSpace, parse_space
from .store import _flock, _open_study, _shown_url, _storage, refuse_study_links
from .workers import _Job, _run_workers, _work

log = get_logger(__name__)


def tune(base: TrainConfig, space: SearchSpace, settings: TuneSettings) -> Dict[str, Any]:
    """Run (or continue) a study; returns its summary (see :func:`_finish`).

    ``base`` holds the fixed settings of every trial (its ``out`` is ignored: each trial gets
    ``OUT/trials/trial-NNNN``). The space is checked against it before the study is opened.

    Raises
    ------
    ConfigError
        A bad search space or setting, a study started with other settings, or a missing optuna.
    """
    if settings.trials is None and settings.timeout is None and settings.budget is None:
        raise ConfigError("give --trials N, --timeout SECONDS or both, or --budget MINUTES: a study needs an end.")
    if settings.budget is not None and not (settings.budget > 0 and math.isfinite(settings.budget)):
        raise ConfigError(f"--budget must be a positive number of minutes, got {settings.budget!r}.")
    tic = time.perf_counter()
    # Wall-clock time, the same in every worker process: the budget counts from the command's start.
    now = time.time()
    ends = [now + settings.timeout] if settings.timeout is not None else []
    stop_at = None if settings.budget is None else now + 60 * settings.budget
    deadline = min(ends + ([stop_at] if stop_at is not None else []), default=None)
    if not space.params:
        space = _default_space(base)
    _check_settings(settings, base)
    space.check(base)
    _check_setup(base)
    base = _pin_threads(base, settings.jobs)
    _optuna()
    refuse_study_links(settings.out)  # before anything is written in the study folder
    Path(settings.out, TRIALS_DIR).mkdir(parents=True, exist_ok=True)
    with _flock(Path(settings.out) / ASK_LOCK):  # two processes creating one SQLite schema at once collide
        study = _open_study(base, space, settings, _storage(settings), create=True)
    log.info(f"study {settings.study_name!r} in {_shown_url(settings)}: {len(study.trials)} trial(s) so far; "
         f"{settings.jobs} job(s), {base.threads} thread(s) each; searching {', '.join(space.to_dict().values())}")  # fmt: skip
    if stop_at is not None:
        log.info(
            f"budget: {settings.budget:g} min, until {time.strftime('%H:%M:%S', time.localtime(stop_at))}; no trial "
            "starts after it, and a trial still running then is stopped at its next evaluation (recorded as pruned)"
        )
    job = _Job(base.to_dict(), space, settings, deadline, stop_at)
    if settings.jobs == 1:
        _work(job, 0)
    else:
        _run_workers(job)
    study = _open_study(base, space, settings, _storage(settings))
    return _finish(study, base, space, settings, time.perf_counter() - tic)


def _check_settings(settings: TuneSettings, base: TrainConfig) -> None:
    """Refuse, before anything starts, a worker count above the machine's process bound, a sampler seed
    out of range, and a storage that lives in one process's memory (the workers and the end of the
    command would not see the study)."""
    from ...limits import check_count, check_processes

    check_processes(f"--jobs {settings.jobs}", settings.jobs * base.nproc)
    check_count("--sampler-seed", settings.sampler_seed, MAX_SAMPLER_SEED)
    url = settings.storage_url()
    if url.startswith("sqlite"):
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            database = make_url(url).database or ""
        except ArgumentError:
            return  # _storage says what is wrong with it
        if database in ("", ":memory:") or "mode=memory" in url:
            raise ConfigError(f"--storage {url}: an in-memory database lives in one process only, and the study would "
                              "be lost; give a file (sqlite:///PATH) or leave --storage out.")  # fmt: skip


def _check_setup(base: TrainConfig) -> None:
    """Load the dataset and build the fixed model on the meta device once, so that a setting every trial
    would fail with (a missing dataset, a bad model argument) ends the study before it starts."""
    import torch

    from ...zoo import create_model
    from ..data import load_dataset_for, model_overrides

    overrides, _ = model_overrides(base, load_dataset_for(base))
    with torch.device("meta"):
        create_model(base.model, **overrides)


def _pin_threads(base: TrainConfig, jobs: int) -> TrainConfig:
    """Each trial's thread count, fixed now and written into its config.yaml, so that ``train --config
    best.yaml`` computes as the trial did (results are exact per machine and thread count)."""
    if base.threads is not None:
        return base
    from ...env import load_average, pick_threads
    from ...limits import cpu_cores

    return base.updated({"threads": pick_threads(cpu_cores(), load_average(), processes=jobs * base.nproc)})


def _default_space(base: TrainConfig) -> SearchSpace:
    """No ``--space``: the default space of this model on this kind of graph (:mod:`.spaces`), said in one line."""
    from ..data import load_dataset_for
    from ..spaces import default_space_items

    items, kind = default_space_items(base, load_dataset_for(base))
    space = parse_space(items, "the default search space")
    log.info(
        f"no --space given: searching the default space for {kind}: {', '.join(space.to_dict().values())} "
        "(--space or --space-file to choose)"
    )
    return space
