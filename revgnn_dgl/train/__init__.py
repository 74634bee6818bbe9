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

``parts_per_step`` averages the loss of several parts per optimizer step, and ``nproc``
processes train one run together, data-parallel over the parts (:mod:`.distributed`,
started by :func:`launch` or torchrun; only rank 0 writes the run directory).

The modules, bottom to top: :mod:`.config` (``TrainConfig``), :mod:`.device` (devices, seeds),
:mod:`.data` (the dataset on the device, partitions), :mod:`.state` (the resumable state file),
:mod:`.metrics_log` (``metrics.jsonl``), :mod:`.rundir` (the run directory: its lock and files), :mod:`.distributed` (process groups, DDP),
:mod:`.evaluation`, :mod:`.loop` (with the seeded run's parts: :mod:`.resume`, :mod:`.losses`,
:mod:`.weighting`, :mod:`.callbacks`, :mod:`.progress`, :mod:`.summary`), :mod:`.launcher` (starting data-parallel jobs) and
:mod:`.settings` (what a ``train`` or ``evaluate`` command asks for, resolved into a TrainConfig);
:mod:`.tune` runs Optuna studies of such runs on top of them all.

>>> from revgnn_dgl.train import TrainConfig, train
>>> config = TrainConfig(model="revgnn-wide", dataset="synthetic-proteins",
...                      dataset_options={"num_nodes": 300}, num_layers=2, hidden=16,
...                      epochs=2, out="/tmp/revgnn-doctest", device="cpu")
>>> summary = train(config)  # doctest: +SKIP
"""

from ..lazy import lazy_exports

# name -> submodule. Loaded on first use (PEP 562), so that ``revgnn_dgl.train.config`` is
# importable without torch or DGL: the command line validates a configuration before loading them.
_EXPORTS = {
    "ConfigError": "config", "TrainConfig": "config", "read_config_file": "config",
    "check_model_fits": "data", "load_dataset_for": "data", "model_overrides": "data",
    "dgl_has_cuda": "device", "resolve_device": "device", "seed_everything": "device",
    "Context": "distributed", "DistributedError": "distributed", "launch": "launcher",
    "Evaluator": "evaluation", "evaluate": "evaluation",
    "TrainingDiverged": "loop", "train": "loop", "train_epoch": "loop", "summarize": "summary",
    "Callback": "callbacks", "evaluate_run": "command", "train_command": "command",
    "BEST_FILE": "rundir", "CONFIG_FILE": "rundir", "LAST_FILE": "rundir", "METRICS_FILE": "metrics_log",
    "STATE_FILE": "rundir", "SUMMARY_FILE": "rundir", "read_metrics": "metrics_log",
    "TrainingStateError": "state", "load_training_state": "state", "save_training_state": "state",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
