"""Training and evaluation the paper's way, with runs that can be interrupted and resumed exactly.

Every epoch, each node is assigned uniformly at random to one of ``train_parts`` parts; each
part's induced subgraph is one batch (one Adam step, gradient norm clipped), in shuffled order.
Evaluation cuts the graph once, at the start, into ``eval_parts`` parts, ``eval_views`` times,
and averages the logits over the views. A run directory holds::

    config.yaml        the resolved TrainConfig (reusable with --config)
    metrics.jsonl      one line per epoch: epoch, loss, val, test, time (and solver convergence for DEQ-GNN)
    best.safetensors   the checkpoint with the best validation score (metrics in its metadata)
    last.safetensors   the latest checkpoint
    state.safetensors  model, optimizer and RNG states for --resume (no pickle)
    summary.json       best validation and its test score (mean ± std over runs)

The modules, bottom to top: :mod:`.config` (``TrainConfig``), :mod:`.device` (devices, seeds),
:mod:`.data` (the dataset on the device, partitions), :mod:`.state` (the resumable state file),
:mod:`.rundir` (the run directory's files), :mod:`.evaluation` and :mod:`.loop`.

>>> from revgnn_dgl.train import TrainConfig, train
>>> config = TrainConfig(model="revgnn-wide", dataset="synthetic-proteins",
...                      dataset_options={"num_nodes": 300}, num_layers=2, hidden=16,
...                      epochs=2, out="/tmp/revgnn-doctest", device="cpu")
>>> summary = train(config, echo=lambda line: None)  # doctest: +SKIP
"""
from .config import ConfigError, TrainConfig, read_config_file
from .data import check_model_fits, load_dataset_for, model_overrides
from .device import dgl_has_cuda, resolve_device, seed_everything
from .evaluation import Evaluator, evaluate
from .loop import summarize, train, train_epoch
from .rundir import BEST_FILE, CONFIG_FILE, LAST_FILE, METRICS_FILE, STATE_FILE, SUMMARY_FILE, read_metrics
from .state import TrainingStateError, load_training_state, save_training_state

__all__ = [
    "BEST_FILE",
    "CONFIG_FILE",
    "ConfigError",
    "Evaluator",
    "LAST_FILE",
    "METRICS_FILE",
    "STATE_FILE",
    "SUMMARY_FILE",
    "TrainConfig",
    "TrainingStateError",
    "check_model_fits",
    "dgl_has_cuda",
    "evaluate",
    "load_dataset_for",
    "load_training_state",
    "model_overrides",
    "read_config_file",
    "read_metrics",
    "resolve_device",
    "save_training_state",
    "seed_everything",
    "summarize",
    "train",
    "train_epoch",
]
