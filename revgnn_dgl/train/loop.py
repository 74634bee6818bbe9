"""The training loop, the paper's way, with runs that can be interrupted and resumed exactly."""
from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..zoo import create_model
from ..zoo.checkpoint import save_checkpoint
from .config import ConfigError, TrainConfig
from .data import DeviceData, forward, load_dataset_for, model_overrides, random_parts, subgraph
from .device import resolve_device, seed_everything
from .evaluation import Evaluator
from .rundir import (
    BEST_FILE,
    CONFIG_FILE,
    LAST_FILE,
    METRICS_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    run_dirs,
    truncate_metrics,
    write_json,
    write_yaml,
)
from .state import TrainingStateError, load_training_state, restore_rng, save_training_state

Echo = Callable[[str], None]

#: The random stream of the training partitions (evaluation uses its own, EVAL_STREAM).
TRAIN_STREAM = 0


def _loss(logits: Tensor, labels: Tensor, task: str) -> Tensor:
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.cross_entropy(logits, labels)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DeviceData,
    parts: int,
    rng: np.random.Generator,
    grad_clip: float = 1.0,
) -> float:
    """One epoch: a fresh random partition, one optimizer step per part in shuffled order.

    Returns
    -------
    float
        The loss averaged over the epoch's training nodes.
    """
    model.train()
    graph = data.graph
    if parts == 1:
        batches: List[Tuple[np.ndarray, ...]] = [()]  # the full graph
    else:
        node_parts = random_parts(graph.num_nodes(), parts, rng)
        batches = [(node_parts[p],) for p in rng.permutation(parts)]
    total, count = 0.0, 0
    for batch in batches:
        if batch:
            sub, nodes = subgraph(graph, batch[0])
            labels, mask = data.labels[nodes], data.train_mask[nodes]
        else:
            sub, labels, mask = graph, data.labels, data.train_mask
        n = int(mask.sum())
        if n == 0:  # tiny graphs can draw a part without training nodes
            continue
        loss = _loss(forward(model, sub)[mask], labels[mask], data.dataset.task)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        total += loss.item() * n
        count += n
    return total / max(count, 1)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    echo: Echo = print,
    progress: Optional[bool] = None,
) -> Dict[str, Any]:
    """Train ``config.runs`` runs and write their outputs and ``summary.json`` to ``config.out``.

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
        Show a tqdm bar per run; None: only when stderr is a terminal.

    Returns
    -------
    dict
        The summary: per-run best validation score and its test score, and their mean and std.

    Raises
    ------
    ConfigError
        When ``out`` is missing, or already holds a run and ``resume`` is False.
    """
    if not config.out:
        raise ConfigError("no output directory: set out (--out DIR).")
    out = Path(config.out)
    if not resume and ((out / CONFIG_FILE).exists() or (out / METRICS_FILE).exists()):
        raise ConfigError(f"{out} already holds a run; continue it with --resume {out} or choose another --out.")
    device = resolve_device(config.device)
    if config.amp and device.type != "cuda":
        raise ConfigError("--amp needs a CUDA device; mixed precision is not used on CPU.")
    echo(f"device: {device}" + (" (picked by --device auto)" if config.device == "auto" else ""))
    dataset = load_dataset_for(config)
    overrides, changes = model_overrides(config, dataset)
    if changes:
        echo(f"model {config.model}, from dataset {dataset.name} and overrides: {', '.join(changes)}")
    out.mkdir(parents=True, exist_ok=True)
    write_yaml(out / CONFIG_FILE, config.to_dict())
    data = DeviceData.on(dataset, device)

    results = []
    for i, run_dir in enumerate(run_dirs(config)):
        run_config = dataclasses.replace(config, seed=config.seed + i, runs=1, out=str(run_dir))
        results.append(_train_run(run_config, data, overrides, device, resume, echo, progress))
    summary = summarize(results, dataset.metric_name)
    write_json(out / SUMMARY_FILE, summary)
    for split in ("val", "test"):
        stats = summary[split]
        echo(f"{split} {summary['metric']}: {stats['mean']:.4f} ± {stats['std']:.4f} ({len(results)} run(s))")
    return summary


def _train_run(
    config: TrainConfig,
    data: DeviceData,
    overrides: Dict[str, Any],
    device: torch.device,
    resume: bool,
    echo: Echo,
    progress: Optional[bool],
) -> Dict[str, Any]:
    """One seeded run in ``config.out``; returns its best epoch, validation and test scores."""
    from tqdm.auto import tqdm

    run_dir = Path(config.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    model = create_model(config.model, **overrides).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    evaluator = Evaluator(data, config.eval_parts, config.eval_views, config.seed, amp=config.amp)
    dataset = data.dataset

    best: Dict[str, Any] = {"epoch": None, "val": None, "test": None}
    start = 0
    state_path = run_dir / STATE_FILE
    if resume and state_path.exists():
        state = load_training_state(state_path)
        try:
            model.load_state_dict(state.model)
        except RuntimeError as err:
            raise TrainingStateError(f"{state_path} does not fit model {config.model!r}: {str(err).splitlines()[0]}") from None
        optimizer.load_state_dict(state.optimizer)
        restore_rng(state.rng)
        start, best = state.epoch, state.extra["best"]
        truncate_metrics(run_dir / METRICS_FILE, start)
        echo(f"resuming {run_dir} after epoch {start}")
    else:
        (run_dir / METRICS_FILE).write_text("")
    write_yaml(run_dir / CONFIG_FILE, config.to_dict())
    if start == 0:
        params = sum(p.numel() for p in model.parameters())
        echo(f"run {run_dir} (seed {config.seed}): {params:,} parameters, {config.epochs} epochs")

    metric = dataset.metric_name
    meta = {
        "dataset": config.dataset,
        "dataset_options": config.dataset_options,
        "metric": metric,
        "seed": config.seed,
        "eval_parts": config.eval_parts,
        "eval_views": config.eval_views,
    }
    bar = tqdm(
        total=config.epochs,
        initial=start,
        desc=f"seed {config.seed}",
        unit="epoch",
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
    )
    with bar:
        for epoch in range(start + 1, config.epochs + 1):
            tic = time.perf_counter()
            # The partitions depend on (seed, epoch) only, so a resumed run draws the same ones.
            rng = np.random.default_rng([config.seed, TRAIN_STREAM, epoch])
            loss = train_epoch(model, optimizer, data, config.train_parts, rng, config.grad_clip)
            record: Dict[str, Any] = {"epoch": epoch, "loss": loss, "val": None, "test": None}
            solver = solver_report(model)  # read before evaluation runs new solves
            if solver:
                record["solver"] = solver
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                record.update(evaluator(model))
                if best["val"] is None or record["val"] > best["val"]:
                    best = {"epoch": epoch, "val": record["val"], "test": record["test"]}
                    save_checkpoint(run_dir / BEST_FILE, model, metadata={**meta, **best, "loss": loss})
            record["time"] = time.perf_counter() - tic
            with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            save_checkpoint(run_dir / LAST_FILE, model, metadata={**meta, **record})
            save_training_state(state_path, model=model, optimizer=optimizer, epoch=epoch, extra={"best": best})
            bar.set_postfix(loss=f"{loss:.4f}", val="-" if best["val"] is None else f"{best['val']:.4f}")
            bar.update()
    # The last epoch is always evaluated, so every finished run has a best epoch.
    echo(f"seed {config.seed}: best val {metric} {best['val']:.4f} at epoch {best['epoch']}, test {best['test']:.4f}")
    return {"seed": config.seed, **best}


def solver_report(model: nn.Module) -> Optional[Dict[str, Any]]:
    """The last training step's fixed-point solves (DEQ-GNN), for the epoch's metrics line.

    ``None`` for models without a solver. Non-convergence also warns, with the same numbers.
    """
    report = {}
    for phase in ("forward", "backward"):
        info = getattr(model, f"last_{phase}_info", None)
        if info is not None:
            report[phase] = {"iterations": info.iterations, "rel_residual": info.rel_residual, "converged": info.converged}
    return report or None


def summarize(results: List[Dict[str, Any]], metric: str) -> Dict[str, Any]:
    """Mean and (sample) standard deviation of the runs' best validation and matching test scores."""
    summary: Dict[str, Any] = {"metric": metric, "runs": results}
    for split in ("val", "test"):
        values = [r[split] for r in results]
        summary[split] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return summary
