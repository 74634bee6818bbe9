"""Memory of one training step of the reversible GCNII against a plain ``dgl.nn.GCN2Conv`` stack.

Three models of the same depth and width on one generated graph of Cora's size (2,708 nodes,
10,556 edges plus one self-loop each, 1,433 input features, 7 classes):

* ``revgnn-gcnii`` -- RevGNN with ``conv='gcnii'`` (the Cora recipe's model: 2 groups, no norm,
  the stream starting at zero, independent dropout 0.6), the memory-saving backward;
* ``revgnn-gcnii-disable`` -- the same blocks under ordinary autograd (``disable=True``);
* ``gcn2conv`` -- GCNII as published, built from DGL's ``GCN2Conv``: ``Linear -> ReLU``, then per
  layer ``dropout -> GCN2Conv -> ReLU``, then ``dropout -> Linear``; ordinary autograd (input
  dropout, the trainer's in both, is left out of both).

Each (model, depth) runs in a fresh process (:func:`revgnn_dgl.bench.profiling.run_in_subprocess`);
the child measures one forward and backward with :func:`revgnn_dgl.bench.profiling.measure_forward_backward`
(the allocator's exact peak above what was live before the step) after one warm-up step.
Independent dropout inside reversible blocks records the CPU generator's state (5 KB) per
group and block for the replay, a per-layer cost independent of the graph's size.
``activation_peak_bytes`` is that peak less the gradients the backward allocates (4 bytes a
parameter), the part a reversible network keeps flat.

    python benchmarks/gcnii_memory.py [--depths 4,16,64] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODELS = ("revgnn-gcnii", "revgnn-gcnii-disable", "gcn2conv")
NODES, EDGES, FEATS, CLASSES = 2708, 10556, 1433, 7


def measure_one(model: str, depth: int, hidden: int = 64, threads: int = 1) -> Dict[str, Any]:
    """In the child: build ``model`` at ``depth``, warm up, measure one training step."""
    import dgl
    import torch
    import torch.nn.functional as F
    from torch import nn

    from revgnn_dgl.bench.profiling import measure_forward_backward
    from revgnn_dgl.models import RevGNN

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    graph = dgl.add_self_loop(dgl.rand_graph(NODES, EDGES))
    feat = torch.rand(NODES, FEATS)
    labels = torch.randint(0, CLASSES, (NODES,))

    if model == "gcn2conv":

        class GCNII(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.enc, self.head = nn.Linear(FEATS, hidden), nn.Linear(hidden, CLASSES)
                self.convs = nn.ModuleList(
                    dgl.nn.GCN2Conv(hidden, l + 1, alpha=0.1, lambda_=0.5, project_initial_features=True, bias=False)
                    for l in range(depth)
                )

            def forward(self, g: Any, x: Any) -> Any:
                h0 = F.relu(self.enc(x))  # input dropout is the trainer's, outside both models
                h = h0
                for conv in self.convs:
                    h = F.relu(conv(g, F.dropout(h, 0.6, self.training), h0))
                return self.head(F.dropout(h, 0.6, self.training))

        net: nn.Module = GCNII()
    else:
        net = RevGNN(
            FEATS, CLASSES, hidden=hidden, num_layers=depth, groups=2, conv="gcnii", norm="none", dropout=0.6,
            stream_init="zero", block_dropout="independent", disable=model.endswith("-disable"),
        )  # fmt: skip
    net.train()
    params = sum(p.numel() for p in net.parameters())

    def step() -> Any:
        return net(graph, feat)

    def loss(out: Any) -> Any:
        return F.cross_entropy(out, labels)

    loss(step()).backward()  # warm-up: lazy allocations and the autograd engine's first use
    net.zero_grad(set_to_none=True)
    stats = measure_forward_backward(step, loss_fn=loss)
    return {
        "model": model,
        "depth": depth,
        "hidden": hidden,
        "parameters": params,
        "peak_bytes": stats.peak_bytes,
        "retained_bytes": stats.retained_bytes,
        "activation_peak_bytes": stats.peak_bytes - 4 * params,
    }


def sweep(depths: Sequence[int], out: Optional[Path], echo: Any = print) -> List[Dict[str, Any]]:
    import torch

    from revgnn_dgl.bench.profiling import run_in_subprocess
    from revgnn_dgl.bench.results import write_rows
    from revgnn_dgl.env import environment

    env = {
        k: v
        for k, v in environment(torch.device("cpu")).items()
        if k in ("torch", "dgl", "cpu_model", "git_commit", "load_avg_1m")
    }
    rows = []
    for model in MODELS:
        for depth in depths:
            report = run_in_subprocess("gcnii_memory:measure_one", {"model": model, "depth": depth}, timeout=1800)
            row = report["result"] if report["status"] == "ok" else {"model": model, "depth": depth}
            row.update(status=report["status"], peak_rss_bytes=report["max_rss_bytes"], **env)
            if report["status"] != "ok":
                row["message"] = report["message"]
            rows.append(row)
            mib = {k: f"{row[k] / 2**20:.1f} MiB" for k in ("peak_bytes", "activation_peak_bytes") if k in row}
            echo(f"{model} depth {depth}: {report['status']} {mib}")
            if out is not None:
                write_rows(rows, out, "gcnii_memory")
    return rows


def report(rows: Sequence[Dict[str, Any]]) -> str:
    """The markdown table of benchmarks/README.md: peak and activation peak (MiB) per model and depth."""
    depths = sorted({r["depth"] for r in rows})
    cell = {(r["model"], r["depth"]): r for r in rows}
    lines = [
        "| depth | " + " | ".join(f"{m} peak / activations" for m in MODELS) + " |",
        "|---" * (len(MODELS) + 1) + "|",
    ]
    for d in depths:
        cells = []
        for m in MODELS:
            r = cell.get((m, d), {})
            ok = r.get("status") == "ok"
            cells.append(
                f"{r['peak_bytes'] / 2**20:.1f} / {r['activation_peak_bytes'] / 2**20:.1f}"
                if ok
                else r.get("status", "")
            )
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="4,16,64")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = sweep([int(d) for d in args.depths.split(",")], args.out)
    print(report(rows))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
