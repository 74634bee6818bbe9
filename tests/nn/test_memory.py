"""Activation memory of a reversible stack does not grow with depth; a plain one does."""

from __future__ import annotations

import dgl
import torch
from torch import nn

from revgnn_dgl.bench.profiling import measure_forward_backward
from revgnn_dgl.nn import GENConv, GroupRevRes, PreActivationBlock, SharedDropout

# Big enough that activations (N x D floats, and E x D/2 per-edge edge projections inside a
# block) dominate the bookkeeping of the autograd graph.
NODES, EDGES, WIDTH = 4000, 24000, 32


def stack(depth: int, disable: bool) -> nn.ModuleList:
    torch.manual_seed(0)
    width = WIDTH // 2
    return nn.ModuleList(
        GroupRevRes(
            PreActivationBlock(GENConv(width, width, aggregator="max", edge_feats=WIDTH), width, dropout=0.1),
            2,
            disable=disable,
        )
        for _ in range(depth)
    )


def activation_memory(depth: int, disable: bool):
    torch.manual_seed(0)
    g = dgl.rand_graph(NODES, EDGES)
    layers = stack(depth, disable)
    x = torch.randn(NODES, WIDTH, requires_grad=True)
    e = torch.randn(EDGES, WIDTH, requires_grad=True)
    mask = SharedDropout(0.1).sample_mask(x.detach())

    def forward():
        h = x * 1.0
        for layer in layers:
            h = layer(g, h, mask, edge_feat=e)
        return h

    return measure_forward_backward(forward)


def test_reversible_memory_flat_plain_memory_grows():
    rev4, rev64 = activation_memory(4, False), activation_memory(64, False)
    plain4, plain64 = activation_memory(4, True), activation_memory(64, True)
    one_activation = NODES * WIDTH * 4
    # What the forward pass keeps for backward: flat for the reversible stack ...
    assert rev64.retained_bytes <= 1.10 * rev4.retained_bytes, (rev4, rev64)
    # ... a few activations (input, output), not one per layer.
    assert rev64.retained_bytes < 4 * one_activation
    # The peak over forward and backward (the number that decides what fits) is flat too.
    assert rev64.peak_bytes <= 1.10 * rev4.peak_bytes, (rev4, rev64)
    # The same blocks under ordinary autograd store every layer's activations.
    assert plain64.retained_bytes >= 8 * plain4.retained_bytes, (plain4, plain64)
    assert plain64.peak_bytes >= 8 * plain4.peak_bytes, (plain4, plain64)
