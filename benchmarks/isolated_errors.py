"""Where a model's errors lie on a graph with isolated nodes (issue 39, the copurchase family).

``errors``: per saved prediction file (``revgnn-dgl evaluate --run RUN --save-predictions F.npz``),
the wrong nodes of each split, split into isolated (in-degree 0) and connected nodes of the
dataset's graph. ``write-graph``: the dataset as a DGL graph file (``--dataset PATH``), with
``--isolated-self-loops`` one self-loop on each node of in-degree 0 (what ``gcn-2``'s
``self_loops='auto'`` adds to its graph), so a deep model's GraphConv blocks send those nodes
their own features instead of nothing but the bias. ``sgc``: scikit-learn's logistic regression on
the features propagated k times by GCN's :math:`\tilde D^{-1/2}(A + I)\tilde D^{-1/2}` (SGC), C
chosen on validation: how much of the labels k hops of propagation keep.

    python benchmarks/isolated_errors.py write-graph /tmp/copurchase.bin
    python benchmarks/isolated_errors.py write-graph /tmp/copurchase-isoloops.bin --isolated-self-loops
    python benchmarks/isolated_errors.py errors RUN_A.npz RUN_B.npz
    python benchmarks/isolated_errors.py sgc --hops 0 1 2 4 8 16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from revgnn_dgl.data import load_dataset  # noqa: E402


def _dataset(spec: str):
    name, _, opts = spec.partition(":")
    options = {}
    for item in filter(None, opts.split(",")):
        key, _, value = item.partition("=")
        options[key] = int(value) if value.isdigit() else value
    return load_dataset(name, **options)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic-family:family=copurchase,num_nodes=1000")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write-graph")
    w.add_argument("out")
    w.add_argument("--isolated-self-loops", action="store_true")
    e = sub.add_parser("errors")
    e.add_argument("predictions", nargs="+")
    k = sub.add_parser("sgc")
    k.add_argument("--hops", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16])
    args = parser.parse_args(argv)
    ds = _dataset(args.dataset)
    iso = (ds.graph.in_degrees() == 0).numpy()
    if args.command == "write-graph":
        import dgl
        import torch

        graph = ds.to_graph()
        if args.isolated_self_loops:
            nodes = torch.from_numpy(np.flatnonzero(iso))
            graph = dgl.add_edges(graph, nodes, nodes)
        dgl.save_graphs(args.out, [graph])
        print(
            f"{args.out}: {graph.num_nodes()} nodes, {graph.num_edges()} edges, {int(iso.sum())} isolated nodes"
            + (" given a self-loop" if args.isolated_self_loops else "")
        )
        return
    y = ds.labels.numpy()
    if args.command == "sgc":
        _sgc(ds, y, iso, args.hops)
        return
    for path in args.predictions:
        z = np.load(path, allow_pickle=True)
        pred = np.full(len(y), -1)
        pred[z["node_id"]] = z["logits"].argmax(1)
        parts = []
        for split, idx in (("val", ds.val_idx.numpy()), ("test", ds.test_idx.numpy()), ("train", ds.train_idx.numpy())):
            wrong = idx[pred[idx] != y[idx]]
            parts.append(
                f"{split} wrong {len(wrong)}: isolated {int(iso[wrong].sum())}/{int(iso[idx].sum())}, "
                f"connected {int((~iso[wrong]).sum())}/{int((~iso[idx]).sum())}"
            )
        print(f"{path}: " + "; ".join(parts))


def _sgc(ds, y, iso, hops) -> None:
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    n = ds.graph.num_nodes()
    src, dst = (t.numpy() for t in ds.graph.edges())
    adj = sp.csr_matrix((np.ones(len(src)), (dst, src)), shape=(n, n)) + sp.identity(n)
    d = 1.0 / np.sqrt(np.asarray(adj.sum(1)).ravel())
    prop = sp.diags(d) @ adj @ sp.diags(d)
    tr, va, te = (i.numpy() for i in (ds.train_idx, ds.val_idx, ds.test_idx))
    h, done = ds.graph.ndata["feat"].numpy().astype(np.float64), 0
    for k in sorted(hops):
        while done < k:
            h, done = prop @ h, done + 1
        best = None
        for c in (0.1, 1.0, 10.0, 100.0, 1000.0):
            model = LogisticRegression(C=c, max_iter=3000).fit(h[tr], y[tr])
            val = model.score(h[va], y[va])
            if best is None or val > best[0]:
                best = (val, model, c)
        pred = best[1].predict(h)
        wrong = te[pred[te] != y[te]]
        print(
            f"SGC {k:2d} hops: val {best[0]:.3f}, test {np.mean(pred[te] == y[te]):.3f} (C {best[2]:g}); "
            f"test wrong {len(wrong)}, isolated {int(iso[wrong].sum())}/{int(iso[te].sum())}"
        )


if __name__ == "__main__":
    main()
