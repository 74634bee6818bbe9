"""Full-graph inference in blocks against the whole-graph forward: peak memory and time.

A generated graph with ogbn-proteins' schema (8-dim edge features, a species one-hot, 112
tasks; by default its size: 132,534 nodes, 79,122,504 directed edges) and a RevGNN of the
Deep card's width (80 channels, 2 groups) at ``--layers`` depth. Each measurement runs in a
fresh process: it builds the graph, lets DGL make the in-edge index every mode needs, resets
the peak resident set (``/proc/self/clear_refs``) and then runs one inference, so the reported
peak is what inference adds above the loaded graph's own storage.

    python benchmarks/full_graph.py                                   # ogbn-proteins size, blocks, 2GB
    python benchmarks/full_graph.py --nodes 13250 --edges 790000 --mode both   # the paper's batch

``--mode whole`` runs the model's ordinary forward on the whole graph (where it fits);
``--mode chunked`` the blocks of :mod:`revgnn_dgl.train.fullgraph` within ``--budget``.
Record ``cat /proc/loadavg`` with the result; results go to ``--out`` (default: a new folder
under ``runs/benchmarks/``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(args: argparse.Namespace) -> Dict[str, Any]:
    import dgl
    import torch

    import revgnn_dgl
    from revgnn_dgl.data.base import NodeDataset, as_index
    from revgnn_dgl.train.data import DeviceData, forward
    from revgnn_dgl.train.fullgraph import full_graph_logits, parse_memory_budget, plan_for

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    n, e = args.nodes, args.edges
    src = torch.randint(0, n, (e,), generator=gen)
    dst = torch.randint(0, n, (e,), generator=gen)
    graph = dgl.graph((src, dst), num_nodes=n)
    del src, dst
    graph.edata["feat"] = torch.rand(e, 8, generator=gen)
    graph.ndata["feat"] = torch.zeros(n, 8).index_add_(0, graph.edges()[1], graph.edata["feat"])
    graph.ndata["species"] = torch.nn.functional.one_hot(torch.randint(0, 8, (n,), generator=gen), 8).float()
    graph.create_formats_()  # the in-edge index (CSC) both modes use: part of the graph's storage
    ids = torch.arange(n)
    dataset = NodeDataset(name="generated", graph=graph, labels=(torch.rand(n, 112, generator=gen) < 0.3).float(),
                          train_idx=as_index(ids[: n // 2]), val_idx=as_index(ids[n // 2: 3 * n // 4]),
                          test_idx=as_index(ids[3 * n // 4:]), task="multilabel")  # fmt: skip
    data = DeviceData.on(dataset, torch.device("cpu"))
    model = revgnn_dgl.create_model(
        "revgnn-deep", num_layers=args.layers, hidden=args.hidden, groups=args.groups
    ).eval()
    Path("/proc/self/clear_refs").write_text("5")  # the peak from here on
    loaded = _rss_kib("VmRSS")
    plan = plan_for(model, data, parse_memory_budget(args.budget))
    tic = time.perf_counter()
    with torch.no_grad():
        if args.child == "whole":
            logits = forward(model, data.graph)
        else:
            logits = full_graph_logits(model, data, plan=plan)
    seconds = time.perf_counter() - tic
    peak = _rss_kib("VmHWM")
    return {
        "mode": args.child, "nodes": n, "edges": e, "layers": args.layers, "hidden": args.hidden, "groups": args.groups,
        "budget": args.budget, "blocks": len(plan.blocks) if args.child == "chunked" else 1,
        "estimated_peak_bytes": plan.peak_bytes, "rss_after_load_bytes": loaded * 1024,
        "peak_above_load_bytes": (peak - loaded) * 1024, "seconds": seconds, "seconds_per_layer": seconds / args.layers,
        "logits_checksum": float(logits.double().sum()), "load_before": os.getloadavg()[0],
    }  # fmt: skip


def main(argv: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="benchmarks/full_graph.py", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=132_534)
    parser.add_argument("--edges", type=int, default=79_122_504)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=80)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--budget", default="2GB")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mode", choices=["chunked", "whole", "both"], default="chunked")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", choices=["chunked", "whole"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return []
    out = args.out or Path("runs") / "benchmarks" / f"full_graph-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for mode in ["whole", "chunked"] if args.mode == "both" else [args.mode]:
        command = [sys.executable, __file__, "--child", mode, "--nodes", str(args.nodes), "--edges", str(args.edges),
                   "--layers", str(args.layers), "--hidden", str(args.hidden), "--groups", str(args.groups),
                   "--budget", args.budget, "--threads", str(args.threads)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            rows.append({"mode": mode, "status": "error", "error": done.stderr.strip().splitlines()[-1:]})
        else:
            rows.append({**json.loads(done.stdout.strip().splitlines()[-1]), "status": "ok"})
        row = rows[-1]
        if row["status"] == "ok":
            print(f"{mode:8s} {row['nodes']:,} nodes {row['edges']:,} edges, {row['layers']} layers: "
                  f"{row['seconds']:.1f} s ({row['seconds_per_layer']:.2f} s a layer), peak above the loaded graph "
                  f"{row['peak_above_load_bytes'] / 2**30:.2f} GiB (estimated {row['estimated_peak_bytes'] / 2**30:.2f} GiB), "
                  f"{row['blocks']} block(s), load {row['load_before']:.2f}")  # fmt: skip
        else:
            print(f"{mode:8s} failed: {row['error']}")
    (out / "full_graph.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out / 'full_graph.json'}")
    return rows


if __name__ == "__main__":
    main()
