"""The training loop, the paper's way, with runs that can be interrupted and resumed exactly.

Read from the top: :func:`train` is the whole job as a sequence of named steps (check the
configuration; load the data and check the model on the meta device; announce; lock and open the
run directory; each seeded run; the summary). A seeded run (:class:`_Run`) starts fresh or from
its state, then trains, evaluates and saves epoch by epoch. :func:`train_epoch` is one epoch's
optimizer steps over random parts. In a data-parallel job the same code runs on every rank inside
its :class:`~revgnn_dgl.train.distributed.Context`; rank 0 alone evaluates and writes.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
import time
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..env import environment, load_average, thread_note
from ..errors import ConfigError, RevGNNError, TrainingDiverged
from ..faults import fault_point
from ..limits import check_memory, check_threads, cpu_cores, format_bytes
from ..models.revgat_loss import log_ce_loss, self_kd_loss
from ..zoo import create_model, get_config
from ..zoo.architectures import check_sizes, estimate_state_bytes
from ..zoo.checkpoint import save_checkpoint
from .baselines import below, fit_baselines, report_lines, wants_baselines
from .config import RESUMABLE_KEYS, TrainConfig
from .data import DeviceData, check_parts, load_dataset_for, model_overrides, random_parts
from .device import seed_everything
from .diagnosis import chance_diagnosis, node_features
from .distgraph import DistData, DistEvaluator, check_step_parts
from .distributed import Context
from .evaluation import Evaluator, chance_level
from .inputs import predict
from .logger import RunLoggers
from .recipe import drop_edges, drop_input, lr_at, make_optimizer, set_lr
from .rundir import (
    BEST_FILE,
    CONFIG_FILE,
    LAST_FILE,
    LOCK_FILE,
    METRICS_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    FreshStart,
    RunLock,
    append_metrics,
    read_metrics,
    refuse_existing_run,
    refuse_links,
    remove_stale_temp_files,
    remove_trainer_files,
    run_dirs,
    truncate_metrics,
    write_json,
    write_yaml,
)
from .state import TrainingStateError, check_optimizer_state, load_training_state, restore_rng, save_training_state

Echo = Callable[[str], None]
#: ``train(on_epoch=...)``: called with each epoch's record (and the run's seed).
EpochHook = Callable[[Dict[str, Any]], None]

#: What chance level means for each metric, for the warning of a run that does not learn.
_CHANCE = {"rocauc": "random scores", "accuracy": "always the most frequent training class"}

#: The random stream of the training partitions (evaluation uses its own, EVAL_STREAM).
TRAIN_STREAM = 0


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    echo: Echo = print,
    progress: Optional[bool] = None,
    command: Optional[str] = None,
    dist: Optional[Context] = None,
    on_epoch: Optional[EpochHook] = None,
    overwrite: bool = False,
    baseline: Optional[bool] = False,
) -> Dict[str, Any]:
    """Train ``config.runs`` runs and write their outputs and ``summary.json`` to ``config.out``.

    Everything is validated (device, dataset, model arguments) before anything is written to
    ``config.out``; the directory is then locked for the whole training.

    Parameters
    ----------
    config : TrainConfig
        The run's settings; ``out`` must be set.
    resume : bool
        Continue the runs in ``config.out`` from their saved states (runs not started yet start
        fresh, finished ones are kept). With the same config the result equals an uninterrupted run.
    echo : callable
        Receives the human-readable progress lines.
    progress : bool, optional
        Show a tqdm bar per run; None: when standard output is a terminal (otherwise one log
        line per epoch).
    command : str, optional
        The command line that started the run, recorded in ``summary.json``.
    dist : Context, optional
        This process's place in a data-parallel job of ``config.nproc`` processes, which all call
        ``train`` (:func:`revgnn_dgl.train.launch` starts them); None for one process. Rank 0
        alone echoes, evaluates and writes (and locks ``out``).
    on_epoch : callable, optional
        Called after each epoch's files are written, with a copy of its metrics record and the
        run's ``seed`` (a tuner's hook: :mod:`revgnn_dgl.train.tune` reports the validation scores
        and prunes). What it raises stops the training and propagates; the run directory is then
        an interrupted run, which ``resume`` continues from its last state (every epoch with the
        default ``save_every``). One process only.
    overwrite : bool
        Replace what ``out`` holds of the trainer's names (a run, ``summary.json``, checkpoints,
        the ``run-K`` folders of this config) instead of refusing it.
    baseline : bool, optional
        Also fit the shallow baselines (:mod:`revgnn_dgl.train.baselines`: logistic regression on
        the features, a 2-layer GCN) on the same split after the runs, record them in
        ``summary.json`` and print the run's mean beside them, warning when it is below either.
        None: when the dataset has no card recipe and the run is long enough
        (:func:`~revgnn_dgl.train.baselines.wants_baselines`; ``revgnn-dgl train``'s default).
        One process only (a data-parallel job fits none).

    Returns
    -------
    dict
        The summary: per-run best validation score and its test score, and their mean and std.

    Raises
    ------
    ConfigError
        When ``out`` is missing, already holds a run or files of the trainer's names and neither
        ``resume`` nor ``overwrite`` is set, is locked by
        another process, or when a setting is invalid, or ``config.nproc`` is not the number of
        processes running it; :class:`TrainingDiverged` when the loss or a gradient becomes
        non-finite.
    """
    ctx = dist if dist is not None else Context()
    echo = echo if ctx.is_main else ctx.echo_fn
    if on_epoch is not None and ctx.active:
        raise ConfigError("on_epoch is for one-process training: rank 0 alone would stop.")
    out = _check_config(config, resume, ctx, overwrite)
    device, dataset, overrides, changes = _check_data_and_model(config, ctx)
    _announce(config, ctx, device, dataset.name, changes, echo)
    # What out held before anything was written: a failed start removes only what it created.
    start = FreshStart(config) if ctx.is_main and not resume else None
    results: List[Dict[str, Any]] = []
    with ExitStack() as held:
        try:
            data = _open_run_directory(
                config, out, resume, held, ctx, echo, dataset, device, overrides, start, overwrite
            )
            for run_config in _run_configs(config):
                results.append(
                    _Run.start(run_config, data, overrides, device, resume, echo, ctx).train(progress, on_epoch)
                )
            fit = ctx.is_main and not ctx.active and wants_baselines(config, baseline)
            baselines = _fit_baselines(data, config, echo) if fit else None
            summary = _write_summary(out, results, dataset.metric_name, device, command, ctx, baselines)
        except BaseException:
            if ctx.is_main and results and len(results) < config.runs:
                _write_partial_summary(config, out, results, dataset.metric_name, device, command, echo)
            if start is not None and start.locked:  # never after a refusal by the lock: the files are the holder's
                start.undo(echo)
            raise
    for split in ("val", "test"):
        stats = summary[split]
        echo(f"{split} {summary['metric']}: {stats['mean']:.4f} ± {stats['std']:.4f} ({len(results)} run(s))")
    for line in report_lines(summary, config.model):
        echo(line)
    return summary


# ---------------------------------------------------------------------- the steps of train(), in order
def _check_config(config: TrainConfig, resume: bool, ctx: Context, overwrite: bool = False) -> Path:
    """The output directory, once the job's size and ``out`` are right for this config."""
    if config.nproc != ctx.world_size:
        where = f"{ctx.world_size} processes run it" if ctx.active else "this is one process"
        raise ConfigError(
            f"nproc is {config.nproc} but {where}; start {config.nproc} with revgnn_dgl.train.launch(config), "
            f"`revgnn-dgl train --nproc {config.nproc}` or torchrun."
        )
    if not config.out:
        raise ConfigError("no output directory: set out (--out DIR).")
    out = Path(config.out)
    with ctx.guard("checking the output directory"):  # only rank 0 need see it
        if ctx.is_main:
            refuse_links(config)
        if ctx.is_main and not resume:
            refuse_existing_run(config, overwrite)
    return out


def _check_data_and_model(config: TrainConfig, ctx: Context) -> Tuple[torch.device, Any, Dict[str, Any], List[str]]:
    """The device, the loaded dataset, and the model arguments for it, checked by a build on the meta device."""
    if check_threads(config.threads) is not None:  # None: as the caller set torch (the CLI resolves a default)
        torch.set_num_threads(config.threads)
    device = ctx.use_device(config.device)
    with ctx.guard("loading the data and building the model"):
        if config.amp and device.type != "cuda":
            raise ConfigError("--amp needs a CUDA device; mixed precision is not used on CPU.")
        dataset = load_dataset_for(config)
        check_parts(config, dataset)
        overrides, changes = model_overrides(config, dataset)
        _check_training_memory(config, dataset, overrides)  # cheap: before a deep meta build
        # Build once on the meta device: bad arguments fail here, before --out is touched.
        with torch.device("meta"):
            create_model(config.model, **overrides)
        if config.partitions:
            if config.teacher or not ctx.active:
                raise ConfigError("--partitions trains through graph servers with trainer processes (--nproc N, or "
                                  "DGL's launcher), without --teacher.")  # fmt: skip
            check_step_parts(config, max(1, ctx.world_size // dataset.parts))
        if config.teacher:  # a crafted teacher is refused before --out is touched
            _teacher_checkpoint(config)
    return device, dataset, overrides, changes


#: Architectures whose activations do not grow with depth (reversible or implicit).
_CONSTANT_MEMORY_ARCHITECTURES = frozenset({"revgnn", "wt-revgnn", "revgat", "deq-gnn"})


def _check_training_memory(config: TrainConfig, dataset: Any, overrides: Dict[str, Any]) -> None:
    """Refuse a run whose weights (four copies: weights, gradients, Adam's two moments) and a lower
    bound of one part's activations (a float per channel per node and per edge, per layer
    unless reversible) exceed the machine's memory."""
    card = get_config(config.model)
    arguments = {**card["arguments"], **overrides}
    check_sizes(card["architecture"], arguments)
    try:
        weights = 4 * estimate_state_bytes(card["architecture"], arguments)
    except (TypeError, ValueError, RuntimeError):  # bad arguments: the meta build that follows names them
        return
    hidden, layers = arguments.get("hidden"), arguments.get("num_layers")
    hidden = hidden if isinstance(hidden, int) else 0
    kept = 1 if card["architecture"] in _CONSTANT_MEMORY_ARCHITECTURES or not isinstance(layers, int) else layers
    parts = config.train_parts
    nodes = math.ceil(dataset.num_nodes / parts)
    edges = dataset.num_edges / (parts * parts)  # random parts keep about 1/parts of each node's edges
    activations = 4 * hidden * (nodes + edges) * kept
    check_memory(f"training {config.model!r} ({format_bytes(weights)} of weights, gradients and optimizer state, "
                 f"at least {format_bytes(activations)} of activations per part)", weights + activations)  # fmt: skip


def _announce(
    config: TrainConfig, ctx: Context, device: torch.device, dataset: str, changes: List[str], echo: Echo
) -> None:
    """Say where the run trains and print its whole resolved configuration."""
    if ctx.active:
        echo(f"{ctx.world_size} processes, device {device} on rank 0 (cuda:LOCAL_RANK on each, if CUDA); "
             f"{config.parts_per_step * ctx.world_size} part(s) per optimizer step")  # fmt: skip
    else:
        echo(f"device: {device}" + (" (picked by --device auto)" if config.device == "auto" else ""))
    if changes:
        echo(f"model {config.model}, from dataset {dataset} and overrides: {', '.join(changes)}")
    threads, cores, load = torch.get_num_threads(), cpu_cores(), load_average()
    echo(f"threads: {threads} per process ({cores} cores, load {load:.1f})")
    note = thread_note(threads, ctx.world_size, cores, load)
    if note:
        echo(note)
    echo("configuration:")
    for key, value in config.to_dict().items():
        echo(f"  {key}: {value}")
    _defaults_note(config, echo)


def _open_run_directory(
    config: TrainConfig,
    out: Path,
    resume: bool,
    held: ExitStack,
    ctx: Context,
    echo: Echo,
    dataset: Any,
    device: torch.device,
    overrides: Dict[str, Any],
    start: Optional[FreshStart] = None,
    overwrite: bool = False,
) -> DeviceData:
    """Lock ``out`` (rank 0, for the whole training), check a resume, write config.yaml; the data on its device.

    Every check comes before the first write, so a refused command leaves the directory as it was.
    """
    with ctx.guard("preparing the run directory"):
        if ctx.is_main:  # rank 0 alone writes, so it alone locks
            refuse_links(config)
            lock = held.enter_context(RunLock(out, sign=False))
            try:
                if not resume:
                    refuse_existing_run(config, overwrite)  # again, under the lock
                else:
                    _check_nproc(config)
                    _check_resume(config, overrides)
            except BaseException:
                held.close()  # release the lock, and remove it if this command made it
                if lock.created:
                    (out / LOCK_FILE).unlink(missing_ok=True)
                raise
            lock.sign()
            if start is not None:
                start.locked = True  # from here on, what the trainer's names hold in out is this command's
            if overwrite and not resume:
                for path in remove_trainer_files(config):
                    echo(f"--overwrite: removed {path}")
            for folder in [out] + run_dirs(config):
                for path in remove_stale_temp_files(folder):
                    echo(f"removed {path.name}, left by an interrupted write")
            write_yaml(out / CONFIG_FILE, config.to_dict())
        if config.partitions:
            return DistData.connect(dataset, ctx.rank, ctx.world_size, device)
        return DeviceData.on(dataset, device)


def _write_partial_summary(
    config: TrainConfig,
    out: Path,
    results: List[Dict[str, Any]],
    metric: str,
    device: torch.device,
    command: Optional[str],
    echo: Echo,
) -> None:
    """An interrupted or failed ``--runs N``: the summary of the seeds that finished (``"runs_planned"`` says
    how many were asked for); ``--resume`` finishes the others and rewrites it."""
    try:
        summary = {**summarize(results, metric), "runs_planned": config.runs}
        summary["environment"] = {k: v for k, v in environment(device).items() if k != "load_avg_1m"}
        if command:
            summary["command"] = command
        write_json(out / SUMMARY_FILE, summary)
        echo(f"{out / SUMMARY_FILE}: the {len(results)} of {config.runs} run(s) that finished")
    except (OSError, ValueError, ConfigError) as err:  # the error that stopped the runs matters more
        echo(f"warning: no summary of the finished runs: {err}")


def _run_configs(config: TrainConfig) -> List[TrainConfig]:
    """Each run's own config: seed ``seed + i``, one run, its own directory."""
    return [
        dataclasses.replace(config, seed=config.seed + i, runs=1, out=str(run_dir))
        for i, run_dir in enumerate(run_dirs(config))
    ]


def _fit_baselines(data: DeviceData, config: TrainConfig, echo: Echo) -> Optional[Dict[str, Any]]:
    """The shallow baselines on the run's split (None, said, when they cannot be fitted: the runs are kept)."""
    echo("fitting the baselines on the same split: logistic regression on the features, a 2-layer GCN ...")
    try:
        return fit_baselines(data, config.seed)
    except (ValueError, RuntimeError, ImportError, RevGNNError) as err:
        echo(f"note: no baselines: {' '.join(str(err).split())[:300]}")
        return None


def _write_summary(
    out: Path,
    results: List[Dict[str, Any]],
    metric: str,
    device: torch.device,
    command: Optional[str],
    ctx: Context,
    baselines: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    summary = summarize(results, metric)
    if baselines:
        summary["baselines"] = baselines
        summary["below_baselines"] = below(summary["val"]["mean"], baselines)
    # Where the numbers come from: they reproduce bit for bit only on the same CPU and threads.
    summary["environment"] = {k: v for k, v in environment(device).items() if k != "load_avg_1m"}
    if command:
        summary["command"] = command
    with ctx.guard("writing the summary"):
        if ctx.is_main:
            write_json(out / SUMMARY_FILE, summary)
    return summary


def _defaults_note(config: TrainConfig, echo: Echo) -> None:
    """Say what the ogbn-proteins defaults mean when they meet another dataset."""
    if not _uses_big_defaults(config):
        return
    args = get_config(config.model)["arguments"]
    depth = config.num_layers or args.get("num_layers")
    echo(
        f"note: {config.dataset} gets the ogbn-proteins recipe: {config.model} ({depth} layers x "
        f"{config.hidden or args.get('hidden')} channels), {config.epochs} epochs of {config.train_parts} parts. "
        "For a small graph start smaller, e.g. --model revgnn-112 --num-layers 16 --hidden 64 --train-parts 1 "
        "--epochs 300 --lr 0.005 (see the README)."
    )


def _uses_big_defaults(config: TrainConfig) -> bool:
    """Whether the ogbn-proteins defaults meet another dataset (then the first epoch's pace is reported)."""
    defaults = TrainConfig()
    return config.dataset != defaults.dataset and config.model == defaults.model


def _check_nproc(config: TrainConfig) -> None:
    """Refuse to resume a run with another number of processes than it was trained with."""
    path = Path(config.out) / CONFIG_FILE
    saved = TrainConfig.from_file(path).nproc if path.exists() else config.nproc
    if saved != config.nproc:
        raise ConfigError(
            f"{config.out} was trained by {saved} process(es), not {config.nproc}: its optimizer steps averaged "
            f"{saved} x parts_per_step parts; resume it with nproc {saved}."
        )


def _check_resume(config: TrainConfig, overrides: Dict[str, Any]) -> None:
    """Refuse a resume whose settings differ from the saved runs', that would train backwards, whose
    metrics are damaged, whose trained epochs have no state to continue from, or whose state does
    not fit the model and optimizer (checked on the meta device)."""
    with torch.device("meta"):
        model = create_model(config.model, **overrides)
    optimizer = make_optimizer(model.parameters(), config)
    for run_config in _run_configs(config):
        run_dir = Path(run_config.out)
        state_path = run_dir / STATE_FILE
        records = read_metrics(run_dir)  # a damaged file is refused here, before anything is written
        if records and not state_path.exists():
            raise ConfigError(
                f"{run_dir} has {len(records)} epoch(s) in {METRICS_FILE} but no {STATE_FILE}: it cannot be "
                "continued exactly, and starting again would overwrite its history. Nothing was changed; train "
                "anew with another --out."
            )
        if state_path.exists():
            state = load_training_state(state_path)
            _check_state_fits(model, optimizer, state, state_path, config.model)
            _check_best(state, run_dir, state_path)
            saved = state.extra.get("config")
            if saved is not None:
                _check_resumable(run_config, TrainConfig.from_mapping(saved, str(state_path)), run_dir)
            done = state.epoch
            if config.epochs < done:
                raise ConfigError(
                    f"{run_dir} has already trained {done} epochs; --epochs {config.epochs} must be more than that."
                )


def _check_resumable(config: TrainConfig, saved: TrainConfig, where: Path) -> None:
    """Refuse a config that differs from the run's saved one in anything but RESUMABLE_KEYS."""
    ours, theirs = config.to_dict(), saved.to_dict()
    differ = [k for k in ours if k not in RESUMABLE_KEYS and ours[k] != theirs.get(k)]
    if differ:
        pairs = ", ".join(f"{k}: saved {theirs.get(k)!r}, now {ours[k]!r}" for k in differ)
        raise ConfigError(
            f"{where}: the configuration differs from the one the run was trained with ({pairs}); "
            f"a resumed run must keep it (only {', '.join(RESUMABLE_KEYS[:-1])} may change)."
        )


# ---------------------------------------------------------------------- one seeded run
class _Run:
    """One seeded run in its directory: start (fresh or from its state), epochs, evaluation, files.

    In a data-parallel job every rank trains, and rank 0 alone evaluates and writes; the others
    wait for it in the check at the end of each epoch.
    """

    def __init__(self, config: TrainConfig, data: DeviceData, model: nn.Module, device: torch.device, echo: Echo,
                 ctx: Context) -> None:  # fmt: skip
        self.config, self.data, self.model, self.echo, self.ctx = config, data, model, echo, ctx
        self.run_dir = Path(config.out)
        self.state_path = self.run_dir / STATE_FILE
        self.optimizer = make_optimizer(model, config)
        self.chance = chance_level(data.dataset)
        self.collective = isinstance(data, DistData)
        self.metric = data.dataset.metric_name
        self.best: Dict[str, Any] = {"epoch": None, "val": None, "test": None}
        self.since_best, self.at_chance, self.stopped, self.start_epoch = 0, 0, None, 0
        self.evaluator: Optional[Evaluator] = None
        self.teacher_logits: Optional[Tensor] = None
        self.net: nn.Module = model
        self.loggers: Optional[RunLoggers] = None  # rank 0's csv / tensorboard logs, while training
        self.big_defaults = _uses_big_defaults(config)
        # What every checkpoint records besides its epoch's scores.
        self.meta = {
            "dataset": config.dataset, "dataset_options": config.dataset_options, "metric": self.metric,
            "seed": config.seed, "eval_parts": config.eval_parts, "eval_views": config.eval_views,
            "use_labels": config.use_labels, "label_iters": config.label_iters,
        }  # fmt: skip

    @classmethod
    def start(cls, config: TrainConfig, data: DeviceData, overrides: Dict[str, Any], device: torch.device,
              resume: bool, echo: Echo, ctx: Context) -> "_Run":  # fmt: skip
        """The seeded model and optimizer, restored from the run's state when resuming."""
        seed_everything(config.seed)
        run = cls(config, data, create_model(config.model, **overrides).to(device), device, echo, ctx)
        state = None
        with ctx.guard(f"reading {run.state_path}"):
            if ctx.is_main:
                run.run_dir.mkdir(parents=True, exist_ok=True)
                if resume and run.state_path.exists():
                    state = load_training_state(run.state_path)
        state = ctx.broadcast(state)  # the other ranks need not see rank 0's disk
        with ctx.guard(f"restoring {run.state_path}"):
            if run.collective:  # every trainer scores its share of the parts
                run.evaluator = DistEvaluator(data, config.eval_parts, config.eval_views, config.seed, config=config)
            elif ctx.is_main:
                run.evaluator = Evaluator(
                    data, config.eval_parts, config.eval_views, config.seed, amp=config.amp, config=config
                )
            run.teacher_logits = _teacher_logits(config, data, device)
            if state is not None:
                run._restore(state)
            elif ctx.is_main:
                (run.run_dir / METRICS_FILE).write_text("")
            if ctx.is_main:
                write_yaml(run.run_dir / CONFIG_FILE, config.to_dict())
        run.net = ctx.wrap(run.model)  # DDP in a job; it broadcasts rank 0's weights, the same on every rank here
        if run.start_epoch == 0:
            params = sum(p.numel() for p in run.model.parameters())
            echo(f"run {run.run_dir} (seed {config.seed}): {params:,} parameters, {config.epochs} epochs")
        return run

    def _restore(self, state: Any) -> None:
        _check_state_fits(self.model, self.optimizer, state, self.state_path, self.config.model)
        try:
            self.model.load_state_dict(state.model)
            self.optimizer.load_state_dict(state.optimizer)
        except (RuntimeError, ValueError, KeyError) as err:
            raise TrainingStateError(
                f"{self.state_path} does not fit model {self.config.model!r}: {str(err).splitlines()[0]}"
            ) from None
        restore_rng(state.rng)
        self.start_epoch, self.best = state.epoch, state.extra["best"]
        self.since_best, self.at_chance = state.extra.get("since_best", 0), state.extra.get("at_chance", 0)
        self.stopped = state.extra.get("stopped")
        if self.ctx.is_main:
            note = truncate_metrics(self.run_dir / METRICS_FILE, self.start_epoch)
            if note:
                self.echo(f"note: {note}")
        self.echo(f"resuming {self.run_dir} after epoch {self.start_epoch}")

    def train(self, progress: Optional[bool], on_epoch: Optional[EpochHook] = None) -> Dict[str, Any]:
        """The remaining epochs; returns the run's best epoch, validation and test scores."""
        config, ctx = self.config, self.ctx
        if ctx.is_main and config.logger:
            self.loggers = RunLoggers(
                config.logger.split(","), self.run_dir, self.start_epoch, self.metric, config.to_dict()
            )
        try:
            return self._train(progress, on_epoch)
        finally:
            if self.loggers is not None:
                self.loggers.close()

    def _train(self, progress: Optional[bool], on_epoch: Optional[EpochHook]) -> Dict[str, Any]:
        config, ctx = self.config, self.ctx
        if self.start_epoch >= config.epochs or self.stopped:
            why = f"stopped early at epoch {self.stopped}" if self.stopped else f"trained its {self.start_epoch} epochs"
            self.echo(f"{self.run_dir} has already finished ({why}): nothing to train; give --epochs N for more.")
        with _ProgressReport(config, self.start_epoch, progress, ctx, self.echo) as report:
            for epoch in range(self.start_epoch + 1, config.epochs + 1):
                if self.stopped:
                    break
                tic = time.perf_counter()
                record = self.train_epoch(epoch)
                # On a partitioned graph evaluation is collective; rank 0 gets the scores.
                scores = self.evaluator(self.model) if self.collective and self._due(epoch) else None
                with ctx.guard(f"evaluating and saving epoch {epoch}"):
                    if ctx.is_main:
                        improved = self.evaluate(record, scores)
                        self.save(record, improved, tic)
                        report.epoch(record, self)
                if on_epoch is not None:  # the epoch's files are whole: what it raises leaves a resumable run
                    on_epoch({**record, "seed": config.seed})
                self.stopped = ctx.broadcast(self.stopped)  # rank 0 decides an early stop
        self.best = ctx.broadcast(self.best)  # rank 0 evaluated
        if (
            self.best["val"] is None
        ):  # an early stop cannot come before an evaluation; a resumed finished run keeps its best
            raise ConfigError(f"{self.run_dir}: no evaluation was recorded.")
        self.echo(f"seed {config.seed}: best val {self.metric} {self.best['val']:.4f} at epoch {self.best['epoch']}, "
                  f"test {self.best['test']:.4f}")  # fmt: skip
        return {"seed": config.seed, **self.best, "epochs": self.stopped or config.epochs}

    def train_epoch(self, epoch: int) -> Dict[str, Any]:
        """One epoch's optimizer steps; the start of its metrics record."""
        config = self.config
        lr = lr_at(epoch, config)
        set_lr(self.optimizer, lr)
        fault_point(f"rank{self.ctx.rank}-epoch{epoch}")  # a test hook, a no-op unless REVGNN_DGL_FAULT asks
        # The partitions depend on (seed, epoch) only, so a resumed run, and every rank, draws the same ones.
        rng = np.random.default_rng([config.seed, TRAIN_STREAM, epoch, *self.data.stream])
        try:
            loss = train_epoch(self.net, self.optimizer, self.data, config.train_parts, rng, config.grad_clip, config,
                               self.teacher_logits, dist=self.ctx)  # fmt: skip
        except TrainingDiverged as err:
            kept = (
                f"The checkpoints of epoch {epoch - 1} in {self.run_dir} are kept."
                if epoch > 1
                else "Nothing was kept."
            )
            raise TrainingDiverged(
                f"epoch {epoch}: {err}; training stopped before the update. {kept} Lower --lr, keep --grad-clip on, "
                "or check the inputs."
            ) from None
        return {"epoch": epoch, "loss": loss, "lr": lr, "val": None, "test": None}

    def _due(self, epoch: int) -> bool:
        return epoch % self.config.eval_every == 0 or epoch == self.config.epochs

    def evaluate(self, record: Dict[str, Any], scores: Optional[Dict[str, float]] = None) -> bool:
        """Score the model when this epoch is evaluated (or take the ``scores`` of a collective
        evaluation); track the best, early stopping and chance level.

        Returns whether the validation score improved (the best checkpoint is then rewritten).
        """
        config, epoch = self.config, record["epoch"]
        solver = solver_report(self.model)  # read before evaluation runs new solves
        if solver:
            record["solver"] = solver
        if not self._due(epoch):
            return False
        assert self.evaluator is not None
        if scores is None:
            started = time.perf_counter()
            scores = self.evaluator(self.model)
            record["eval_time"] = (
                time.perf_counter() - started
            )  # evaluation's share of the epoch (a benchmark reads it)
        if not all(math.isfinite(v) for v in scores.values()):
            raise TrainingDiverged(f"epoch {epoch}: the model's outputs are not finite ({scores}); training stopped.")
        record.update(scores)
        improved = self.best["val"] is None or record["val"] > self.best["val"]
        if improved:
            self.best = {"epoch": epoch, "val": record["val"], "test": record["test"]}
            self.since_best = 0
        else:
            self.since_best += 1
        chance = self.chance
        self.at_chance = self.at_chance + 1 if chance is not None and record["val"] <= chance + 0.005 else 0
        diagnosis = chance_diagnosis(config, self.metric, chance, self.best["val"], epoch, node_features(self.data))
        if diagnosis:
            self.echo(diagnosis)
        if config.chance_patience and self.at_chance == config.chance_patience:
            self.echo(
                f"warning: the validation {self.metric} ({record['val']:.4f} at epoch {epoch}) has stayed at or "
                f"below chance level ({chance:.4f}, {_CHANCE[self.metric]}) for {self.at_chance} evaluations: "
                "the run is not learning. "
                "Try a lower --lr, a shallower model, or check the labels."
            )
        if config.patience and self.since_best >= config.patience:
            self.stopped = epoch
        return improved

    def save(self, record: Dict[str, Any], improved: bool, tic: float) -> None:
        """The epoch's files, each written whole: best checkpoint (if improved), metrics line, and
        every ``save_every`` epochs (and at the end) the last checkpoint and the state."""
        if improved:
            save_checkpoint(
                self.run_dir / BEST_FILE, self.model, metadata={**self.meta, **self.best, "loss": record["loss"]}
            )
        record["time"] = time.perf_counter() - tic
        append_metrics(self.run_dir / METRICS_FILE, record)
        if self.loggers is not None:
            self.loggers.log(record)
        epoch = record["epoch"]
        if epoch % self.config.save_every and epoch != self.config.epochs and not self.stopped:
            return  # a resume redoes the epochs since the last state, exactly
        save_checkpoint(self.run_dir / LAST_FILE, self.model, metadata={**self.meta, **record})
        extra = {"best": self.best, "since_best": self.since_best, "at_chance": self.at_chance, "stopped": self.stopped,
                 "config": self.config.to_dict()}  # fmt: skip
        save_training_state(
            self.state_path, model=self.model, optimizer=self.optimizer, epoch=record["epoch"], extra=extra
        )


class _ProgressReport:
    """What a run shows per epoch: a tqdm bar on a terminal, else one line; nothing on ranks but 0."""

    def __init__(self, config: TrainConfig, start: int, progress: Optional[bool], ctx: Context, echo: Echo) -> None:
        from tqdm.auto import tqdm

        self.config, self.start, self.echo = config, start, echo
        self.show_bar = ctx.is_main and (sys.stdout.isatty() if progress is None else progress)
        # No tqdm at all unless it draws: its constructor creates an inter-process lock (a named
        # semaphore) that a rank stopped by its launcher would leave behind.
        self.bar = (
            tqdm(total=config.epochs, initial=start, desc=f"seed {config.seed}", unit="epoch", dynamic_ncols=True)
            if self.show_bar
            else None
        )

    def __enter__(self) -> "_ProgressReport":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()

    def epoch(self, record: Dict[str, Any], run: _Run) -> None:
        config, epoch, loss = self.config, record["epoch"], record["loss"]
        if self.show_bar:
            best = run.best["val"]
            self.bar.set_postfix(loss=f"{loss:.4f}", val="-" if best is None else f"{best:.4f}")
            self.bar.update()
        else:
            scores = "" if record["val"] is None else f" val {record['val']:.4f} test {record['test']:.4f}"
            self.echo(
                f"epoch {epoch}/{config.epochs} loss {loss:.4f}{scores} lr {record['lr']:.3g} {record['time']:.2f}s"
            )
        if run.big_defaults and epoch == self.start + 1:
            hours = record["time"] * (config.epochs - epoch) / 3600
            self.echo(f"note: the first epoch took {record['time']:.1f} s; the remaining {config.epochs - epoch} "
                      f"would take about {hours:.1f} h at that pace.")  # fmt: skip
        if run.stopped:
            self.echo(
                f"early stopping at epoch {epoch}: no better validation {run.metric} for {config.patience} evaluations"
            )


# ---------------------------------------------------------------------- one epoch
def _loss(logits: Tensor, labels: Tensor, task: str, label_smoothing: float = 0.0, kind: str = "ce") -> Tensor:
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    if kind == "log_ce":
        return log_ce_loss(logits, labels)
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DeviceData,
    parts: int,
    rng: np.random.Generator,
    grad_clip: float = 1.0,
    config: Optional[TrainConfig] = None,
    teacher_logits: Optional[Tensor] = None,
    *,
    parts_per_step: Optional[int] = None,
    dist: Optional[Context] = None,
) -> float:
    """One epoch: a fresh random partition, one optimizer step per ``parts_per_step`` parts in shuffled order.

    ``config`` supplies the per-step regularisation (input dropout, edge dropout, label
    smoothing), label reuse and the loss; None trains without them. With ``teacher_logits``
    (``(N, outputs)``) the loss is the self-distillation loss of ``config.kd_alpha`` and
    ``config.kd_temp``.

    With ``parts_per_step`` k (default: ``config.parts_per_step``), a step's loss is the mean of
    the losses of its (up to) k parts; the parts are forwarded and back-propagated one at a time,
    so memory is that of one part. In a data-parallel job (``dist``, ``W`` ranks) a step takes
    ``k * W`` parts, k on each rank, and equals the one-process step with ``k * W`` parts per
    step (see :mod:`revgnn_dgl.train.distributed` for uneven shares and seeding).

    Returns
    -------
    float
        The loss averaged over the epoch's training nodes (over all ranks).

    Raises
    ------
    TrainingDiverged
        When a step's loss or gradient norm is not finite; the optimizer has not stepped.
    """
    config = config or TrainConfig()
    ctx = dist if dist is not None else Context()
    per_process = config.parts_per_step if parts_per_step is None else parts_per_step
    model.train()
    if parts == 1:
        batches: List[Optional[np.ndarray]] = [None]  # the full graph
    else:
        node_parts = random_parts(data.num_nodes, parts, rng)
        batches = [node_parts[p] for p in rng.permutation(parts)]
    # The ranks that share each step's parts: every rank (copies of the graph), or a machine's trainers.
    slot, slots = data.slot(ctx.rank, ctx.world_size)
    per_step = per_process * slots
    if per_step == 1 and data.machines == 1:
        return _one_part_per_step(model, optimizer, data, batches, grad_clip, config, teacher_logits)
    # Seeds of each part's randomness (dropout), so that it does not depend on who computes it.
    seeds = rng.integers(2**63 - 1, size=len(batches))
    counts = [data.train_count(ids) for ids in batches]
    steps = [range(first, min(first + per_step, len(batches))) for first in range(0, len(batches), per_step)]
    lives = [[i for i in step if counts[i] > 0] for step in steps]
    # DDP averages over all ranks: a step's parts with training nodes, over every machine.
    totals = [len(live) for live in lives]
    if data.machines > 1:
        totals = [round(t / slots) for t in ctx.all_reduce_sum([float(t) for t in totals])]
    fallback = next((i for i, c in enumerate(counts) if c > 0), None)
    total, count = 0.0, 0.0
    for step, live, live_total in zip(steps, lives, totals):
        if not live_total:  # tiny graphs can draw parts without training nodes
            continue
        mine = [i for i in step[slot * per_process : (slot + 1) * per_process] if counts[i] > 0]
        # DDP averages over the W ranks: weights W / m make that the mean over the step's m parts.
        weight = ctx.world_size / live_total
        # A rank without a part of its own joins the gradient reduction with an exact zero.
        if not mine and fallback is None:
            raise ConfigError(f"machine {getattr(data, 'machine', 0)}'s nodes hold no training node; partition again.")
        work = [(i, weight) for i in mine] or [(live[0] if live else fallback, 0.0)]
        optimizer.zero_grad(set_to_none=True)
        for j, (i, w) in enumerate(work):
            sync = j == len(work) - 1  # DDP reduces once per step, after the last backward pass
            with nullcontext() if sync else ctx.no_sync(model), _seeded(int(seeds[i]), data.device):
                loss = _part_loss(model, data, batches[i], config, teacher_logits)
                (loss * w).backward()
            if w:
                total += loss.item() * counts[i]
                count += counts[i]
        ctx.check_gradients(model)
        _clip_and_check(model, grad_clip)
        optimizer.step()
    total, count = ctx.all_reduce_sum([total, count])
    return total / max(count, 1)


def _one_part_per_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DeviceData,
    batches: List[Optional[np.ndarray]],
    grad_clip: float,
    config: TrainConfig,
    teacher_logits: Optional[Tensor],
) -> float:
    """The paper's recipe in one process: one optimizer step per part, randomness from the global generators."""
    total, count = 0.0, 0
    for ids in batches:
        n = data.train_count(ids)
        if n == 0:  # tiny graphs can draw a part without training nodes
            continue
        loss = _part_loss(model, data, ids, config, teacher_logits)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _clip_and_check(model, grad_clip)
        optimizer.step()
        total += loss.item() * n
        count += n
    return total / max(count, 1)


def _part_loss(
    model: nn.Module, data: DeviceData, ids: Optional[np.ndarray], config: TrainConfig, teacher_logits: Optional[Tensor]
) -> Tensor:
    """The training loss of one part (``None``: the full graph), with the step's regularisation."""
    sub, labels, mask, nodes = data.part(ids)
    teacher = teacher_logits if teacher_logits is None or nodes is None else teacher_logits[nodes]
    sub = drop_edges(sub, config.edge_dropout)
    if config.input_dropout:
        sub = sub.local_var()
        sub.ndata["feat"] = drop_input(sub.ndata["feat"], config.input_dropout)
    logits, supervised = predict(model, sub, labels, mask, config, data.dataset.num_outputs, training=True)
    if teacher is not None:
        loss = self_kd_loss(logits, labels, supervised.nonzero().squeeze(1), teacher, config.kd_alpha, config.kd_temp)
    else:
        loss = _loss(logits[supervised], labels[supervised], data.dataset.task, config.label_smoothing, config.loss)
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"the training loss is {loss.item()}")
    return loss


def _clip_and_check(model: nn.Module, grad_clip: float) -> None:
    """Clip the gradient norm (0: no clipping), and refuse a non-finite one before the update."""
    norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
    if not torch.isfinite(norm):
        raise TrainingDiverged(f"the gradient norm is {norm.item()}")


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Torch's CPU generator, and the CUDA one of ``device``, seeded inside the block and restored after it."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def _teacher_logits(config: TrainConfig, data: DeviceData, device: torch.device) -> Optional[Tensor]:
    """The teacher run's best model's logits on every node, with the teacher's own evaluation
    protocol (its label reuse included); None without a teacher."""
    if not config.teacher:
        return None
    from ..zoo.checkpoint import build_from_checkpoint

    teacher_config = _teacher_checkpoint(config)
    teacher = build_from_checkpoint(Path(config.teacher) / BEST_FILE).to(device)
    evaluator = Evaluator(data, teacher_config.eval_parts, teacher_config.eval_views, teacher_config.seed,
                          config=teacher_config)  # fmt: skip
    return evaluator.logits(teacher)


def _teacher_checkpoint(config: TrainConfig) -> TrainConfig:
    """The teacher run's config, once its best checkpoint is known to rebuild (nothing allocated)."""
    from ..zoo.checkpoint import check_checkpoint

    folder = Path(str(config.teacher))
    if not (folder / BEST_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        raise ConfigError(f"--teacher {folder}: not a finished run directory (no {BEST_FILE} and {CONFIG_FILE}).")
    teacher_config = TrainConfig.from_file(folder / CONFIG_FILE)
    if teacher_config.dataset != config.dataset or teacher_config.dataset_options != config.dataset_options:
        raise ConfigError(f"--teacher {folder} was trained on {teacher_config.dataset!r}, not {config.dataset!r}.")
    check_checkpoint(folder / BEST_FILE)
    return teacher_config


def solver_report(model: nn.Module) -> Optional[Dict[str, Any]]:
    """The last training step's fixed-point solves (DEQ-GNN), for the epoch's metrics line.

    ``None`` for models without a solver. Non-convergence also warns, with the same numbers.
    """
    report = {}
    for phase in ("forward", "backward"):
        info = getattr(model, f"last_{phase}_info", None)
        if info is not None:
            residual = float(info.rel_residual)
            report[phase] = {"iterations": info.iterations, "converged": info.converged,
                             # strict JSON has no inf/nan: a diverged solve is recorded as text
                             "rel_residual": residual if math.isfinite(residual) else str(residual)}  # fmt: skip
    return report or None


def summarize(results: List[Dict[str, Any]], metric: str) -> Dict[str, Any]:
    """Mean and (sample) standard deviation of the runs' best validation and matching test scores."""
    summary: Dict[str, Any] = {"metric": metric, "runs": results}
    for split in ("val", "test"):
        values = [r[split] for r in results]
        summary[split] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return summary


__all__ = ["TrainingDiverged", "read_metrics", "summarize", "train", "train_epoch"]


def _check_best(state: Any, run_dir: Path, state_path: Path) -> None:
    """The state's best score must be the one metrics.jsonl recorded for that epoch: a crafted
    state (its checksum recomputed) cannot resume with a fake best."""
    best = state.extra.get("best") or {}
    if best.get("epoch") is None:
        return
    for record in read_metrics(run_dir):
        if isinstance(record, dict) and record.get("epoch") == best["epoch"]:
            for key in ("val", "test"):
                if record.get(key) != best.get(key):
                    raise TrainingStateError(
                        f"{state_path}: its best {key} score {best.get(key)!r} at epoch {best['epoch']} is not the "
                        f"{record.get(key)!r} that {METRICS_FILE} recorded; it is refused."
                    )
            return


def _check_state_fits(model: nn.Module, optimizer: torch.optim.Optimizer, state: Any, path: Path, name: str) -> None:
    """Refuse a training state whose weights or optimizer state would not resume this model as it was trained."""
    try:
        _check_model_state(model, state.model)
        check_optimizer_state(optimizer, state.optimizer)
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise TrainingStateError(f"{path} does not fit model {name!r}: {' '.join(str(err).split())[:300]}") from None


def _check_model_state(model: nn.Module, saved: Dict[str, Tensor]) -> None:
    """Same keys, shapes and dtypes as the model: load_state_dict would cast another dtype silently."""
    ours = model.state_dict()
    if set(saved) != set(ours):
        raise ValueError(f"its weights are not the model's ({len(saved)} tensors against {len(ours)})")
    for key, value in ours.items():
        if saved[key].shape != value.shape or saved[key].dtype != value.dtype:
            raise ValueError(
                f"weight {key!r} is {saved[key].dtype} {tuple(saved[key].shape)}, the model's {value.dtype} {tuple(value.shape)}"
            )
