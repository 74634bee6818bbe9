"""Data-parallel scaling: epoch time and per-rank peak memory of one run at 1 and 2 processes.

The same run (the same optimizer steps: 2 parts each) is trained by one process with
``parts_per_step=2`` and by two processes with one part each (DDP over gloo), each process in a
fresh interpreter with one CPU thread (:func:`revgnn_dgl.train.distributed.spawn`). Epoch 1 is a
warm-up and is measured for memory (torch's allocator peak above the level at the start of the
epoch, read from the profiler's memory events, :func:`~revgnn_dgl.bench.profiling.measure_peak_memory`);
the later epochs are timed without the profiler, every rank starting each epoch together.

    python benchmarks/scaling.py [--out DIR] [--nodes N] [--epochs E]

The results and how to read them are in docs/distributed.md. An experiment, not part of the
package: it imports :mod:`revgnn_dgl`, never the reverse.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from revgnn_dgl.bench.profiling import measure_peak_memory
from revgnn_dgl.bench.results import markdown_table, write_rows
from revgnn_dgl.env import environment
from revgnn_dgl.train.config import TrainConfig
from revgnn_dgl.train.data import DeviceData, load_dataset_for, model_overrides
from revgnn_dgl.train.device import seed_everything
from revgnn_dgl.train.distributed import Context, spawn
from revgnn_dgl.train.loop import TRAIN_STREAM, train_epoch
from revgnn_dgl.zoo import create_model

RESULTS = Path(__file__).resolve().parent / "results"

#: RevGNN-Wide's architecture at 16 layers x 64 channels on a 20,000-node synthetic-proteins
#: graph (about 1M edges), cut into the recipe's 10 parts.
DEFAULT_RUN: Dict[str, Any] = dict(
    model="wide",
    dataset="synthetic-proteins",
    dataset_options={"num_nodes": 20000, "avg_degree": 50},
    num_layers=16,
    hidden=64,
    train_parts=10,
    lr=1e-3,
    device="cpu",
)


def _vm_hwm() -> Optional[int]:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def measure_rank(ctx: Context, run: Dict[str, Any], parts_per_step: int, epochs: int) -> Dict[str, Any]:
    """One process's share: epoch 1 under the memory profiler, epochs 2..E timed."""
    config = TrainConfig(**run, parts_per_step=parts_per_step, nproc=ctx.world_size)
    job = ctx if ctx.world_size > 1 else Context()  # one process: no process group, no DDP
    dataset = load_dataset_for(config)
    overrides, _ = model_overrides(config, dataset)
    device = job.use_device("cpu")
    seed_everything(config.seed)
    model = create_model(config.model, **overrides).to(device)
    net = job.wrap(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    data = DeviceData.on(dataset, device)

    def epoch(number: int) -> float:
        rng = np.random.default_rng([config.seed, TRAIN_STREAM, number])
        return train_epoch(net, optimizer, data, config.train_parts, rng, config.grad_clip,
                           parts_per_step=parts_per_step, dist=job)  # fmt: skip

    job.all_reduce_sum([0.0])  # start together
    stats = measure_peak_memory(lambda: epoch(1), device)
    times: List[float] = []
    cpu: List[float] = []
    for number in range(2, epochs + 1):
        job.all_reduce_sum([0.0])
        tic, cpu_tic = time.perf_counter(), time.process_time()
        epoch(number)
        times.append(time.perf_counter() - tic)
        cpu.append(time.process_time() - cpu_tic)
    params = sum(p.numel() for p in model.parameters())
    return {
        "processes": ctx.world_size,
        "rank": ctx.rank,
        "parts_per_step": parts_per_step * ctx.world_size,
        "parts_per_process_per_step": parts_per_step,
        "steps_per_epoch": -(-config.train_parts // (parts_per_step * ctx.world_size)),
        "epoch_time_s": statistics.median(times) if times else None,
        "epoch_times_s": times,
        # CPU seconds of this process (all its threads) per epoch: the work, whatever else runs on the machine.
        "epoch_cpu_s": statistics.median(cpu) if cpu else None,
        "epoch_peak_delta_bytes": stats.peak_bytes,
        "model_state_bytes": 16 * params,  # weights, gradients and Adam's two moments
        "peak_rss_bytes": _vm_hwm(),
        "parameters": params,
        "nodes": dataset.graph.num_nodes(),
        "edges": dataset.graph.num_edges(),
        "threads": torch.get_num_threads(),
    }


def scaling(
    run: Optional[Dict[str, Any]] = None, epochs: int = 3, out: Path = RESULTS, echo: Any = print
) -> List[Dict[str, Any]]:
    """Measure ``run`` at 1 process (2 parts per step) and 2 processes (1 part each); write ``scaling.csv|json``."""
    run = dict(DEFAULT_RUN if run is None else run)
    rows: List[Dict[str, Any]] = []
    for processes, per_process in ((1, 2), (2, 1)):
        tic = time.perf_counter()
        ranks = spawn(measure_rank, processes, run, per_process, epochs, threads=1, timeout_s=1800)
        env = environment(torch.device("cpu"))
        env["threads"] = 1
        for row in ranks:
            rows.append({"suite": "scaling", "model": run["model"], "num_layers": run["num_layers"],
                         "hidden": run["hidden"], "train_parts": run["train_parts"], **row, **env})  # fmt: skip
            echo(
                f"{processes} process(es), rank {row['rank']}: epoch {row['epoch_time_s']:.2f} s "
                f"(epochs {', '.join(f'{t:.2f}' for t in row['epoch_times_s'])}; CPU {row['epoch_cpu_s']:.2f} s), allocator peak "
                f"{row['epoch_peak_delta_bytes'] / 2**20:.1f} MiB above the epoch's start, peak RSS "
                f"{(row['peak_rss_bytes'] or 0) / 2**20:.0f} MiB"
            )
        echo(f"  ({time.perf_counter() - tic:.0f} s with start-up)")
        write_rows(rows, out, "scaling")
    return rows


def report(rows: Sequence[Dict[str, Any]]) -> str:
    """A Markdown table of the rows, with the speed-up over one process."""
    one = statistics.fmean(r["epoch_time_s"] for r in rows if r["processes"] == 1)
    table = [
        {
            **r,
            "speedup": one / r["epoch_time_s"],
            "epoch_peak_delta_mib": r["epoch_peak_delta_bytes"] / 2**20,
            "peak_rss_mib": (r["peak_rss_bytes"] or 0) / 2**20,
        }
        for r in rows
    ]
    columns = ["processes", "rank", "parts_per_step", "steps_per_epoch", "epoch_time_s", "speedup", "epoch_cpu_s",
               "epoch_peak_delta_mib", "peak_rss_mib", "load_avg_1m"]  # fmt: skip
    return markdown_table(table, columns)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="where scaling.csv|json go [benchmarks/results]")
    parser.add_argument("--nodes", type=int, default=DEFAULT_RUN["dataset_options"]["num_nodes"], help="graph size")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run, the first a warm-up [3]")
    args = parser.parse_args(argv)
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    run = {**DEFAULT_RUN, "dataset_options": {**DEFAULT_RUN["dataset_options"], "num_nodes": args.nodes}}
    rows = scaling(run, epochs=max(2, args.epochs), out=args.out)
    print(report(rows))


if __name__ == "__main__":
    main()
