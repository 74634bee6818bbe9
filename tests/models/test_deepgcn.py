"""RevGNN, WT-RevGNN and ResGNN: whole-model gradients against ordinary autograd, counts, errors."""

from __future__ import annotations

import copy

import dgl
import pytest
import torch
import torch.nn.functional as F
from grad_check import assert_gradients_match, mismatch

from revgnn_dgl.models import DeepGCN, ResGNN, RevGNN, WTRevGNN
from revgnn_dgl.nn import GraphInputError

N, E = 30, 150


def proteins_like(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    g = dgl.graph((torch.randint(0, N, (E,), generator=gen), torch.randint(0, N, (E,), generator=gen)), num_nodes=N)
    feat = torch.rand(N, 8, generator=gen, dtype=torch.float64)
    edge = torch.rand(E, 8, generator=gen, dtype=torch.float64)
    species = torch.nn.functional.one_hot(torch.randint(0, 8, (N,), generator=gen), 8).double()
    return g, feat, edge, species


def model_grads(model: DeepGCN, inputs, seed: int = 5):
    torch.manual_seed(seed)  # same dropout masks in both runs
    model.train()
    out = model(*inputs)
    out.pow(2).mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("cls,depth", [(RevGNN, 6), (WTRevGNN, 2), (WTRevGNN, 64)])
def test_memory_saving_path_matches_autograd(cls, depth):
    g, feat, edge, species = proteins_like()
    torch.manual_seed(0)
    rev = cls(8, 5, hidden=8, num_layers=depth, edge_feats=8, species_feats=8, dropout=0.2).double()
    plain = copy.deepcopy(rev)
    plain.set_disable(True)
    out_r, grads_r = model_grads(rev, (g, feat, edge, species))
    out_p, grads_p = model_grads(plain, (g, feat, edge, species))
    assert torch.equal(out_r, out_p)
    assert grads_r.keys() == grads_p.keys() == {n for n, _ in rev.named_parameters()}
    print(f"\n{cls.__name__} depth {depth}: gradient mismatch {mismatch(grads_r, grads_p):.3g} of the tolerance")
    assert_gradients_match(grads_r, grads_p)


def test_weight_tied_parameter_count_independent_of_depth():
    counts = {
        d: sum(p.numel() for p in WTRevGNN(8, 112, hidden=80, num_layers=d, edge_feats=8, species_feats=8).parameters())
        for d in (8, 1001)
    }
    assert counts[8] == counts[1001] == 31_384


def test_weight_tied_gradient_accumulates_over_layers():
    """The shared block's gradient is the sum over its L applications (not the last one's)."""
    g, feat, edge, species = proteins_like()
    torch.manual_seed(0)
    model = WTRevGNN(8, 3, hidden=8, num_layers=3, edge_feats=8, species_feats=8, dropout=0.0).double()
    _, grads = model_grads(model, (g, feat, edge, species))
    # Same weights, untied: three separate blocks holding copies of the shared block.
    untied = RevGNN(8, 3, hidden=8, num_layers=3, edge_feats=8, species_feats=8, dropout=0.0).double()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("layers.")}
    for layer in range(3):
        state.update({f"layers.{layer}.{k}": v for k, v in model.layers[0].state_dict().items()})
    untied.load_state_dict(state)
    _, grads_u = model_grads(untied, (g, feat, edge, species))
    for name, grad in grads.items():
        if name.startswith("layers.0."):
            total = sum(grads_u[name.replace("layers.0.", f"layers.{layer}.", 1)] for layer in range(3))
            torch.testing.assert_close(grad, total, rtol=1e-9, atol=1e-12)


def test_residual_baseline_shape_and_count():
    model = ResGNN(8, 112, hidden=64, num_layers=3, edge_feats=8, species_feats=8)
    g, feat, edge, species = proteins_like()
    out = model.double()(g, feat, edge, species)
    assert out.shape == (N, 112)
    per_layer = 2 * 64 + (64 * 128 + 128) + 2 * 128 + (128 * 64 + 64) + (64 * 64 + 64)
    assert (
        sum(p.numel() for p in model.parameters())
        == 3 * per_layer + 72 + 16 * 64 + 64 + 8 * 64 + 64 + 128 + 64 * 112 + 112
    )


def dense_reference(model: DeepGCN, graph: dgl.DGLGraph, feat: torch.Tensor, conv: str) -> torch.Tensor:
    """The eval-mode forward of a RevGNN without edge or species inputs, written from the
    definitions with a dense adjacency matrix (``A[i, j]`` = number of edges ``j -> i``) and
    the model's weights: encoder, ``L`` two-group reversible layers
    ``y_1 = x_1 + f_1(x_2)``, ``y_2 = x_2 + f_2(y_1)`` with ``f = conv(ReLU(LayerNorm(.)))``,
    and the head ``Linear(ReLU(LayerNorm(h)))``."""
    src, dst = graph.edges()
    n = graph.num_nodes()
    adj = torch.zeros(n, n, dtype=feat.dtype).index_put_(
        (dst, src), torch.ones(len(src), dtype=feat.dtype), accumulate=True
    )
    in_deg, out_deg = adj.sum(1, keepdim=True), adj.sum(0).unsqueeze(1)

    def layer_norm(ln, u):
        mu, var = u.mean(-1, keepdim=True), u.var(-1, unbiased=False, keepdim=True)
        return (u - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias

    def conv_fn(c, u):
        if conv == "gen":  # max of ReLU(u_j) + eps over in-neighbours (0 without any), then the MLP
            masked = torch.where(
                adj.unsqueeze(-1) > 0, F.relu(u).unsqueeze(0), torch.tensor(float("-inf"), dtype=u.dtype)
            )
            agg = torch.where(in_deg > 0, masked.max(1).values + c.eps, torch.zeros_like(u))
            lin1, ln, _, lin2 = c.mlp
            return lin2(F.relu(layer_norm(ln, lin1(u + agg))))
        if conv == "sage":  # mean of the in-neighbours (0 without any)
            mean = adj @ u / in_deg.clamp(min=1)
            return u @ c.fc_self.weight.T + c.fc_self.bias + mean @ c.fc_neigh.weight.T
        # gcn, norm="both": D_in^-1/2 A D_out^-1/2 u W + b, degrees clamped at 1
        norm = in_deg.clamp(min=1).pow(-0.5) * adj * out_deg.clamp(min=1).pow(-0.5).T
        return norm @ u @ c.weight + c.bias

    def f(block, u):
        return conv_fn(block.conv, F.relu(layer_norm(block.norm, u)))

    h = feat @ model.node_encoder.weight.T + model.node_encoder.bias
    for layer in model.layers:
        x1, x2 = h.chunk(2, dim=-1)
        y1 = x1 + f(layer.gnn_modules[0], x2)
        y2 = x2 + f(layer.gnn_modules[1], y1)
        h = torch.cat([y1, y2], dim=-1)
    return F.relu(layer_norm(model.head_norm, h)) @ model.head.weight.T + model.head.bias


@pytest.mark.parametrize("conv", ["gen", "sage", "gcn"])
def test_generic_dataset_without_edges_or_species(conv):
    """A graph without edge features or species (e.g. Cora), against the dense reference."""
    gen = torch.Generator().manual_seed(0)
    graph = dgl.graph(
        (torch.randint(0, 20, (60,), generator=gen), torch.randint(0, 17, (60,), generator=gen)), num_nodes=20
    )
    assert (graph.in_degrees() == 0).sum() >= 3  # nodes 17-19 aggregate nothing
    feat = torch.randn(20, 12, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    model = RevGNN(12, 4, hidden=8, num_layers=3, conv=conv).double().eval()
    with torch.no_grad():  # every weight random, LayerNorm's too, so that none is an identity
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) - 0.5)
    out = model(graph, feat)
    assert out.shape == (20, 4)
    torch.testing.assert_close(out, dense_reference(model, graph, feat, conv), rtol=1e-10, atol=1e-12)


def test_bad_inputs():
    g, feat, edge, species = proteins_like()
    model = RevGNN(8, 5, hidden=8, num_layers=2, edge_feats=8, species_feats=8).double()
    with pytest.raises(GraphInputError, match=r"node features of shape \(30, 8\)"):
        model(g, feat[:, :4], edge, species)
    with pytest.raises(GraphInputError, match="edge features"):
        model(g, feat, None, species)
    with pytest.raises(GraphInputError, match="species"):
        model(g, feat, edge)
    with pytest.raises(ValueError, match="not divisible"):
        RevGNN(8, 5, hidden=9, groups=2)
    with pytest.raises(ValueError, match="cannot use edge features"):
        RevGNN(8, 5, hidden=8, edge_feats=8, conv="sage")


def test_weight_tied_memory_flat_in_depth():
    from revgnn_dgl.bench.profiling import measure_forward_backward

    torch.manual_seed(0)
    n, e = 3000, 15000
    g = dgl.rand_graph(n, e)
    feat, edge = torch.rand(n, 8), torch.rand(e, 8)
    species = torch.nn.functional.one_hot(torch.randint(0, 8, (n,)), 8).float()
    stats = {}
    for depth in (4, 64):
        torch.manual_seed(0)
        model = WTRevGNN(8, 16, hidden=32, num_layers=depth, edge_feats=8, species_feats=8, dropout=0.1)
        stats[depth] = measure_forward_backward(lambda: model(g, feat, edge, species))
    assert stats[64].retained_bytes <= 1.10 * stats[4].retained_bytes, stats
    assert stats[64].peak_bytes <= 1.10 * stats[4].peak_bytes, stats


@pytest.mark.parametrize("conv", ["gen", "sage", "gcn"])
def test_zero_init_last_starts_as_identity_and_learns(conv):
    """zero_init_last: every block adds exactly 0 at initialisation (the model is encoder ->
    head), the zeroed branch weights still get gradients, and the memory-saving backward equals
    ordinary autograd from that start."""
    gen = torch.Generator().manual_seed(1)
    graph = dgl.graph(
        (torch.randint(0, 20, (80,), generator=gen), torch.randint(0, 20, (80,), generator=gen)), num_nodes=20
    )
    feat = torch.randn(20, 12, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    model = RevGNN(12, 4, hidden=8, num_layers=5, conv=conv, dropout=0.2, zero_init_last=True).double()
    torch.manual_seed(0)
    default = RevGNN(12, 4, hidden=8, num_layers=5, conv=conv, dropout=0.2).double()
    model.eval()
    with torch.no_grad():
        h = model.node_encoder(feat)
        expected = model.head(F.relu(model.head_norm(h)))
        torch.testing.assert_close(model(graph, feat), expected, rtol=0, atol=0)
        assert not torch.allclose(default(graph, feat), expected)  # the default init is not an identity
    plain = copy.deepcopy(model)
    plain.set_disable(True)
    _, grads = model_grads(model, (graph, feat))
    _, grads_plain = model_grads(plain, (graph, feat))
    assert_gradients_match(grads, grads_plain)
    zeroed = [n for n, p in model.named_parameters() if n.startswith("layers.") and not p.detach().any()]
    assert zeroed and all(grads[n].abs().sum() > 0 for n in zeroed if n.endswith("weight"))
