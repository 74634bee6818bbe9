"""GATConv against a dense plain-torch transcription of the official layer's equations."""

from __future__ import annotations

import dgl
import pytest
import torch
import torch.nn.functional as F

from revgnn_dgl.nn import GATConv, GraphInputError

N, IN, OUT, HEADS = 9, 5, 4, 3


def simple_graph(seed: int = 0) -> dgl.DGLGraph:
    """A random simple graph (no multi-edges) with one self-loop per node, except node N-1
    which has no in-edges at all."""
    gen = torch.Generator().manual_seed(seed)
    adj = torch.rand(N, N, generator=gen) < 0.3
    adj.fill_diagonal_(True)
    adj[N - 1] = False  # row = destination: node N-1 receives nothing
    dst, src = adj.nonzero(as_tuple=True)
    return dgl.graph((src, dst), num_nodes=N)


def dense_adj(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    adj = torch.zeros(N, N, dtype=torch.float64)
    adj[dst, src] = 1.0  # adj[i, j] = 1 for an edge j -> i
    return adj


def dense_gat(conv: GATConv, x, adj_full, adj_attn, sym_norm: bool):
    """The official GATConv.forward as dense algebra: scale sources by out-degree^-1/2 (full
    graph), logits from the scaled sources (+ the unscaled destination term), softmax over the
    kept in-edges, scale by in-degree^1/2 (full graph), add the residual projection."""
    n = x.shape[0]
    proj = (x @ conv.fc.weight.T).view(n, conv.num_heads, conv.out_feats)
    z = proj
    if sym_norm:
        z = z * adj_full.sum(0).clamp(min=1).pow(-0.5).view(n, 1, 1)
    el = (z * conv.attn_l).sum(-1)  # (n, H) per source
    logits = el.unsqueeze(0).expand(n, n, -1)  # [i, j, h]
    if conv.attn_r is not None:
        logits = logits + (proj * conv.attn_r).sum(-1).unsqueeze(1)
    logits = F.leaky_relu(logits, 0.2).masked_fill(adj_attn.unsqueeze(-1) == 0, float("-inf"))
    alpha = torch.softmax(logits, dim=1).nan_to_num(0.0)  # rows without in-edges: all zero
    out = torch.einsum("ijh,jhf->ihf", alpha, z)
    if sym_norm:
        out = out * adj_full.sum(1).clamp(min=1).pow(0.5).view(n, 1, 1)
    if conv.res_fc is not None:
        out = out + (x @ conv.res_fc.weight.T).view(n, conv.num_heads, conv.out_feats)
    return out


def make_conv(**kwargs) -> GATConv:
    torch.manual_seed(1)
    return GATConv(IN, OUT, num_heads=HEADS, residual=True, **kwargs).double()


@pytest.mark.parametrize("use_attn_dst", [False, True])
@pytest.mark.parametrize("sym_norm", [False, True])
def test_matches_dense_equations(use_attn_dst, sym_norm):
    g = simple_graph()
    conv = make_conv(use_attn_dst=use_attn_dst, use_symmetric_norm=sym_norm).eval()
    with torch.no_grad():
        conv.attn_l.mul_(3.0)  # sharper attention, so a wrong softmax cannot pass as uniform
    x = torch.randn(N, IN, dtype=torch.float64)
    adj = dense_adj(*g.edges())
    want = dense_gat(conv, x, adj, adj, sym_norm)
    got = conv(g, x)
    assert got.shape == (N, HEADS, OUT)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # Node N-1 has no in-edge: only its residual remains.
    torch.testing.assert_close(got[N - 1], (conv.res_fc(x[N - 1])).view(HEADS, OUT))


def test_edge_dropout_uses_the_given_permutation():
    g = simple_graph()
    conv = make_conv(use_attn_dst=False, use_symmetric_norm=True, edge_drop=0.4).train()
    x = torch.randn(N, IN, dtype=torch.float64)
    perm = torch.randperm(g.num_edges())
    src, dst = g.edges()
    kept = perm[int(g.num_edges() * 0.4) :]
    want = dense_gat(conv, x, dense_adj(src, dst), dense_adj(src[kept], dst[kept]), sym_norm=True)
    got = conv(g, x, perm)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.equal(conv(g, x, perm), got)  # the same permutation replays the same edges
    assert not torch.allclose(conv(g, x, perm.flip(0)), got)  # another one drops other edges
    eval_out = conv.eval()(g, x, perm)  # eval: every edge, the permutation ignored
    torch.testing.assert_close(eval_out, conv(g, x))
    assert not torch.allclose(eval_out, got)


def test_edge_dropout_without_permutation_draws_one():
    g = simple_graph()
    conv = make_conv(use_attn_dst=False, edge_drop=0.5).train()
    x = torch.randn(N, IN, dtype=torch.float64)
    torch.manual_seed(3)
    first = conv(g, x)
    torch.manual_seed(3)
    assert torch.equal(conv(g, x), first)
    assert not torch.allclose(conv(g, x), first)


def test_heads_merge():
    g = simple_graph()
    x = torch.randn(N, IN, dtype=torch.float64)
    heads = make_conv(merge="none").eval()(g, x)
    assert torch.equal(make_conv(merge="flatten").eval()(g, x), heads.flatten(1))
    torch.testing.assert_close(make_conv(merge="mean").eval()(g, x), heads.mean(1))


def test_parameters_follow_official_layer():
    conv = GATConv(IN, OUT, num_heads=HEADS, use_attn_dst=False, residual=True)
    shapes = {k: tuple(v.shape) for k, v in conv.state_dict().items()}
    assert shapes == {"fc.weight": (HEADS * OUT, IN), "attn_l": (1, HEADS, OUT), "res_fc.weight": (HEADS * OUT, IN)}
    conv = GATConv(IN, OUT, num_heads=HEADS, use_attn_dst=True, residual=False)
    assert set(conv.state_dict()) == {"fc.weight", "attn_l", "attn_r"}


def test_gradients_through_fused_kernels():
    """Finite differences agree with the backward of DGL's edge_softmax / u_mul_e (the input
    reaches the output through the attention logits as well as the messages)."""
    g = simple_graph()
    conv = make_conv(use_attn_dst=True, use_symmetric_norm=True, edge_drop=0.3).train()
    perm = torch.randperm(g.num_edges())
    x = torch.randn(N, IN, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x_: conv(g, x_, perm), (x,))


def test_block_input_matches_full_graph():
    g = simple_graph()
    conv = make_conv(use_attn_dst=True).eval()  # without degree norm a block sees the same neighbourhoods
    x = torch.randn(N, IN, dtype=torch.float64)
    seeds = torch.tensor([0, 2, 5])
    block = dgl.to_block(dgl.in_subgraph(g, seeds), seeds)
    out = conv(block, x[block.srcdata[dgl.NID]])
    torch.testing.assert_close(out, conv(g, x)[seeds], rtol=1e-12, atol=1e-12)
    conv.edge_drop = 0.5
    conv.train()
    perm = torch.randperm(block.num_edges())
    dropped = conv(block, x[block.srcdata[dgl.NID]], perm)
    assert dropped.shape == (3, HEADS, OUT) and not torch.allclose(dropped, out)
    assert torch.equal(conv(block, x[block.srcdata[dgl.NID]], perm), dropped)


def test_bad_inputs_raise_clear_errors():
    g = simple_graph()
    conv = make_conv(edge_drop=0.3).train()
    with pytest.raises(GraphInputError, match=r"shape \(num_nodes, 5\)"):
        conv(g, torch.randn(N, IN + 1, dtype=torch.float64))
    with pytest.raises(GraphInputError, match="source nodes"):
        conv(g, torch.randn(N + 1, IN, dtype=torch.float64))
    with pytest.raises(GraphInputError, match="perm must be an integer permutation"):
        conv(g, torch.randn(N, IN, dtype=torch.float64), torch.arange(3))
    with pytest.raises(ValueError, match="edge_drop"):
        GATConv(IN, OUT, edge_drop=1.0)
    with pytest.raises(ValueError, match="merge"):
        GATConv(IN, OUT, merge="concat")
