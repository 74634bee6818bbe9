"""The default thread count against explicit ``--threads``: the README's own-graph command, a few
epochs, each variant in a fresh process, under whatever load the machine has (record it: the
default's point is to do well on a busy machine too).

    python benchmarks/thread_default.py [--epochs 15] [--threads 1,2]

Prints one line per variant (wall seconds, the load average before it, the threads the run chose)
and writes ``benchmarks/results/thread_default.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def own_graph(path: Path) -> None:
    """The README's ten-line example graph (500 nodes, 6,000 directed edges, 16 features, 4 classes)."""
    import dgl
    import torch

    torch.manual_seed(0)
    src, dst = torch.randint(0, 500, (2, 3000))
    g = dgl.graph((torch.cat([src, dst]), torch.cat([dst, src])), num_nodes=500)
    g.ndata["feat"] = torch.randn(500, 16)
    g.ndata["label"] = torch.randint(0, 4, (500,))
    split = torch.rand(500)
    g.ndata["train_mask"], g.ndata["val_mask"] = split < 0.6, (split >= 0.6) & (split < 0.8)
    g.ndata["test_mask"] = split >= 0.8
    g.edata["feat"] = torch.rand(g.num_edges(), 2)
    dgl.save_graphs(str(path), [g])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", default="1,2", help="explicit thread counts to compare with the default")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        graph = Path(tmp) / "my_graph.bin"
        own_graph(graph)
        for threads in ["default", *args.threads.split(",")]:
            extra = [] if threads == "default" else ["--threads", threads]
            out = Path(tmp) / f"run-{threads}"
            load = os.getloadavg()[0]
            tic = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "revgnn_dgl", "train", "--dataset", str(graph), "--model", "revgnn-112",
                 "--num-layers", "16", "--hidden", "64", "--train-parts", "1", "--epochs", str(args.epochs),
                 "--lr", "0.005", *extra, "--out", str(out)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            wall = time.perf_counter() - tic
            chose = next(line for line in proc.stdout.splitlines() if line.startswith("threads:"))
            rows.append({"threads": threads, "wall_s": wall, "load_avg_1m_before": load, "chose": chose})
            print(f"threads={threads:8s} wall {wall:6.2f} s  load before {load:.2f}  {chose}")
    best = min(r["wall_s"] for r in rows if r["threads"] != "default")
    default = next(r["wall_s"] for r in rows if r["threads"] == "default")
    print(f"default / best explicit: {default / best:.2f} (target: at most 1.5)")
    from revgnn_dgl.env import environment

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "thread_default.json").write_text(json.dumps(
        {"rows": rows, "default_over_best": default / best, "epochs": args.epochs, "environment": environment()},
        indent=1, default=str) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
