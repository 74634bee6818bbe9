"""The training loop, the paper's way, with runs that can be interrupted and resumed exactly.

Read from the top: :func:`train` is the whole job as a sequence of named steps (check the
configuration; load the data and check the model on the meta device; announce; lock and open the
run directory; each seeded run; the summary). A seeded run (:class:`_Run`) starts fresh or from
its state, then trains, evaluates and saves epoch by epoch, calling its callbacks
(:mod:`revgnn_dgl.train.callbacks`) after each. :func:`train_epoch` is one epoch's optimizer steps
over random parts. In a data-parallel job the same code runs on every rank inside its
:class:`~revgnn_dgl.train.distributed.Context`; rank 0 alone evaluates, writes and speaks.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..env import load_average, thread_note
from ..errors import ConfigError, TrainingDiverged, TrainingError, TrainingStateError
from ..faults import fault_point
from ..files import write_yaml
from ..limits import check_memory, check_threads, cpu_cores, format_bytes
from ..log import get_logger, set_rank
from ..zoo import create_model, get_config
from ..zoo.checkpoint import save_checkpoint
from ..zoo.estimates import part_size, training_bytes
from .baselines import wants_baselines
from .callbacks import Callback, CallbackList, EpochHook
from .config import TrainConfig, uses_big_defaults
from .data import DeviceData, check_parts, load_dataset_for, model_overrides, random_parts
from .device import seed_everything
from .diagnosis import chance_diagnosis, node_features
from .distgraph import DistData, DistEvaluator, check_step_parts
from .distributed import Context
from .evaluation import Evaluator, chance_level
from .logger import RunLoggers
from .losses import clip_and_check, part_loss, teacher_checkpoint, teacher_logits
from .metrics_log import METRICS_FILE, append_metrics, read_metrics, truncate_metrics
from .progress import ProgressReport
from .recipe import lr_at, make_optimizer, set_lr
from .resume import check_resume
from .rundir import (
    BEST_FILE,
    CONFIG_FILE,
    LAST_FILE,
    LOCK_FILE,
    STATE_FILE,
    FreshStart,
    RunLock,
    refuse_existing_run,
    refuse_links,
    remove_stale_temp_files,
    remove_trainer_files,
    run_configs,
    run_dirs,
)
from .selection import best_of, improves
from .state import check_state_fits, load_training_state, restore_rng, save_training_state
from .summary import fit_baselines_said, report_summary, summarize, write_partial_summary, write_summary
from .weighting import plan_steps, seeded_part

__all__ = ["TrainingDiverged", "read_metrics", "summarize", "train", "train_epoch"]

log = get_logger(__name__)

#: ``train(on_epoch=...)``: called with each epoch's record (and the run's seed).
EpochFn = Callable[[Dict[str, Any]], None]

#: What chance level means for each metric, for the warning of a run that does not learn.
_CHANCE = {"rocauc": "random scores", "accuracy": "always the most frequent training class"}

#: The random stream of the training partitions (evaluation uses its own, EVAL_STREAM).
TRAIN_STREAM = 0

#: The graph a run trains on: on this process's device, or behind DGL's graph servers (``--partitions``).
RunData = Union[DeviceData, DistData]

#: The step of :func:`train_epoch` without a config: no input or edge dropout, no label smoothing
#: or reuse, the plain cross-entropy (only these per-step fields of it are read).
PLAIN_STEP = TrainConfig(input_dropout=0.0, edge_dropout=0.0, label_smoothing=0.0, loss="ce", use_labels=False)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: Optional[bool] = None,
    command: Optional[str] = None,
    dist: Optional[Context] = None,
    callbacks: Sequence[Callback] = (),
    on_epoch: Optional[EpochFn] = None,
    overwrite: bool = False,
    baseline: Optional[bool] = False,
) -> Dict[str, Any]:
    """Train ``config.runs`` runs and write their outputs and ``summary.json`` to ``config.out``.

    Everything is validated (device, dataset, model arguments) before anything is written to
    ``config.out``, which is then locked for the whole training. Progress lines go to the
    package's logger (:mod:`revgnn_dgl.log`), from rank 0 only.

    ``resume`` continues the runs in ``config.out`` from their saved states (runs not started yet
    start fresh, finished ones are kept; with the same config the result equals an uninterrupted
    run). ``progress``: a tqdm bar per run (None: when standard output is a terminal, otherwise a
    line per epoch). ``command``: the command line, recorded in ``summary.json``. ``dist``: this
    process's place in a data-parallel job of ``config.nproc`` processes which all call ``train``
    (:func:`revgnn_dgl.train.launch` starts them); rank 0 alone evaluates, writes and locks
    ``out``. ``callbacks`` (:class:`~revgnn_dgl.train.callbacks.Callback`) run in order after the
    progress report, on rank 0, after each epoch's files are written; ``on_epoch(record)`` is the
    last of them (a tuner's hook, with the run's ``seed`` in the record). What a callback raises
    stops the training and propagates, leaving an interrupted run that ``resume`` continues. Both
    are for one process only. ``overwrite`` replaces what ``out`` holds of the trainer's names
    instead of refusing it. ``baseline`` also fits the shallow baselines
    (:mod:`revgnn_dgl.train.baselines`) after the runs and records them in ``summary.json``;
    None: when :func:`~revgnn_dgl.train.baselines.wants_baselines` says so (one process only).

    Returns the summary: per-run best validation score and its test score, their mean and std.

    Raises :class:`~revgnn_dgl.errors.ConfigError` when ``out`` is missing, holds a run or the
    trainer's files without ``resume`` or ``overwrite``, is locked by another process, or when a
    setting is invalid or ``config.nproc`` is not the number of processes running it;
    :class:`~revgnn_dgl.errors.TrainingDiverged` when the loss or a gradient becomes non-finite.
    """
    ctx = dist if dist is not None else Context()
    set_rank(ctx.rank)
    hooks = [*callbacks, *([EpochHook(on_epoch)] if on_epoch is not None else [])]
    if hooks and ctx.active:
        raise ConfigError("on_epoch and callbacks are for one-process training: rank 0 alone would stop.")
    out = _check_config(config, ctx)
    device, dataset, overrides, changes = _check_data_and_model(config, ctx)
    data = _data_on_device(config, dataset, device, ctx)
    _announce(config, ctx, device, dataset.name, changes)
    # What out held before anything was written: a failed start removes only what it created.
    start = FreshStart(config) if ctx.is_main and not resume else None
    results: List[Dict[str, Any]] = []
    with ExitStack() as held:
        try:
            runs = _open_run_directory(config, out, resume, held, ctx, overrides, start, overwrite)
            for run_config in runs:
                run = _Run.start(run_config, data, overrides, device, resume, ctx)
                results.append(run.train(CallbackList([ProgressReport(progress), *hooks])))
            fit = ctx.is_main and not ctx.active and wants_baselines(config, baseline)
            baselines = fit_baselines_said(data, config) if fit else None
            summary = write_summary(out, results, dataset.metric_name, device, command, ctx, baselines, config.select)
        except BaseException:
            if ctx.is_main and results and len(results) < config.runs:
                write_partial_summary(config, out, results, dataset.metric_name, device, command)
            if start is not None and start.locked:  # never after a refusal by the lock: the files are the holder's
                start.undo()
            raise
    report_summary(summary, config.model)
    return summary


# ---------------------------------------------------------------------- the steps of train(), in order
def _check_config(config: TrainConfig, ctx: Context) -> Path:
    """The output directory's path, once the job's size is right for this config (``out`` itself is
    first touched once the data and the model are known to be good: :func:`_open_run_directory`)."""
    if config.nproc != ctx.world_size:
        where = f"{ctx.world_size} processes run it" if ctx.active else "this is one process"
        raise ConfigError(
            f"nproc is {config.nproc} but {where}; start {config.nproc} with revgnn_dgl.train.launch(config), "
            f"`revgnn-dgl train --nproc {config.nproc}` or torchrun."
        )
    if not config.out:
        raise ConfigError("no output directory: set out (--out DIR).")
    return Path(config.out)


def _check_data_and_model(config: TrainConfig, ctx: Context) -> Tuple[torch.device, Any, Dict[str, Any], List[str]]:
    """The device, the loaded dataset, and the model arguments for it, checked by a build on the meta device."""
    threads = check_threads(config.threads)
    if threads is not None:  # None: as the caller set torch (the CLI resolves a default)
        torch.set_num_threads(threads)
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
                raise ConfigError(
                    "--partitions trains through graph servers with trainer processes (--nproc N, or "
                    "DGL's launcher), without --teacher."
                )
            check_step_parts(config, max(1, ctx.world_size // dataset.parts))
        if config.teacher:  # a crafted teacher is refused before --out is touched
            teacher_checkpoint(config)
    return device, dataset, overrides, changes


def _check_training_memory(config: TrainConfig, dataset: Any, overrides: Dict[str, Any]) -> None:
    """Refuse a run whose weights and one part's activations (:func:`revgnn_dgl.zoo.estimates.training_bytes`)
    exceed the machine's memory."""
    card = get_config(config.model)
    nodes, edges = part_size(dataset.num_nodes, dataset.num_edges, config.train_parts)
    estimate = training_bytes(card["architecture"], {**card["arguments"], **overrides}, nodes, edges)
    if estimate is None:  # bad arguments: the meta build that follows names them
        return
    weights, activations = estimate
    check_memory(
        f"training {config.model!r} ({format_bytes(weights)} of weights, gradients and optimizer state, "
        f"at least {format_bytes(activations)} of activations per part)",
        weights + activations,
    )


def _announce(config: TrainConfig, ctx: Context, device: torch.device, dataset: str, changes: List[str]) -> None:
    """Say where the run trains and print its whole resolved configuration."""
    if ctx.active:
        log.info(
            f"{ctx.world_size} processes, device {device} on rank 0 (cuda:LOCAL_RANK on each, if CUDA); "
            f"{config.parts_per_step * ctx.world_size} part(s) per optimizer step"
        )
    else:
        log.info(f"device: {device}" + (" (picked by --device auto)" if config.device == "auto" else ""))
    if changes:
        log.info(f"model {config.model}, from dataset {dataset} and overrides: {', '.join(changes)}")
    threads, cores, load = torch.get_num_threads(), cpu_cores(), load_average()
    log.info(f"threads: {threads} per process ({cores} cores, load {load:.1f})")
    note = thread_note(threads, ctx.world_size, cores, load)
    if note:
        log.info(note)
    log.info("configuration:")
    for key, value in config.to_dict().items():
        log.info(f"  {key}: {value}")
    if uses_big_defaults(config):  # what the ogbn-proteins defaults mean when they meet another dataset
        args = get_config(config.model)["arguments"]
        log.info(
            f"note: {config.dataset} gets the ogbn-proteins recipe: {config.model} "
            f"({config.num_layers or args.get('num_layers')} layers x {config.hidden or args.get('hidden')} "
            f"channels), {config.epochs} epochs of {config.train_parts} parts. For a small graph start smaller, "
            "e.g. --model revgnn-112 --num-layers 16 --hidden 64 --train-parts 1 --epochs 300 --lr 0.005 "
            "(see the README)."
        )


def _data_on_device(config: TrainConfig, dataset: Any, device: torch.device, ctx: Context) -> RunData:
    """The graph the runs train on: on this process's device, or behind the graph servers (``--partitions``)."""
    with ctx.guard("moving the data to its device"):
        if config.partitions:
            return DistData.connect(dataset, ctx.rank, ctx.world_size, device)
        return DeviceData.on(dataset, device)


def _open_run_directory(
    config: TrainConfig,
    out: Path,
    resume: bool,
    held: ExitStack,
    ctx: Context,
    overrides: Dict[str, Any],
    start: Optional[FreshStart] = None,
    overwrite: bool = False,
) -> List[TrainConfig]:
    """Lock ``out`` (rank 0, for the whole training), refuse a run there or check a resume, then
    clear the way and write config.yaml (:mod:`revgnn_dgl.train.rundir`); each run's config.

    Every check comes before the first write, so a refused command leaves the directory as it was;
    ``--overwrite`` removes the old run only here, once the data and the model are known to be good.
    """
    with ctx.guard("preparing the run directory"):
        if ctx.is_main:  # rank 0 alone writes, so it alone locks
            refuse_links(config)
            lock = held.enter_context(RunLock(out, sign=False))
            try:
                if not resume:
                    refuse_existing_run(config, overwrite)
                else:
                    check_resume(config, overrides)
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
                    log.info(f"--overwrite: removed {path}")
            for folder in [out] + run_dirs(config):
                for path in remove_stale_temp_files(folder):
                    log.info(f"removed {path.name}, left by an interrupted write")
            write_yaml(out / CONFIG_FILE, config.to_dict())
    return run_configs(config)


# ---------------------------------------------------------------------- one seeded run
class _Run:
    """One seeded run in its directory: start (fresh or from its state), epochs, evaluation, files.

    In a data-parallel job every rank trains, and rank 0 alone evaluates and writes; the others
    wait for it in the check at the end of each epoch.
    """

    def __init__(self, config: TrainConfig, data: RunData, model: nn.Module, ctx: Context) -> None:
        self.config, self.data, self.model, self.ctx = config, data, model, ctx
        self.run_dir = Path(str(config.out))
        self.state_path = self.run_dir / STATE_FILE
        self.optimizer = make_optimizer(model, config)
        self.chance = chance_level(data.dataset)
        self.collective = isinstance(data, DistData)
        self.metric = data.dataset.metric_name
        self.best: Dict[str, Any] = {"epoch": None, "val": None, "test": None}
        self.since_best, self.at_chance, self.start_epoch = 0, 0, 0
        self.stopped: Optional[int] = None
        self.evaluator: Optional[Union[Evaluator, DistEvaluator]] = None
        self.teacher_logits: Optional[Tensor] = None
        self.net: nn.Module = model
        self.loggers: Optional[RunLoggers] = None  # rank 0's csv / tensorboard logs, while training
        self.big_defaults = uses_big_defaults(config)
        # What every checkpoint records besides its epoch's scores.
        self.meta = {
            "dataset": config.dataset, "dataset_options": config.dataset_options, "metric": self.metric,
            "seed": config.seed, "eval_parts": config.eval_parts, "eval_views": config.eval_views,
            "use_labels": config.use_labels, "label_iters": config.label_iters,
        }  # fmt: skip

    @classmethod
    def start(
        cls, config: TrainConfig, data: RunData, overrides: Dict[str, Any], device: torch.device, resume: bool,
        ctx: Context,
    ) -> "_Run":  # fmt: skip
        """The seeded model and optimizer, restored from the run's state when resuming."""
        seed_everything(config.seed)
        run = cls(config, data, create_model(config.model, **overrides).to(device), ctx)
        state = None
        with ctx.guard(f"reading {run.state_path}"):
            if ctx.is_main:
                run.run_dir.mkdir(parents=True, exist_ok=True)
                if resume and run.state_path.exists():
                    state = load_training_state(run.state_path)
        state = ctx.broadcast(state)  # the other ranks need not see rank 0's disk
        with ctx.guard(f"restoring {run.state_path}"):
            if isinstance(data, DistData):  # every trainer scores its share of the parts
                run.evaluator = DistEvaluator(data, config.eval_parts, config.eval_views, config.seed, config=config)
            elif ctx.is_main:
                run.evaluator = Evaluator(
                    data, config.eval_parts, config.eval_views, config.seed, amp=config.amp, config=config
                )
            run.teacher_logits = teacher_logits(config, data, device)
            if state is not None:
                run._restore(state)
            elif ctx.is_main:
                (run.run_dir / METRICS_FILE).write_text("")
            if ctx.is_main:
                write_yaml(run.run_dir / CONFIG_FILE, config.to_dict())
        run.net = ctx.wrap(run.model)  # DDP in a job; it broadcasts rank 0's weights, the same on every rank here
        if run.start_epoch == 0:
            params = sum(p.numel() for p in run.model.parameters())
            log.info(f"run {run.run_dir} (seed {config.seed}): {params:,} parameters, {config.epochs} epochs")
        return run

    def _restore(self, state: Any) -> None:
        check_state_fits(self.model, self.optimizer, state, self.state_path, self.config.model)
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
                log.info(f"note: {note}")
        log.info(f"resuming {self.run_dir} after epoch {self.start_epoch}")

    def train(self, callbacks: Callback) -> Dict[str, Any]:
        """The remaining epochs, each trained, evaluated, saved and reported to ``callbacks`` (on rank 0);
        returns the run's best epoch, validation and test scores."""
        config, ctx = self.config, self.ctx
        if self.start_epoch >= config.epochs or self.stopped:
            why = f"stopped early at epoch {self.stopped}" if self.stopped else f"trained its {self.start_epoch} epochs"
            log.info(f"{self.run_dir} has already finished ({why}): nothing to train; give --epochs N for more.")
        if ctx.is_main and config.logger:
            self.loggers = RunLoggers(config.logger.split(","), self.run_dir, self.start_epoch, self.metric,
                                      config.to_dict())  # fmt: skip
        if ctx.is_main:
            callbacks.on_train_start(self)
        try:
            for epoch in range(self.start_epoch + 1, config.epochs + 1):
                if self.stopped:
                    break
                tic = time.perf_counter()
                record = self._train_epoch(epoch)
                # On a partitioned graph evaluation is collective; rank 0 gets the scores.
                collective = self.evaluator if self.collective and self._due(epoch) else None
                scores = collective(self.model) if collective is not None else None
                with ctx.guard(f"evaluating and saving epoch {epoch}"):
                    if ctx.is_main:
                        improved = self.evaluate(record, scores)
                        self.save(record, improved, tic)
                        callbacks.on_epoch_end(self, record)  # the epoch's files are whole: a resumable run
                self.stopped = ctx.broadcast(self.stopped)  # rank 0 decides an early stop
        finally:
            if self.loggers is not None:
                self.loggers.close()
            if ctx.is_main:
                callbacks.on_train_end(self)
        self.best = ctx.broadcast(self.best)  # rank 0 evaluated
        if self.best["val"] is None:  # an early stop cannot come before an evaluation; a resumed run keeps its best
            raise TrainingError(f"{self.run_dir}: no evaluation was recorded.")
        log.info(
            f"seed {config.seed}: best val {self.metric} {self.best['val']:.4f} at epoch {self.best['epoch']}, "
            f"test {self.best['test']:.4f}" + (" (the lowest validation loss)" if config.select == "val_loss" else "")
        )
        return {"seed": config.seed, **self.best, "epochs": self.stopped or config.epochs}

    def _train_epoch(self, epoch: int) -> Dict[str, Any]:
        """The epoch's learning rate, partitions and optimizer steps (:func:`train_epoch`); the start of its record."""
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
            record["eval_time"] = time.perf_counter() - started  # evaluation's share (a benchmark reads it)
        assert scores is not None  # rank 0's: a collective evaluation gives it the scores
        if not all(math.isfinite(v) for v in scores.values()):
            raise TrainingDiverged(f"epoch {epoch}: the model's outputs are not finite ({scores}); training stopped.")
        record.update(scores)
        improved = improves(config.select, record, self.best)
        if improved:
            self.best = best_of(record)
            self.since_best = 0
        else:
            self.since_best += 1
        self._check_chance(record)
        if config.patience and self.since_best >= config.patience:
            self.stopped = epoch
        return improved

    def _check_chance(self, record: Dict[str, Any]) -> None:
        """Say why a run at chance level may not learn, and warn when it has stayed there too long."""
        config, epoch, chance = self.config, record["epoch"], self.chance
        self.at_chance = self.at_chance + 1 if chance is not None and record["val"] <= chance + 0.005 else 0
        diagnosis = chance_diagnosis(config, self.metric, chance, self.best["val"], epoch, node_features(self.data))
        if diagnosis:
            log.info(diagnosis)
        if config.chance_patience and self.at_chance == config.chance_patience:
            log.info(
                f"warning: the validation {self.metric} ({record['val']:.4f} at epoch {epoch}) has stayed at or "
                f"below chance level ({chance:.4f}, {_CHANCE[self.metric]}) for {self.at_chance} evaluations: "
                "the run is not learning. Try a lower --lr, a shallower model, or check the labels."
            )

    def save(self, record: Dict[str, Any], improved: bool, tic: float) -> None:
        """The epoch's files, each written whole: best checkpoint (if improved), metrics line, and
        every ``save_every`` epochs (and at the end) the last checkpoint and the state.

        The metrics line marks the epoch done (a failed start that has one keeps its files), so it
        comes after the best checkpoint; the state, what a resume starts from, after the line."""
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


# ---------------------------------------------------------------------- one epoch
def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: RunData,
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
    smoothing), label reuse and the loss; None (:data:`PLAIN_STEP`) trains without them. With
    ``teacher_logits`` (``(N, outputs)``) the loss is the self-distillation loss of
    ``config.kd_alpha`` and ``config.kd_temp``.

    With ``parts_per_step`` k (default: ``config.parts_per_step``), a step's loss is the mean of
    the losses of its (up to) k parts; the parts are forwarded and back-propagated one at a time,
    so memory is that of one part. In a data-parallel job (``dist``, ``W`` ranks) a step takes
    ``k * W`` parts, k on each rank, and equals the one-process step with ``k * W`` parts per
    step (:mod:`revgnn_dgl.train.weighting`; :mod:`revgnn_dgl.train.distributed` for seeding).

    Returns the loss averaged over the epoch's training nodes (over all ranks). Raises
    :class:`~revgnn_dgl.errors.TrainingDiverged` when a step's loss or gradient norm is not
    finite; the optimizer has not stepped.
    """
    config = config if config is not None else PLAIN_STEP
    ctx = dist if dist is not None else Context()
    model.train()
    if parts == 1:
        batches: List[Optional[np.ndarray]] = [None]  # the full graph
    else:
        node_parts = random_parts(data.num_nodes, parts, rng)
        batches = [node_parts[p] for p in rng.permutation(parts)]
    counts = [data.train_count(ids) for ids in batches]
    plan = plan_steps(ctx, data, counts, config.parts_per_step if parts_per_step is None else parts_per_step)
    # Seeds of each part's randomness (dropout), so that it does not depend on who computes it.
    seeds = rng.integers(2**63 - 1, size=len(batches)) if plan.seeded else None
    total, count = 0.0, 0.0
    for work in plan.steps:
        optimizer.zero_grad(set_to_none=True)
        for j, (i, weight) in enumerate(work):
            sync = j == len(work) - 1  # DDP reduces once per step, after the last backward pass
            seeded = seeded_part(int(seeds[i]), data.device) if seeds is not None else nullcontext()
            with nullcontext() if sync else ctx.no_sync(model), seeded:
                loss = part_loss(model, data, batches[i], config, teacher_logits)
                (loss * weight).backward()
            if weight:
                total += loss.item() * counts[i]
                count += counts[i]
        ctx.check_gradients(model)
        clip_and_check(model, grad_clip)
        optimizer.step()
    total, count = ctx.all_reduce_sum([total, count])
    return total / max(count, 1)


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
