"""Hyper-parameter search with Optuna: a study of normal training runs, pruned from their epochs.

Read from the top: :func:`parse_space` and :func:`read_space_file` turn ``--space`` items and a
YAML file into a :class:`SearchSpace`, checked against :class:`~revgnn_dgl.train.TrainConfig`
and the model's builder before any trial starts. :func:`tune` opens (or continues) the study
in Optuna's RDB storage, runs the trials in this process or in ``jobs`` worker processes
(:func:`_work`, each trial a normal run directory under ``OUT/trials/``, trained by
:func:`revgnn_dgl.train.train` with an ``on_epoch`` hook that reports the best validation score so
far and raises :class:`optuna.TrialPruned` when the pruner says so), and writes the study's
outputs (:func:`_finish`): the table of the best trials, ``best.yaml`` (a ``train --config``
file), ``trials.csv`` and PNG plots.

Why processes and not threads for ``jobs``: a trial seeds and draws from torch's, numpy's and
Python's global generators, and sets torch's process-wide thread count, so threads would draw
from each other's streams and no trial would reproduce. Each worker is a spawned process that
shares the study through the storage, as Optuna's own multi-process recipe does.

Why a lock per trial: a trial left RUNNING by a killed process must be failed (and its
parameters queued again), never counted twice. Its worker holds an ``flock`` on
``TRIAL_DIR/.tune.lock`` for the whole trial; the kernel drops it however the process ends, so a
RUNNING trial whose lock can be taken is dead. (Workers on other machines, sharing a server
database, are not seen this way: their dead trials stay RUNNING and are not counted.)

Importing this module loads neither optuna nor torch: a bad search space is refused at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import socket
import time
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ..errors import ConfigError, RevGNNError, TrainingError
from .config import TrainConfig
from .settings import check_names

__all__ = [
    "KINDS",
    "Param",
    "SearchSpace",
    "TuneSettings",
    "parse_space",
    "read_space_file",
    "tune",
    "default_study_dir",
]

Echo = Callable[[str], None]

#: The kinds of a search dimension: ``KIND:LOW:HIGH`` (int also ``:STEP``) or ``choice:A,B,...``.
KINDS = ("float", "loguniform", "int", "logint", "choice")
#: TrainConfig keys a study may not search: they place, size or log the runs, not what they learn.
FIXED_KEYS = ("out", "runs", "nproc", "device", "threads", "save_every", "logger", "root", "dataset",
              "dataset_options", "model_args", "teacher")  # fmt: skip
#: The prefix of a model argument (``train --set KEY=VALUE``) in a search space.
MODEL_ARG = "model_args."
#: What a study folder holds besides the trials' run directories.
STUDY_DB, BEST_CONFIG, TRIALS_CSV, TRIALS_DIR = "study.db", "best.yaml", "trials.csv", "trials"
#: The locks: a trial's (in its run directory, held by its worker) and the study folder's (held to ask).
TRIAL_LOCK, ASK_LOCK = ".tune.lock", ".ask.lock"
#: What makes a study: a re-run with other settings is refused, not mixed into it.
_STUDY_ATTR = "revgnn_dgl"


# ---------------------------------------------------------------------- the search space
@dataclass(frozen=True)
class Param:
    """One dimension of the search: a TrainConfig key or ``model_args.NAME``, and its range or choices."""

    key: str
    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    step: Optional[int] = None
    choices: Tuple[Any, ...] = ()

    def describe(self) -> str:
        """The dimension as a ``--space`` item."""
        if self.kind == "choice":
            return f"{self.key}=choice:{','.join(str(c) for c in self.choices)}"
        return f"{self.key}={self.kind}:{self.low!r}:{self.high!r}" + (f":{self.step}" if self.step else "")

    def endpoints(self) -> Tuple[Any, ...]:
        """The values that must all be valid settings: the choices, or the range's ends."""
        if self.kind == "choice":
            return self.choices
        return (self.low, self.high)

    def distribution(self) -> Any:
        """The Optuna distribution of this dimension."""
        optuna = _optuna()
        dist = optuna.distributions
        if self.kind == "choice":
            return dist.CategoricalDistribution(list(self.choices))
        if self.kind in ("int", "logint"):
            return dist.IntDistribution(int(self.low), int(self.high), log=self.kind == "logint", step=self.step or 1)
        return dist.FloatDistribution(self.low, self.high, log=self.kind == "loguniform")


@dataclass
class SearchSpace:
    """The dimensions of a study, in the order given."""

    params: Dict[str, Param] = field(default_factory=dict)

    def add(self, param: Param, source: str) -> None:
        if param.key in self.params:
            raise ConfigError(f"{source}: {param.key} is searched twice; give it once.")
        self.params[param.key] = param

    def to_dict(self) -> Dict[str, str]:
        return {key: p.describe() for key, p in self.params.items()}

    def distributions(self) -> Dict[str, Any]:
        return {key: p.distribution() for key, p in self.params.items()}

    def check(self, base: TrainConfig) -> None:
        """Refuse, before any trial, a dimension whose values the trainer would not take.

        Every choice and both ends of every range are set on ``base`` one at a time (TrainConfig's
        own checks: type, range), and a model argument is checked against each searched model's builder.
        """
        if not self.params:
            raise ConfigError("the search space is empty: give --space KEY=SPEC (e.g. --space lr=loguniform:1e-4:1e-1) "
                              "or --space-file FILE.")  # fmt: skip
        models = self.params["model"].choices if "model" in self.params else (base.model,)
        for param in self.params.values():
            for value in param.endpoints():
                try:
                    if param.key.startswith(MODEL_ARG):
                        from .data import check_model_args  # loads DGL: only once the TrainConfig keys are fine

                        for model in models:
                            check_model_args(str(model), {param.key[len(MODEL_ARG) :]: value})
                    else:
                        base.updated({param.key: value}, "the search space")
                        if param.key == "model":
                            check_names(str(value), None)
                    _check_size(param.key, value)
                except RevGNNError as err:
                    raise ConfigError(f"--space {param.describe()}: {err}") from None

    def apply(self, base: TrainConfig, values: Mapping[str, Any], source: str) -> TrainConfig:
        """``base`` with one trial's values (model arguments added to its ``model_args``)."""
        plain = {k: v for k, v in values.items() if not k.startswith(MODEL_ARG)}
        extra = {k[len(MODEL_ARG) :]: v for k, v in values.items() if k.startswith(MODEL_ARG)}
        if extra:
            plain["model_args"] = {**base.model_args, **extra}
        return base.updated(plain, source)


def _check_size(key: str, value: Any) -> None:
    """A searched size (``num_layers``, ``hidden``, ``model_args.heads``...) within the model's bounds,
    so that a range past them is one line before the first trial, not a failure of every trial."""
    from ..limits import check_count
    from ..zoo.architectures import SIZE_ARGUMENTS

    name = key[len(MODEL_ARG) :] if key.startswith(MODEL_ARG) else key
    if name in SIZE_ARGUMENTS and value is not None:
        low, high = SIZE_ARGUMENTS[name]
        check_count(name, value, high, minimum=low)


def parse_space(items: Sequence[str], source: str = "--space") -> SearchSpace:
    """``KEY=SPEC`` items (``lr=loguniform:1e-4:1e-1``, ``num_layers=int:4:16``,
    ``model_args.conv=choice:gcn,gen``) into a :class:`SearchSpace`.

    >>> parse_space(["lr=loguniform:1e-4:1e-1", "model_args.conv=choice:gcn,gen"]).to_dict()
    {'lr': 'lr=loguniform:0.0001:0.1', 'model_args.conv': 'model_args.conv=choice:gcn,gen'}
    """
    space = SearchSpace()
    for item in items:
        key, sep, spec = item.partition("=")
        if not sep or not key.strip() or not spec.strip():
            raise ConfigError(f"{source} {item!r}: expected KEY=SPEC, e.g. lr=loguniform:1e-4:1e-1.")
        space.add(_parse_param(key.strip(), spec.strip(), f"{source} {item}"), source)
    return space


def read_space_file(path: str, space: Optional[SearchSpace] = None) -> SearchSpace:
    """A YAML search space: ``KEY: SPEC`` (the ``--space`` syntax) or ``KEY: {type, low, high, step, choices}``.

    Model arguments are ``model_args.NAME: ...`` or nested under ``model_args:``. The dimensions
    are added to ``space`` (a ``--space`` one searched again is refused).
    """
    from .config import read_config_file

    data = read_config_file(path)
    space = space if space is not None else SearchSpace()
    entries = []
    for key, spec in data.items():
        if str(key) == "model_args" and isinstance(spec, dict):
            entries += [(f"{MODEL_ARG}{name}", value) for name, value in spec.items()]
        else:
            entries.append((str(key), spec))
    for key, spec in entries:
        where = f"{path}: {key}"
        if isinstance(spec, str):
            param = _parse_param(key, spec, where)
        elif isinstance(spec, dict):
            param = _param_from_mapping(key, spec, where)
        else:
            raise ConfigError(f"{where}: expected a spec like 'loguniform:1e-4:1e-1' or a mapping with type, "
                              f"low, high (or choices), got {spec!r}.")  # fmt: skip
        space.add(param, str(path))
    return space


def _param_from_mapping(key: str, spec: Mapping[str, Any], where: str) -> Param:
    fields = ("type", "low", "high", "step", "choices")
    for name in spec:
        if name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown field {name!r}{hint}; valid: {', '.join(fields)}.")
    kind = spec.get("type")
    if kind == "choice":
        choices = spec.get("choices")
        if not isinstance(choices, list):
            raise ConfigError(f"{where}: a choice needs choices: [A, B, ...], got {choices!r}.")
        return _make_param(key, "choice", where, choices=choices)
    _check_kind(kind, where)
    return _make_param(key, str(kind), where, low=spec.get("low"), high=spec.get("high"), step=spec.get("step"))


def _parse_param(key: str, spec: str, where: str) -> Param:
    kind, _, rest = spec.partition(":")
    kind = kind.strip()
    _check_kind(kind, where)
    if kind == "choice":
        from .config import load_yaml  # the project's strict loader: no tags, aliases or deep nesting

        choices = [load_yaml(v, f"{where}: the choice {v.strip()!r}") for v in rest.split(",") if v.strip()]
        return _make_param(key, kind, where, choices=choices)
    bounds = rest.split(":")
    if len(bounds) not in (2, 3) or (len(bounds) == 3 and kind != "int"):
        form = f"{kind}:LOW:HIGH" + ("[:STEP]" if kind == "int" else "")
        raise ConfigError(f"{where}: expected {form}, got {spec!r}.")
    values = [_number(text.strip()) for text in bounds]
    return _make_param(key, kind, where, low=values[0], high=values[1], step=values[2] if len(values) == 3 else None)


def _number(text: str) -> Any:
    """``16`` -> 16, ``1e-4`` -> 0.0001 (YAML would read it as text), anything else stays text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _check_kind(kind: Any, where: str) -> None:
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: unknown kind {kind!r}{hint}; valid: {', '.join(KINDS)}.")


def _make_param(key: str, kind: str, where: str, low: Any = None, high: Any = None, step: Any = None,
                choices: Optional[List[Any]] = None) -> Param:  # fmt: skip
    """A checked dimension: a known key, a non-empty range of the kind's type, distinct choices."""
    key = _check_key(key, where)
    if kind == "choice":
        if not choices:
            raise ConfigError(f"{where}: a choice needs at least one value.")
        for value in choices:
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise ConfigError(f"{where}: a choice must be a number, string, true/false or null, got {value!r}.")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}: the choices {choices} repeat a value.")
        return Param(key, kind, choices=tuple(choices))
    integer = kind in ("int", "logint")
    for name, value in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        ok = isinstance(value, int) if integer or name == "step" else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or (isinstance(value, float) and not math.isfinite(value)):
            want = "an integer" if integer or name == "step" else "a finite number"
            raise ConfigError(f"{where}: {name} must be {want}, got {value!r}.")
    if not low < high:
        raise ConfigError(f"{where}: the range [{low}, {high}] is empty; LOW must be below HIGH.")
    if kind in ("loguniform", "logint") and low <= 0:
        raise ConfigError(f"{where}: a log range needs LOW > 0, got {low}.")
    if step is not None and (step < 1 or (high - low) % step):
        raise ConfigError(f"{where}: step {step} must be at least 1 and divide HIGH - LOW ({high - low}).")
    return Param(
        key, kind, low=float(low) if not integer else low, high=float(high) if not integer else high, step=step
    )


def _check_key(key: str, where: str) -> str:
    if key.startswith(MODEL_ARG) or key.startswith("set."):
        name = key.split(".", 1)[1]
        if not name:
            raise ConfigError(f"{where}: name the model argument, e.g. model_args.conv.")
        return MODEL_ARG + name  # checked against the builder once the model is known (SearchSpace.check)
    key = key.replace("-", "_")
    keys = [k for k in TrainConfig.keys() if k not in FIXED_KEYS]
    if key in FIXED_KEYS:
        raise ConfigError(f"{where}: {key} cannot be searched (it places or sizes the runs); give it as an option.")
    if key not in keys:
        close = difflib.get_close_matches(key, keys + [MODEL_ARG + "NAME"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: unknown option {key!r}{hint}; search a train option "
                          f"({', '.join(keys)}) or a model argument as model_args.NAME.")  # fmt: skip
    return key


# ---------------------------------------------------------------------- the study's settings
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
        ``patient`` (:class:`~revgnn_dgl.train.pruners.ProgressPruner`: a trial is pruned only when
        its best validation score has stopped rising for ``prune_patience`` epochs and it is below
        the other trials' median), ``median`` (Optuna's MedianPruner), ``hyperband`` or ``none``.
    prune_startup, prune_warmup : int
        Trials that are never pruned, and epochs of each trial before pruning may start (patient,
        median; hyperband: its minimum resource). ``prune_warmup`` None: the learning-rate warm-up
        or a tenth of the epochs, whichever is longer (:func:`prune_warmup_epochs`).
    prune_patience : int, optional
        ``patient``: epochs without progress before a trial may be pruned; None: a tenth of the
        epochs, at least 5 (:func:`~revgnn_dgl.train.pruners.default_patience`).
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

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out).resolve() / STUDY_DB}"


def default_study_dir(config: TrainConfig) -> str:
    """``runs/tune-MODEL-DATASET``: no time stamp, so that the same command continues the same study."""
    return f"runs/tune-{config.model}-{Path(config.dataset).stem}"


# ---------------------------------------------------------------------- the study
def tune(base: TrainConfig, space: SearchSpace, settings: TuneSettings, echo: Echo = print) -> Dict[str, Any]:
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
        space = _default_space(base, echo)
    _check_settings(settings, base)
    space.check(base)
    _check_setup(base)
    base = _pin_threads(base, settings.jobs)
    _optuna()
    refuse_study_links(settings.out)  # before anything is written in the study folder
    Path(settings.out, TRIALS_DIR).mkdir(parents=True, exist_ok=True)
    with _flock(Path(settings.out) / ASK_LOCK):  # two processes creating one SQLite schema at once collide
        study = _open_study(base, space, settings, _storage(settings), create=True)
    echo(f"study {settings.study_name!r} in {_shown_url(settings)}: {len(study.trials)} trial(s) so far; "
         f"{settings.jobs} job(s), {base.threads} thread(s) each; searching {', '.join(space.to_dict().values())}")  # fmt: skip
    if stop_at is not None:
        echo(
            f"budget: {settings.budget:g} min, until {time.strftime('%H:%M:%S', time.localtime(stop_at))}; no trial "
            "starts after it, and a trial still running then is stopped at its next evaluation (recorded as pruned)"
        )
    job = _Job(base.to_dict(), space, settings, deadline, stop_at)
    if settings.jobs == 1:
        _work(job, 0, echo)
    else:
        _run_workers(job, echo)
    study = _open_study(base, space, settings, _storage(settings))
    return _finish(study, base, space, settings, time.perf_counter() - tic, echo)


#: The seeds TPE takes (numpy's) less the offsets of the workers and streams (:func:`_sampler_seed`).
MAX_SAMPLER_SEED = 2**31 - 1
#: The names a study writes in its folder (and may therefore never be links), besides the trials.
STUDY_FILES = (STUDY_DB, f"{STUDY_DB}-journal", f"{STUDY_DB}-wal", f"{STUDY_DB}-shm", BEST_CONFIG, TRIALS_CSV,
               ASK_LOCK, "optimization_history.png", "param_importances.png", "intermediate_values.png")  # fmt: skip


def _check_settings(settings: TuneSettings, base: TrainConfig) -> None:
    """Refuse, before anything starts, a worker count above the machine's process bound, a sampler seed
    out of range, and a storage that lives in one process's memory (the workers and the end of the
    command would not see the study)."""
    from ..limits import check_count, check_processes

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


def refuse_study_links(out: str) -> None:
    """Refuse a study folder where the tuner would write through a symbolic link: its own files,
    ``trials``, each ``trials/trial-NNNN`` and the files a trial writes there (its log, its lock and
    the trainer's). One line, before anything is written.

    Raises
    ------
    ConfigError
        Naming the first link and where it points.
    """
    from .rundir import RUN_FILES

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


def _check_setup(base: TrainConfig) -> None:
    """Load the dataset and build the fixed model on the meta device once, so that a setting every trial
    would fail with (a missing dataset, a bad model argument) ends the study before it starts."""
    import torch

    from ..zoo import create_model
    from .data import load_dataset_for, model_overrides

    overrides, _ = model_overrides(base, load_dataset_for(base))
    with torch.device("meta"):
        create_model(base.model, **overrides)


def _pin_threads(base: TrainConfig, jobs: int) -> TrainConfig:
    """Each trial's thread count, fixed now and written into its config.yaml, so that ``train --config
    best.yaml`` computes as the trial did (results are exact per machine and thread count)."""
    if base.threads is not None:
        return base
    from ..env import load_average, pick_threads
    from ..limits import cpu_cores

    return base.updated({"threads": pick_threads(cpu_cores(), load_average(), processes=jobs * base.nproc)})


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


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("tune needs optuna: pip install 'revgnn_dgl[tune]'.") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours to print
    return optuna


# ---------------------------------------------------------------------- the workers
WORKER_GRACE_S = 30.0  # for a stopped worker to tell the study its trial was interrupted


@dataclass
class _Job:
    """What a worker needs (picklable for a spawned process)."""

    base: Dict[str, Any]
    space: SearchSpace
    settings: TuneSettings
    deadline: Optional[float] = None  # time.time() after which no trial starts
    stop_at: Optional[float] = None  # time.time() after which a running trial stops (--budget)


def _run_workers(job: _Job, echo: Echo) -> None:
    """``jobs`` spawned worker processes on the shared study; an error in one ends the others."""
    from ..processes import INTERRUPTED, Children

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

    from ..errors import is_user_error
    from ..processes import run_child

    def on_error(err: Exception) -> int:
        if not is_user_error(err):
            raise err
        print(f"Error: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
        return 1

    status, _ = run_child(parent, lambda: _work(job, index, lambda line: print(line, flush=True)), on_error)
    sys.exit(status)


def _work(job: _Job, index: int, echo: Echo) -> None:
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
                _fail_dead_trials(study, storage, echo)
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
            _run_trial(study, trial, base, space, run_dir, echo, job.stop_at)


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (waiting for it); the kernel drops it however the process ends."""
    from ..files import file_lock, open_nofollow

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


def _fail_dead_trials(study: Any, storage: Any, echo: Echo) -> None:
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
        echo(f"trial {trial.number} was interrupted (its process ended): failed, its parameters queued again")


def _held(path: Path) -> bool:
    """Whether a process holds the flock on ``path`` (taking it for a moment to see)."""
    from ..files import acquire_lock

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


def _run_trial(study: Any, trial: Any, base: TrainConfig, space: SearchSpace, run_dir: Path, echo: Echo,
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
        echo(f"{shown}: pruned {pruned} ({time.perf_counter() - tic:.1f} s)")
        return
    except RevGNNError as err:
        message = " ".join(str(err).split())
        trial.set_user_attr("error", message)
        study.tell(trial, state=state.FAIL)
        echo(f"{shown}: failed, {message}")
        return
    except BaseException:  # Ctrl-C, a closed pipe, a full disk, a bug: not the point's fault, so tried again
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=state.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        raise
    trial.set_user_attr("test", summary["test"]["mean"])
    trial.set_user_attr("metric", summary["metric"])
    study.tell(trial, summary["val"]["mean"])
    echo(f"{shown}: val {summary['metric']} {summary['val']['mean']:.4f}, test {summary['test']['mean']:.4f} "
         f"({time.perf_counter() - tic:.1f} s)")  # fmt: skip


def _train_trial(trial: Any, config: TrainConfig, run_dir: Path, stop_at: Optional[float] = None) -> Dict[str, Any]:
    """Train the trial's run; its output goes to ``RUN_DIR/train.log``; every evaluation reports the
    best validation score so far (the objective) to the pruner. Past ``stop_at`` (``time.time()``,
    the end of ``--budget``) the trial stops at its next evaluation, as a pruned one."""
    optuna = _optuna()
    from .loop import train

    best: Dict[str, float] = {}

    def on_epoch(record: Dict[str, Any]) -> None:
        if record["val"] is None:
            return
        if stop_at is not None and time.time() >= stop_at:  # every seed's evaluations: the budget is wall time
            why = f"at epoch {record['epoch']} of seed {record['seed']}: the budget ended"
            trial.set_user_attr("budget", True)
            echo(f"stopped {why}: an interrupted run, which train --resume would continue")
            raise optuna.TrialPruned(why)
        if record["seed"] != config.seed:  # the first seed's epochs are the steps
            return
        best["val"] = max(best.get("val", -math.inf), record["val"])
        trial.report(best["val"], record["epoch"])
        if trial.should_prune():
            why = f"at epoch {record['epoch']} (best val {best['val']:.4f})"
            echo(f"pruned by the study {why}: an interrupted run, which train --resume would continue")
            raise optuna.TrialPruned(why)

    from .rundir import open_nofollow

    log_fd = open_nofollow(run_dir / "train.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(log_fd, "a", encoding="utf-8") as log, warnings.catch_warnings():

        def echo(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        # The run's warnings (a dataset's, every evaluation's) are the trial's: in its log, not on the screen.
        warnings.showwarning = lambda message, category, *args, **kwargs: echo(f"warning: {message}")
        return train(config, echo=echo, progress=False, on_epoch=on_epoch)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------- the study's outputs
def _finish(study: Any, base: TrainConfig, space: SearchSpace, settings: TuneSettings, seconds: float,
            echo: Echo) -> Dict[str, Any]:  # fmt: skip
    """The table of the best trials, best.yaml, trials.csv and the plots; returns the summary."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    names = {state.COMPLETE: "complete", state.PRUNED: "pruned", state.FAIL: "failed", state.RUNNING: "running"}
    counts = {name: sum(t.state == s for t in trials) for s, name in names.items()}
    done = sorted((t for t in trials if t.state == state.COMPLETE), key=lambda t: -t.value)
    out = Path(settings.out)
    summary: Dict[str, Any] = {"study": settings.study_name, "storage": _shown_url(settings), "trials": counts,
                               "seconds": seconds, "best": None}  # fmt: skip
    states = "".join(f", {n} {k}" for k, n in counts.items() if n)
    echo(f"{len(trials)} trial(s){states}; this run took {seconds:.1f} s")
    if not done:
        echo("no trial has finished yet: no best config.")
        return summary
    _check_attributes(done, settings)
    metric = done[0].user_attrs.get("metric", "val")
    rows = [("trial", f"val {metric}", "test", *study.best_trial.params.keys(), "run")]
    for t in done[: settings.top]:
        rows.append((str(t.number), f"{t.value:.4f}", f"{t.user_attrs.get('test', float('nan')):.4f}",
                     *(_short(t.params.get(k)) for k in rows[0][3:-1]), _relative(t.user_attrs["run_dir"])))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    echo(f"best {len(rows) - 1} trial(s) by validation {metric}:")
    for row in rows:
        echo("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    best = done[0]
    from .rundir import CONFIG_FILE, write_atomic, write_yaml

    saved = Path(best.user_attrs["run_dir"]) / CONFIG_FILE
    # The trial's own config.yaml (its thread count included), unless it ran on another machine.
    config = (
        TrainConfig.from_file(saved) if saved.is_file() else space.apply(base, best.params, "the best trial")
    ).to_dict()
    config.pop("out")  # train --config BEST gives the new run its own folder
    write_yaml(out / BEST_CONFIG, config)
    summary["best"] = {"trial": best.number, "val": best.value, "test": best.user_attrs.get("test"),
                       "params": best.params, "run_dir": best.user_attrs["run_dir"], "config": str(out / BEST_CONFIG)}  # fmt: skip
    frame = study.trials_dataframe()
    for column in ("user_attrs_run_dir", "user_attrs_lock"):  # the storage keeps absolute paths; the table is shared
        if column in frame:
            frame[column] = [_relative(p) if isinstance(p, str) else p for p in frame[column]]
    write_atomic(out / TRIALS_CSV, frame.to_csv(index=False))  # whole, and never through a link
    summary["plots"] = _plots(study, out, echo)
    shown = ", ".join(f"{k}={_short(v)}" for k, v in best.params.items())
    echo(f"best config (trial {best.number}): {shown} (val {metric} {best.value:.4f}); written to {out / BEST_CONFIG}")
    retrain = f"revgnn-dgl train --config {out / BEST_CONFIG} --runs 3 --out {_retrain_dir(out)}"
    summary["retrain"] = retrain
    echo(f"train it for 3 seeds: {retrain}")
    return summary


def _check_attributes(done: Sequence[Any], settings: TuneSettings) -> None:
    """Refuse, in one line, finished trials whose recorded attributes are not what the tuner writes (an
    edited database): a run directory as text, a finite test score, a metric name."""
    for t in done:
        attrs = t.user_attrs
        test = attrs.get("test", 0.0)
        if (
            not isinstance(attrs.get("run_dir"), str)
            or not isinstance(attrs.get("metric", "val"), str)
            or isinstance(test, bool)
            or not isinstance(test, (int, float))
            or not math.isfinite(test)
        ):
            raise ConfigError(f"study {settings.study_name!r} in {_shown_url(settings)}: trial {t.number}'s recorded "
                              "run_dir, test or metric is not what revgnn-dgl writes (an edited database); start "
                              "another study with --out DIR or --study-name NAME.")  # fmt: skip


def _retrain_dir(out: Path) -> str:
    """Where the printed 3-seed command trains the best config: beside the study folder."""
    return str(out.parent / f"{out.name}-best")


def _default_space(base: TrainConfig, echo: Echo) -> SearchSpace:
    """No ``--space``: the default space of this model on this kind of graph (:mod:`.spaces`), said in one line."""
    from .data import load_dataset_for
    from .spaces import default_space_items

    items, kind = default_space_items(base, load_dataset_for(base))
    space = parse_space(items, "the default search space")
    echo(
        f"no --space given: searching the default space for {kind}: {', '.join(space.to_dict().values())} "
        "(--space or --space-file to choose)"
    )
    return space


def _relative(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


LEGEND_ROWS = 15


def _fit_legend(axes: Any) -> None:
    """Optuna's one-legend-row-per-trial column runs off the figure past a dozen trials: fold it
    into columns of at most LEGEND_ROWS small entries."""
    legend = getattr(axes, "get_legend", lambda: None)()
    if legend is None or len(legend.get_texts()) <= LEGEND_ROWS:
        return
    handles, labels = axes.get_legend_handles_labels()
    columns = -(-len(labels) // LEGEND_ROWS)
    axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=columns,
                fontsize="x-small", borderaxespad=0.0)  # fmt: skip


def _plots(study: Any, out: Path, echo: Echo) -> List[str]:
    """Optuna's optimization history, parameter importances and intermediate values, as PNGs."""
    import io

    import matplotlib

    from .rundir import write_atomic

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    written = []
    for name, plot in (("optimization_history", vis.plot_optimization_history),
                       ("param_importances", vis.plot_param_importances),
                       ("intermediate_values", vis.plot_intermediate_values)):  # fmt: skip
        path = out / f"{name}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental API; "too few trials for importances" (said below)
                axes = plot(study)
            figure = getattr(axes, "figure", None) or axes.flat[0].figure
            _fit_legend(axes)
            figure.tight_layout()
            image = io.BytesIO()
            figure.savefig(image, format="png", dpi=100, bbox_inches="tight")  # the legend sits outside the axes
            write_atomic(path, image.getvalue())  # whole, and never through a link
            plt.close(figure)
            written.append(str(path))
        except (ValueError, RuntimeError) as err:  # e.g. importances of fewer than two finished trials
            echo(f"note: no {name} plot: {' '.join(str(err).split())}")
    return written
