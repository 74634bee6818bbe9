"""The end of a training job: the shallow baselines beside the runs, and ``summary.json``.

``summary.json`` holds each run's best validation score and its test score, their mean and
(sample) standard deviation, the baselines when fitted, where the numbers come from (the
environment) and the command; an interrupted ``--runs N`` writes the summary of the runs that
finished (:func:`write_partial_summary`), which ``--resume`` rewrites.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ..env import environment
from ..errors import ConfigError, RevGNNError
from ..files import write_json
from ..log import get_logger
from .baselines import below, fit_baselines, report_lines
from .config import TrainConfig
from .distributed import Context
from .rundir import SUMMARY_FILE

log = get_logger(__name__)


def fit_baselines_said(data: Any, config: TrainConfig) -> Optional[Dict[str, Any]]:
    """The shallow baselines on the run's split (None, said, when they cannot be fitted: the runs are kept)."""
    log.info("fitting the baselines on the same split: logistic regression on the features, a 2-layer GCN ...")
    try:
        return fit_baselines(data, config.seed)
    except (ValueError, RuntimeError, ImportError, RevGNNError) as err:
        log.info(f"note: no baselines: {' '.join(str(err).split())[:300]}")
        return None


def summarize(results: List[Dict[str, Any]], metric: str, select: Optional[str] = None) -> Dict[str, Any]:
    """Mean and (sample) standard deviation of the runs' best validation and matching test scores;
    ``select``, the rule that picked each run's best epoch (``TrainConfig.select``), is recorded when given."""
    summary: Dict[str, Any] = {"metric": metric, **({"select": select} if select else {}), "runs": results}
    for split in ("val", "test"):
        values = [r[split] for r in results]
        summary[split] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return summary


def report_summary(summary: Dict[str, Any], model: str) -> None:
    """The summary's lines: mean ± std of each split, and the baselines beside them."""
    for split in ("val", "test"):
        stats = summary[split]
        runs = len(summary["runs"])
        log.info(f"{split} {summary['metric']}: {stats['mean']:.4f} ± {stats['std']:.4f} ({runs} run(s))")
    for line in report_lines(summary, model):
        log.info(line)


def _with_environment(summary: Dict[str, Any], device: torch.device, command: Optional[str]) -> Dict[str, Any]:
    """Where the numbers come from (they reproduce bit for bit only on the same CPU and threads), and the command."""
    summary["environment"] = {k: v for k, v in environment(device).items() if k != "load_avg_1m"}
    if command:
        summary["command"] = command
    return summary


def write_summary(
    out: Path,
    results: List[Dict[str, Any]],
    metric: str,
    device: torch.device,
    command: Optional[str],
    ctx: Context,
    baselines: Optional[Dict[str, Any]] = None,
    select: str = "val",
) -> Dict[str, Any]:
    summary = summarize(results, metric, select)
    if baselines:
        summary["baselines"] = baselines
        summary["below_baselines"] = below(summary["val"]["mean"], baselines)
    _with_environment(summary, device, command)
    with ctx.guard("writing the summary"):
        if ctx.is_main:
            write_json(out / SUMMARY_FILE, summary)
    return summary


def write_partial_summary(
    config: TrainConfig, out: Path, results: List[Dict[str, Any]], metric: str, device: torch.device,
    command: Optional[str],
) -> None:  # fmt: skip
    """An interrupted or failed ``--runs N``: the summary of the seeds that finished (``"runs_planned"`` says
    how many were asked for); ``--resume`` finishes the others and rewrites it."""
    try:
        summary = _with_environment(
            {**summarize(results, metric, config.select), "runs_planned": config.runs}, device, command
        )
        write_json(out / SUMMARY_FILE, summary)
        log.info(f"{out / SUMMARY_FILE}: the {len(results)} of {config.runs} run(s) that finished")
    except (OSError, ValueError, ConfigError) as err:  # the error that stopped the runs matters more
        log.info(f"warning: no summary of the finished runs: {err}")
