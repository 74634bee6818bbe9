"""GCNII's initial-residual block: the fused layer against DGL's GCN2Conv, and the reversible and
residual DeepGCN built from it, whose memory-saving gradients (h0's included) equal autograd's."""

from __future__ import annotations

import copy
import math

import dgl
import pytest
import torch
from grad_check import assert_gradients_match, mismatch

from revgnn_dgl.errors import GraphInputError
from revgnn_dgl.models import ResGNN, RevGNN, WTRevGNN
from revgnn_dgl.nn import GroupRevRes, PreActivationBlock
from revgnn_dgl.nn.gcnii import GCNIIConv, gcnii_beta

N, E = 30, 120


def small_graph(seed: int = 0) -> dgl.DGLGraph:
    gen = torch.Generator().manual_seed(seed)
    src, dst = torch.randint(0, N, (E,), generator=gen), torch.randint(0, N, (E,), generator=gen)
    return dgl.graph((src, dst), num_nodes=N)


def test_beta_is_gcniis_schedule():
    assert gcnii_beta(1, 0.5) == pytest.approx(math.log(1.5))
    assert gcnii_beta(64, 0.5) == pytest.approx(math.log(0.5 / 64 + 1))
    with pytest.raises(ValueError):
        gcnii_beta(0, 0.5)


@pytest.mark.parametrize("layer", [1, 7])
def test_fused_layer_equals_dgl_gcn2conv(layer):
    """With the self-loop added to the graph, GCNIIConv(step=1) is DGL's GCN2Conv (no bias, no
    activation, shared W); the implicit self-loop gives the same result on the graph without it."""
    g = dgl.remove_self_loop(small_graph())
    feat, feat0 = torch.randn(N, 6, dtype=torch.float64), torch.randn(N, 6, dtype=torch.float64)
    ref = dgl.nn.GCN2Conv(6, layer, alpha=0.2, lambda_=0.7, project_initial_features=True, bias=False,
                          allow_zero_in_degree=True).double()  # fmt: skip
    ours = GCNIIConv(6, layer=layer, alpha=0.2, lambda_=0.7).double()
    with torch.no_grad():
        ours.weight.copy_(ref.weight1)
    expected = ref(dgl.add_self_loop(g), feat, feat0)
    torch.testing.assert_close(ours(g, feat, feat0), expected)
    looped = GCNIIConv(6, layer=layer, alpha=0.2, lambda_=0.7, add_self_loop=False).double()
    looped.load_state_dict(ours.state_dict())
    torch.testing.assert_close(looped(dgl.add_self_loop(g), feat, feat0), expected)
    scaled = GCNIIConv(6, layer=layer, alpha=0.2, lambda_=0.7, step=0.25).double()
    scaled.load_state_dict(ours.state_dict())
    torch.testing.assert_close(scaled(g, feat, feat0), 0.25 * expected)


def test_appnp_mode_has_no_weights_and_init_is_gcniis():
    g = small_graph()
    appnp = GCNIIConv(4, layer=2, alpha=0.1, mode="appnp")
    assert not list(appnp.parameters())
    x, x0 = torch.randn(N, 4), torch.randn(N, 4)
    torch.testing.assert_close(appnp(g, x, x0), 0.9 * appnp.propagate(g, x) + 0.1 * x0)
    conv = GCNIIConv(64)
    assert conv.weight.abs().max() <= 1 / 8 and conv.weight.abs().max() > 0.1  # U(+-1/sqrt(64))


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="mode"):
        GCNIIConv(4, mode="gat")
    with pytest.raises(ValueError, match="alpha"):
        GCNIIConv(4, alpha=1.5)
    with pytest.raises(ValueError, match="lambda_"):
        GCNIIConv(4, lambda_=0.0)
    with pytest.raises(ValueError, match="step"):
        GCNIIConv(4, step=float("nan"))
    with pytest.raises(GraphInputError, match="feat_0"):
        GCNIIConv(4)(small_graph(), torch.randn(N, 4), torch.randn(N, 3))
    with pytest.raises(ValueError, match="stream_init"):
        RevGNN(8, 3, hidden=8, conv="gcn", stream_init="zero")
    with pytest.raises(ValueError, match="needs norm='none'"):
        RevGNN(8, 3, hidden=8, conv="gcnii", stream_init="zero", norm="layer")
    with pytest.raises(ValueError, match="zero_init_last"):
        RevGNN(8, 3, hidden=8, conv="gcnii", zero_init_last=True)
    with pytest.raises(ValueError, match="unknown conv"):
        RevGNN(8, 3, hidden=8, conv="gcn3")


@pytest.mark.parametrize("independent", [False, True])
def test_block_h0_gradient_matches_autograd(independent):
    """One reversible block, h0 a leaf passed as a split positional argument, dropout inside:
    every gradient, h0's included, equals ordinary autograd's in float64."""
    g = small_graph()
    torch.manual_seed(0)
    block = GroupRevRes(
        PreActivationBlock(GCNIIConv(4, layer=3, step=0.5), 4, norm="layer", dropout=0.3, independent=independent), 2
    ).double()
    plain = copy.deepcopy(block)
    plain.disable = True
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(N, 8, generator=gen, dtype=torch.float64)
    h0 = torch.randn(N, 8, generator=gen, dtype=torch.float64)
    mask = None if independent else (torch.rand(N, 8, generator=gen, dtype=torch.float64) > 0.3).double() / 0.7

    def grads(module):
        xi, h0i = x.clone().requires_grad_(), h0.clone().requires_grad_()
        torch.manual_seed(7)
        # Two blocks in a row: the second one frees the first's output and rebuilds it.
        out = module(g, module(g, xi, mask, h0i), mask, h0i)
        out.pow(2).sum().backward()
        named = {n: p.grad.clone() for n, p in module.named_parameters()}
        return out.detach(), {"x": xi.grad, "h0": h0i.grad, **named}

    out_r, grads_r = grads(block)
    out_p, grads_p = grads(plain)
    assert torch.equal(out_r, out_p)
    assert grads_r["h0"].abs().sum() > 0 and grads_r["x"].abs().sum() > 0
    assert_gradients_match(grads_r, grads_p)


def _model_grads(model, g, feat, seed=5):
    torch.manual_seed(seed)  # the same dropout masks in both runs
    model.train()
    out = model(g, feat)
    out.pow(2).mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "cls,depth,options",
    [
        (RevGNN, 8, dict(stream_init="zero", block_dropout="independent", norm="none")),
        (RevGNN, 6, dict(stream_init="encoder", block_dropout="shared", norm="none", groups=4)),
        (RevGNN, 6, dict(stream_init="encoder", block_dropout="independent", norm="layer", hidden=32)),
        (RevGNN, 5, dict(stream_init="zero", block_dropout="independent", gcnii_mode="appnp", norm="none")),
        (WTRevGNN, 4, dict(stream_init="zero", block_dropout="independent", norm="none")),
    ],
)
def test_gcnii_model_memory_saving_gradients_match_autograd(cls, depth, options):
    """The whole model, h0 = ReLU(encoder) fed to every block: the encoder's gradient is the sum
    of h0's over all blocks, and equals ordinary autograd's, with dropout inside the blocks."""
    g, gen = small_graph(), torch.Generator().manual_seed(3)
    feat = torch.rand(N, 10, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    options = {"groups": 2, "hidden": 8, **options}
    rev = cls(10, 4, num_layers=depth, conv="gcnii", dropout=0.4, gcnii_step=0.3, **options).double()
    plain = copy.deepcopy(rev)
    plain.set_disable(True)
    out_r, grads_r = _model_grads(rev, g, feat)
    out_p, grads_p = _model_grads(plain, g, feat)
    assert torch.equal(out_r, out_p)
    assert grads_r.keys() == grads_p.keys() == {n for n, _ in rev.named_parameters()}
    assert grads_r["node_encoder.weight"].abs().sum() > 0
    print(f"\n{cls.__name__} gcnii {options}: gradient mismatch {mismatch(grads_r, grads_p):.3g} of the tolerance")
    assert_gradients_match(grads_r, grads_p)


def test_h0_reaches_the_head_through_the_blocks_only_with_a_zero_stream():
    """stream_init='zero': the first block reads zeros, so the output depends on the encoder
    only through h0, the blocks' extra input (without blocks' h0 term, alpha=0, it is constant)."""
    g = small_graph()
    torch.manual_seed(0)
    model = RevGNN(
        10, 3, hidden=8, num_layers=3, conv="gcnii", norm="none", stream_init="zero", gcnii_alpha=0.0
    ).double()
    model.eval()
    a, b = torch.rand(N, 10, dtype=torch.float64), torch.rand(N, 10, dtype=torch.float64)
    torch.testing.assert_close(model(g, a), model(g, b))
    model = RevGNN(10, 3, hidden=8, num_layers=3, conv="gcnii", norm="none", stream_init="zero").double().eval()
    assert not torch.allclose(model(g, a), model(g, b))


def test_residual_gcnii_runs_full_width_and_layers_count():
    g = small_graph()
    model = ResGNN(
        10, 3, hidden=8, num_layers=4, conv="gcnii", norm="none", stream_init="zero", block_dropout="independent"
    )
    assert [m.block.conv.layer for m in model.layers] == [1, 2, 3, 4]
    assert model.layers[0].block.conv.width == 8
    out = model(g, torch.rand(N, 10))
    assert out.shape == (N, 3) and torch.isfinite(out).all()
    rev = RevGNN(10, 3, hidden=8, num_layers=4, groups=2, conv="gcnii")
    assert rev.layers[3].gnn_modules[1].conv.width == 4 and rev.layers[3].gnn_modules[1].conv.layer == 4
