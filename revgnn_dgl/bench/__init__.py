"""What ``revgnn-dgl benchmark`` measures: peak memory and time of one training step against
depth, width and graph size.

* :mod:`~revgnn_dgl.bench.workload` -- the step: a zoo model on a generated graph with
  ogbn-proteins's schema, run as ``ours`` or ``disable``, or as a variant another module adds
  with :func:`~revgnn_dgl.bench.workload.register_variant`.
* :mod:`~revgnn_dgl.bench.profiling` -- exact allocator accounting (the peak of bytes torch
  hands out, from the profiler's memory events) and the fresh-process runner.
* :mod:`~revgnn_dgl.bench.memory` -- peak allocated bytes and peak RSS, each
  configuration in a fresh process, with a memory cap that gives ``oom``/``skipped`` rows.
* :mod:`~revgnn_dgl.bench.speed` -- the variants timed side by side in one process.
* :mod:`~revgnn_dgl.bench.results`, :mod:`~revgnn_dgl.bench.plots` -- CSV/JSON rows
  with the environment, and PNG plots.
* :mod:`~revgnn_dgl.bench.cli` -- the ``benchmark`` click group (``memory``, ``speed``).
* :mod:`~revgnn_dgl.bench.selfcheck` -- ``revgnn-dgl info --check``.

The experiments built on these -- the benchmark suites and their presets, the comparison with
DGL's and PyG's reversible blocks, the scaling experiment and the depth diagnostics -- live in
the repository's ``benchmarks/`` folder, not in the package; ``benchmarks/README.md`` has their
results on the reference machine and how to reproduce them.
"""

from ..env import environment
from .memory import measure_step, memory_sweep
from .results import markdown_table, read_rows, write_rows
from .speed import run_speed, speed_compare
from .workload import VARIANTS, GraphBatch, StepConfig, TrainStep, make_batch, register_variant, variant_names

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
    "register_variant",
    "run_speed",
    "speed_compare",
    "variant_names",
    "write_rows",
]
