"""One training step of an execution variant in float64, by canonical parameter name, for the
tests that compare variants (``tests/bench``: ours against ordinary autograd;
``tests/benchmarks``: DGL's and PyG's blocks, registered by ``benchmarks/alternatives_variants.py``)."""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import pytest
import torch
from grad_check import assert_gradients_match

from revgnn_dgl.bench import StepConfig, TrainStep
from revgnn_dgl.bench.speed import speed_compare
from revgnn_dgl.bench.workload import GraphBatch, make_batch, model_arguments
from revgnn_dgl.zoo import create_model

TINY = dict(hidden=8, nodes=60, edges=240)
PYG_RENAMES = (
    (".convs.", ".gnn_modules."),
    (".conv.lin_edge.", ".conv.edge_encoder."),
    (".conv.mlp.4.", ".conv.mlp.3."),
)


def canonical(name: str) -> str:
    """A variant's parameter name as the zoo model's own (``model.``/``base.`` dropped; PyG's
    ``GroupAddRev``/``GENConv`` names mapped onto ours, the way the pyg variant copies the weights)."""
    name = name.split(".", 1)[1]
    for theirs, ours in PYG_RENAMES:
        name = name.replace(theirs, ours)
    return name


def one_step(variant: str, model: torch.nn.Module, batch: GraphBatch) -> dict:
    """One training step (forward, loss, backward, clipping, Adam) of a variant, in float64:
    its loss, and its gradients and weights after the step by canonical name."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the pyg variant builds its blocks and copies weights
    try:
        ts = TrainStep(StepConfig(model="revgnn-112", depth=3, variant=variant, **TINY), batch=batch, model=model)
    finally:
        torch.set_default_dtype(default)
    loss = ts.step()
    named = list(ts.net.named_parameters())
    assert all(p.dtype == torch.float64 for _, p in named), variant
    return {
        "loss": loss,
        "grads": {canonical(n): p.grad.detach().clone() for n, p in named},
        "weights": {canonical(n): p.detach().clone() for n, p in named},
    }


def float64_step() -> Tuple[torch.nn.Module, GraphBatch, dict]:
    """The zoo model (weights seeded), a generated batch, both in float64, and the reference
    step: ordinary autograd (``disable``)."""
    cfg = StepConfig(model="revgnn-112", depth=3, **TINY)
    name, _, args = model_arguments(cfg)
    torch.manual_seed(cfg.seed)
    model = create_model(name, **args).double()
    b = make_batch(cfg.nodes, cfg.edges, cfg.edge_feats, cfg.species, cfg.tasks, cfg.seed)
    batch = GraphBatch(
        graph=b.graph,
        feat=b.feat.double(),
        edge_feat=b.edge_feat.double(),
        species=b.species.double(),
        labels=b.labels.double(),
    )
    return model, batch, one_step("disable", model, batch)


def assert_same_step(result: dict, reference: dict) -> None:
    assert result["loss"] == pytest.approx(reference["loss"], rel=1e-12)
    assert_gradients_match(result["grads"], reference["grads"])
    # The weights before the step are equal; after it, they are equal to float64 rounding too.
    assert_gradients_match(result["weights"], reference["weights"])


def assert_speed_rows_agree(variants: Sequence[str]) -> None:
    """:func:`speed_compare` runs every variant on the same weights, graph and dropout mask:
    the same first loss (float32: the reversible paths differ from autograd by rounding only)
    and parameter count, and ``ours`` is the reference of the time ratios."""
    rows = speed_compare({"model": "revgnn-112", **TINY}, depths=[3], variants=list(variants), repeats=1)
    assert [(r["variant"], r["status"]) for r in rows] == [(v, "ok") for v in variants], rows
    losses = [r["first_loss"] for r in rows]
    assert all(math.isclose(x, losses[0], rel_tol=1e-6) for x in losses), dict(zip(variants, losses))
    assert len({r["parameters"] for r in rows}) == 1
    assert rows[list(variants).index("ours")]["time_ratio_to_ours"] == 1.0
