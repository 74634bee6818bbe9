"""What ``train --resume`` checks, under the run's lock, before it writes anything.

A resume is refused when its number of processes or its settings differ from the saved runs'
(only :data:`~revgnn_dgl.train.config.RESUMABLE_KEYS` may change), when it would train backwards,
when a run's metrics are damaged or its trained epochs have no state to continue from, or when a
state does not fit the model and optimizer (:func:`~revgnn_dgl.train.state.check_state_fits`, on
the meta device) or claims a best score that ``metrics.jsonl`` did not record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import torch
from torch import nn

from ..errors import ConfigError, TrainingStateError
from ..zoo import create_model
from .config import RESUMABLE_KEYS, TrainConfig
from .metrics_log import METRICS_FILE, read_metrics
from .recipe import make_optimizer
from .rundir import CONFIG_FILE, STATE_FILE, run_configs
from .state import check_state_fits, load_training_state


def check_resume(config: TrainConfig, overrides: Dict[str, Any]) -> None:
    """Refuse a resume of the runs in ``config.out`` that could not continue them exactly (see the module)."""
    check_nproc(config)
    with torch.device("meta"):
        model = create_model(config.model, **overrides)
    optimizer = make_optimizer(model.parameters(), config)
    for run_config in run_configs(config):
        run_dir = Path(str(run_config.out))
        state_path = run_dir / STATE_FILE
        records = read_metrics(run_dir)  # a damaged file is refused here, before anything is written
        if records and not state_path.exists():
            raise ConfigError(
                f"{run_dir} has {len(records)} epoch(s) in {METRICS_FILE} but no {STATE_FILE}: it cannot be "
                "continued exactly, and starting again would overwrite its history. Nothing was changed; train "
                "anew with another --out."
            )
        if state_path.exists():
            _check_saved_state(run_config, model, optimizer, run_dir, state_path)


def _check_saved_state(
    config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer, run_dir: Path, state_path: Path
) -> None:
    state = load_training_state(state_path)
    check_state_fits(model, optimizer, state, state_path, config.model)
    _check_best(state, run_dir, state_path)
    saved = state.extra.get("config")
    if saved is not None:
        _check_resumable(config, TrainConfig.from_mapping(saved, str(state_path)), run_dir)
    if config.epochs < state.epoch:
        raise ConfigError(
            f"{run_dir} has already trained {state.epoch} epochs; --epochs {config.epochs} must be more than that."
        )


def check_nproc(config: TrainConfig) -> None:
    """Refuse to resume a run with another number of processes than it was trained with."""
    path = Path(str(config.out)) / CONFIG_FILE
    saved = TrainConfig.from_file(path).nproc if path.exists() else config.nproc
    if saved != config.nproc:
        raise ConfigError(
            f"{config.out} was trained by {saved} process(es), not {config.nproc}: its optimizer steps averaged "
            f"{saved} x parts_per_step parts; resume it with nproc {saved}."
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


def _check_best(state: Any, run_dir: Path, state_path: Path) -> None:
    """The state's best score must be the one metrics.jsonl recorded for that epoch: a crafted
    state (its checksum recomputed) cannot resume with a fake best."""
    best = state.extra.get("best") or {}
    if best.get("epoch") is None:
        return
    for record in read_metrics(run_dir):
        if isinstance(record, dict) and record.get("epoch") == best["epoch"]:
            for key in ("val", "test", "val_loss"):
                if record.get(key) != best.get(key):
                    raise TrainingStateError(
                        f"{state_path}: its best {key} score {best.get(key)!r} at epoch {best['epoch']} is not the "
                        f"{record.get(key)!r} that {METRICS_FILE} recorded; it is refused."
                    )
            return
