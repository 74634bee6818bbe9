"""GENConv: every aggregator against a plain scatter-based torch reference, shapes, errors."""

from __future__ import annotations

import dgl
import pytest
import torch
import torch.nn.functional as F

from revgnn_dgl.nn import AGGREGATORS, GENConv, GraphInputError


def reference_aggregate(conv: GENConv, src, dst, x_src, num_dst, edge_feat):
    """The aggregation written with torch scatter ops over an explicit edge list."""
    e = conv.edge_encoder(edge_feat) if conv.edge_encoder is not None else edge_feat
    msg = F.relu(x_src[src] + (e if e is not None else 0)) + conv.eps
    width = msg.shape[1]
    index = dst.unsqueeze(1).expand(-1, width)
    zeros = torch.zeros(num_dst, width, dtype=msg.dtype)
    deg = torch.bincount(dst, minlength=num_dst).to(msg.dtype).unsqueeze(1)
    if conv.aggregator == "sum":
        return zeros.scatter_add(0, index, msg)
    if conv.aggregator == "mean":
        return zeros.scatter_add(0, index, msg) / deg.clamp(min=1)
    if conv.aggregator == "max":
        return zeros.scatter_reduce(0, index, msg, "amax", include_self=False)
    if conv.aggregator in ("softmax", "softmax_sum"):
        logits = msg * conv.t
        node_max = zeros.scatter_reduce(0, index, logits, "amax", include_self=False)
        w = torch.exp(logits - node_max[dst])
        w = w / zeros.scatter_add(0, index, w)[dst]
        out = zeros.scatter_add(0, index, w * msg)
        if conv.aggregator == "softmax_sum":
            out = out * deg.clamp(min=1).pow(torch.sigmoid(conv.y))
        return out
    if conv.aggregator == "power":
        mean = zeros.scatter_add(0, index, msg.clamp(conv.eps, 100).pow(conv.p)) / deg.clamp(min=1)
        return torch.where(deg > 0, mean.clamp(conv.eps, 100).pow(1 / conv.p), zeros)
    raise AssertionError(conv.aggregator)


def reference_forward(conv: GENConv, src, dst, x, edge_feat):
    agg = reference_aggregate(conv, src, dst, x, x.shape[0], edge_feat)
    return conv.mlp(x + agg)


def random_graph(seed: int, n: int = 30, m: int = 120):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (m,), generator=gen)
    dst = torch.randint(0, n - 3, (m,), generator=gen)  # the last 3 nodes have no in-edges
    return dgl.graph((src, dst), num_nodes=n), src, dst


@pytest.mark.parametrize("aggregator", AGGREGATORS)
@pytest.mark.parametrize("with_edges", [False, True])
def test_matches_scatter_reference(aggregator, with_edges):
    torch.manual_seed(0)
    g, src, dst = random_graph(1)
    conv = GENConv(
        6,
        6,
        aggregator=aggregator,
        t=0.7,
        learn_t=True,
        p=1.5,
        learn_p=True,
        learn_y=True,
        edge_feats=5 if with_edges else None,
    ).double()
    x = torch.randn(30, 6, dtype=torch.float64, requires_grad=True)
    e = torch.randn(120, 5, dtype=torch.float64) if with_edges else None
    out = conv(g, x, e)
    ref = reference_forward(conv, src, dst, x, e)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    # Gradients agree too (max: ties have probability zero with random inputs).
    grads = torch.autograd.grad(out.sum(), [x] + [p for p in conv.parameters() if p.requires_grad])
    grads_ref = torch.autograd.grad(ref.sum(), [x] + [p for p in conv.parameters() if p.requires_grad])
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_zero_in_degree_aggregates_to_zero(aggregator):
    g, _, _ = random_graph(2)
    conv = GENConv(4, 4, aggregator=aggregator, edge_feats=3)
    x = torch.randn(30, 4, requires_grad=True)
    agg = conv._aggregate(g.local_var(), x, conv.edge_encoder(torch.randn(120, 3)))
    assert torch.isfinite(agg).all()
    assert torch.equal(agg[-3:], torch.zeros(3, 4))
    out = conv(g, x, torch.randn(120, 3))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_graph_without_edges(aggregator):
    # A random partition of a small graph can produce a batch with no edges at all.
    g = dgl.graph(([], []), num_nodes=5)
    conv = GENConv(4, 4, aggregator=aggregator, edge_feats=3)
    x = torch.randn(5, 4, requires_grad=True)
    out = conv(g, x, torch.randn(0, 3))
    out.sum().backward()
    torch.testing.assert_close(out, conv.mlp(x))
    assert torch.isfinite(x.grad).all()


def test_parameter_count_matches_released_block():
    # RevGNN-Deep's per-group GENConv (width 40, edge embedding of width 80, max aggregation)
    # holds 9,920 parameters; with the block's LayerNorm(40) that is the published 10,000.
    conv = GENConv(40, 40, aggregator="max", edge_feats=80)
    assert sum(p.numel() for p in conv.parameters()) == 9_920
    assert [tuple(p.shape) for p in conv.mlp.parameters()] == [(80, 40), (80,), (80,), (80,), (40, 80), (40,)]
    learnable = GENConv(8, 8, aggregator="softmax", learn_t=True, msg_norm=True, learn_msg_scale=True)
    assert sum(p.numel() for p in learnable.parameters() if p.requires_grad) == (8 * 16 + 16) + 32 + (16 * 8 + 8) + 2


def test_bipartite_block_and_projection():
    """A block (4 source, 2 destination nodes) with in_feats != out_feats, against the scatter
    reference: source and destination features projected by their own linear maps."""
    g = dgl.graph(([0, 1, 2, 3], [0, 0, 1, 1]), num_nodes=4)
    block = dgl.to_block(g, dst_nodes=torch.tensor([0, 1]))
    assert (block.num_src_nodes(), block.num_dst_nodes(), block.num_edges()) == (4, 2, 4)
    src, dst = block.edges()
    torch.manual_seed(0)
    conv = GENConv(5, 7, aggregator="softmax", t=0.7, edge_feats=2).double()
    x_src = torch.randn(4, 5, dtype=torch.float64)
    x_dst = torch.randn(2, 5, dtype=torch.float64)
    e = torch.randn(4, 2, dtype=torch.float64)

    def reference(x_dst):
        agg = reference_aggregate(conv, src, dst, conv.fc_src(x_src), 2, e)
        return conv.mlp(conv.fc_dst(x_dst) + agg)

    # A (src, dst) pair.
    torch.testing.assert_close(conv(block, (x_src, x_dst), e), reference(x_dst), rtol=1e-12, atol=1e-12)
    # One tensor: DGL's convention takes the first num_dst_nodes rows as the destination nodes.
    out = conv(block, x_src, e)
    assert out.shape == (2, 7)
    torch.testing.assert_close(out, reference(x_src[:2]), rtol=1e-12, atol=1e-12)
    # The two projections are separate maps: the destination's own features enter only through fc_dst.
    assert not torch.equal(conv.fc_src.weight, conv.fc_dst.weight)


def test_reset_parameters_restores_initial_temperature():
    conv = GENConv(4, 4, aggregator="softmax", t=0.5, learn_t=True)
    with torch.no_grad():
        conv.t.fill_(3.0)
    conv.reset_parameters()
    assert conv.t.item() == 0.5


def test_bad_inputs():
    g = dgl.rand_graph(10, 30)
    with pytest.raises(ValueError, match="unknown aggregator"):
        GENConv(4, 4, aggregator="median")
    conv = GENConv(4, 4, aggregator="max", edge_feats=3)
    with pytest.raises(GraphInputError, match=r"shape \(num_nodes, 4\)"):
        conv(g, torch.randn(10, 5), torch.randn(30, 3))
    with pytest.raises(GraphInputError, match="10 source"):
        conv(g, torch.randn(9, 4), torch.randn(30, 3))
    with pytest.raises(GraphInputError, match="one row per edge"):
        conv(g, torch.randn(10, 4), torch.randn(29, 3))
    with pytest.raises(GraphInputError, match="width 3"):
        conv(g, torch.randn(10, 4), torch.randn(30, 4))
    with pytest.raises(GraphInputError, match="got no edge features"):
        conv(g, torch.randn(10, 4))
    with pytest.raises(GraphInputError, match="width 4"):
        GENConv(4, 4)(g, torch.randn(10, 4), torch.randn(30, 3))


def test_edge_encoder_maps_to_out_feats_as_documented():
    # The docstring's Linear(edge_feats, out_feats): edge features join the projected messages.
    conv = GENConv(4, 6, aggregator="softmax", edge_feats=3)
    assert (conv.edge_encoder.in_features, conv.edge_encoder.out_features) == (3, 6)
    assert "Linear(edge_feats,\n        out_feats)" in GENConv.__doc__
    g = dgl.graph(([0, 1, 2], [1, 2, 0]))
    assert conv(g, torch.randn(3, 4), torch.randn(3, 3)).shape == (3, 6)


def test_folded_edge_encoder_checks_node_features():
    conv = GENConv(4, 4, aggregator="max", edge_feats=5)
    g = dgl.graph(([0, 1, 2], [1, 2, 0]))
    raw, weight, bias = torch.randn(3, 2), torch.randn(5, 2), torch.randn(5)
    assert conv(g, torch.randn(3, 4), raw, weight, bias).shape == (3, 4)
    # A wrong node-feature width is the project's one-line error on this path too, not a DGLError.
    with pytest.raises(GraphInputError, match=r"shape \(num_nodes, 4\)"):
        conv(g, torch.randn(3, 7), raw, weight, bias)
    with pytest.raises(GraphInputError, match="3 source"):
        conv(g, torch.randn(5, 4), raw, weight, bias)
