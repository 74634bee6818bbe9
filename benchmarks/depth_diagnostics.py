"""Why a deep RevGNN trains or not: per-layer statistics of one training-mode forward and backward.

For a RevGNN (or a trained checkpoint of one) on a dataset, one forward pass in training mode
(dropout on) and one backward pass of the training loss give, for the node encoder's output and
for every layer's output :math:`h_l \\in \\mathbb{R}^{N \\times D}`:

* ``rms``: :math:`\\sqrt{\\operatorname{mean}(h_l^2)}`, the activation scale;
* ``node_frac``: :math:`\\sum_c \\operatorname{var}_n h_l[n, c] / \\sum_c \\operatorname{mean}_n h_l[n, c]^2`,
  the share of the second moment that differs between nodes (near 0: every node carries the
  same vector, so nothing downstream can tell nodes apart);
* ``grad``: the norm of the gradient of layer :math:`l`'s parameters;
* ``probe`` (single-label datasets, selected layers): validation accuracy of an L2-regularised
  logistic regression fitted on the training nodes' standardised :math:`h_l`, i.e. how much
  label information layer :math:`l` still holds.

    python benchmarks/depth_diagnostics.py --dataset cora --conv gen --aggregator max --layers 64
    python benchmarks/depth_diagnostics.py --checkpoint results/runs/RUN/run-0/best.safetensors

See docs/results.md ("Why deep models lost on Cora") for what they showed. An experiment, not part of the package: it imports :mod:`revgnn_dgl`, never the reverse.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from revgnn_dgl.data import NodeDataset, load_dataset
from revgnn_dgl.train.data import forward
from revgnn_dgl.zoo import build_from_config
from revgnn_dgl.zoo.checkpoint import build_from_checkpoint

PROBE_LAYERS = (1, 2, 4, 8, 16, 32, 64, 128)


def spread(h: Tensor) -> Dict[str, float]:
    """Activation scale and the share of the second moment that varies across nodes."""
    h = h.detach().double()
    second = h.pow(2).mean(0).sum()
    across_nodes = h.var(0, unbiased=False).sum()
    return {"rms": float(h.pow(2).mean().sqrt()), "node_frac": float(across_nodes / second.clamp(min=1e-300))}


def probe_accuracy(h: Tensor, dataset: NodeDataset, steps: int = 100) -> float:
    """Validation accuracy of an L2-regularised logistic regression on standardised features."""
    h = h.detach().double()
    train = dataset.train_idx
    z = (h - h[train].mean(0)) / h[train].std(0).clamp(min=1e-8)
    classes = dataset.num_outputs
    w = torch.zeros(z.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z[train] @ w + b, dataset.labels[train]) + 1e-2 * w.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        pred = (z[dataset.val_idx] @ w + b).argmax(1)
    return float((pred == dataset.labels[dataset.val_idx]).double().mean())


def diagnose(model: torch.nn.Module, dataset: NodeDataset, seed: int = 0, probe: bool = True) -> Dict[str, Any]:
    """Per-layer statistics of one training-mode forward and backward of ``model`` on ``dataset``."""
    layers = list(model.layers)
    if len(layers) != getattr(model, "num_layers", len(layers)):  # weight-tied: one module applied num_layers times
        raise ValueError("depth diagnostics need one module per layer (RevGNN or ResGNN)")
    # Copies: the memory-saving backward frees the storage of every layer's output after the forward.
    outputs: List[Tensor] = []
    hooks = [model.node_encoder.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))]
    hooks += [layer.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone())) for layer in model.layers]
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    try:
        logits = forward(model, dataset.graph)
    finally:
        for hook in hooks:
            hook.remove()
    train = dataset.train_idx
    if dataset.task == "multilabel":
        loss = F.binary_cross_entropy_with_logits(logits[train], dataset.labels[train].float())
    else:
        loss = F.cross_entropy(logits[train], dataset.labels[train])
    loss.backward()
    single_label = dataset.task == "multiclass" and probe
    encoder, layer_outputs = outputs[0], outputs[1:]
    report: Dict[str, Any] = {
        "loss": float(loss),
        "input_probe": probe_accuracy(dataset.graph.ndata["feat"], dataset) if single_label else None,
        "encoder": {
            **spread(encoder),
            "bias_rms": float(model.node_encoder.bias.detach().pow(2).mean().sqrt()),
            "grad": float(model.node_encoder.weight.grad.norm()),
            "probe": probe_accuracy(encoder, dataset) if single_label else None,
        },
        "head_grad": float(model.head.weight.grad.norm()),
        "layers": [],
    }
    last = len(layers)
    for depth, (layer, h) in enumerate(zip(layers, layer_outputs), start=1):
        squares = [float(p.grad.pow(2).sum()) for p in layer.parameters() if p.grad is not None]
        row = {"layer": depth, **spread(h), "grad": math.sqrt(sum(squares))}
        if single_label and (depth in PROBE_LAYERS or depth == last):
            row["probe"] = probe_accuracy(h, dataset)
        report["layers"].append(row)
    return report


def format_report(report: Dict[str, Any]) -> str:
    """A markdown table of the encoder and the probed layers (every layer's row is in the JSON)."""
    lines = [
        f"loss {report['loss']:.4f}; raw-input probe {report['input_probe']}; head grad {report['head_grad']:.3g}",
        "",
        "| output of | rms | node_frac | grad | probe (val acc) |",
        "|---|---|---|---|---|",
    ]
    enc = report["encoder"]
    probe = "-" if enc["probe"] is None else f"{enc['probe']:.3f}"
    lines.append(
        f"| encoder (bias rms {enc['bias_rms']:.3g}) | {enc['rms']:.3g} | {enc['node_frac']:.3f} | {enc['grad']:.3g} | {probe} |"
    )
    last = len(report["layers"])
    for row in report["layers"]:
        if row["layer"] in PROBE_LAYERS or row["layer"] == last:
            probe = f"{row['probe']:.3f}" if "probe" in row else "-"
            lines.append(
                f"| layer {row['layer']} | {row['rms']:.3g} | {row['node_frac']:.3f} | {row['grad']:.3g} | {probe} |"
            )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cora")
    parser.add_argument("--checkpoint", type=Path, help="a trained RevGNN/ResGNN checkpoint instead of a fresh model")
    parser.add_argument("--connection", default="reversible", choices=["reversible", "residual"])
    parser.add_argument("--conv", default="gen")
    parser.add_argument("--aggregator", default="max")
    parser.add_argument("--norm", default="layer")
    parser.add_argument("--layers", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--zero-encoder-bias", action="store_true", help="start the node encoder's bias at 0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the full report (every layer) as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.checkpoint:
        model = build_from_checkpoint(args.checkpoint)
        meta = model.checkpoint_metadata
        dataset = load_dataset(meta.get("dataset", args.dataset), **(meta.get("dataset_options") or {}))
    else:
        dataset = load_dataset(args.dataset)
        torch.manual_seed(args.seed)
        architecture = "revgnn" if args.connection == "reversible" else "resgnn"
        model = build_from_config(architecture, dict(
            in_feats=dataset.num_node_feats, out_feats=dataset.num_outputs, edge_feats=dataset.num_edge_feats,
            hidden=args.hidden, num_layers=args.layers, conv=args.conv, aggregator=args.aggregator,
            norm=args.norm, dropout=args.dropout, disable=True,
        ))  # fmt: skip
        if args.zero_encoder_bias:
            torch.nn.init.zeros_(model.node_encoder.bias)
    report = diagnose(model, dataset, seed=args.seed)
    report["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    print(format_report(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
