"""Benchmarks of one training step: peak memory and time against depth, width and graph size.

* :mod:`~revgnn_dgl.bench.workload` -- the step: a zoo model on a generated graph with
  ogbn-proteins's schema, run as ``ours``, ``disable``, ``dgl`` or ``pyg``.
* :mod:`~revgnn_dgl.bench.memory` -- peak allocated bytes and peak RSS, each
  configuration in a fresh process, with a memory cap that gives ``oom``/``skipped`` rows.
* :mod:`~revgnn_dgl.bench.speed` -- the variants timed side by side in one process.
* :mod:`~revgnn_dgl.bench.results`, :mod:`~revgnn_dgl.bench.plots` -- CSV/JSON rows
  with the environment, and PNG plots.
* :mod:`~revgnn_dgl.bench.cli` -- the ``benchmark`` click group (``memory``, ``speed``).

See ``benchmarks/README.md`` for the results on the reference machine and how to reproduce them.
"""
from ..env import environment
from .memory import measure_step, memory_sweep
from .results import markdown_table, read_rows, write_rows
from .speed import run_speed, speed_compare
from .workload import VARIANTS, GraphBatch, StepConfig, TrainStep, make_batch

__all__ = [
    "VARIANTS",
    "GraphBatch",
    "StepConfig",
    "TrainStep",
    "environment",
    "make_batch",
    "markdown_table",
    "measure_step",
    "memory_sweep",
    "read_rows",
    "run_speed",
    "speed_compare",
    "write_rows",
]
