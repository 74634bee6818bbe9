"""Tests for DEQ-GNN (revgnn_dgl.models.deq)."""

from __future__ import annotations

import gc
import math
import warnings

import dgl
import pytest
import torch
import torch.nn.functional as F

from revgnn_dgl.models.deq import DEQGNN, make_conv
from revgnn_dgl.nn.solvers import ConvergenceWarning

N_NODES, N_EDGES, IN, HID, OUT, EDGE = 50, 300, 5, 16, 3, 3


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # Tiny tensors: with 2 intra-op threads on a shared 2-core machine,
    # OpenMP synchronisation dominates the run time.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(dtype=torch.float32, seed=0):
    dgl.seed(seed)  # rand_graph draws from DGL's own generator, not torch's
    torch.manual_seed(seed)
    g = dgl.rand_graph(N_NODES, N_EDGES)
    x = torch.randn(N_NODES, IN, dtype=dtype)
    e = torch.randn(N_EDGES, EDGE, dtype=dtype)
    y = torch.randint(0, OUT, (N_NODES,))
    return g, x, e, y


def _params(model):
    return [p for p in model.parameters() if p.requires_grad]


def _shrink_conv1(model, scale):
    """Scale Conv1's output weights: makes the block a contraction (see the gradient test)."""
    conv = model.block.conv1.conv
    weights = [conv.mlp[-1].weight] if model.conv == "gen" else [p for n, p in conv.named_parameters() if "weight" in n]
    with torch.no_grad():
        for w in weights:
            w.mul_(scale)


def _saved_bytes(fn):
    """Run fn and return (bytes of distinct storages saved for backward, fn())."""
    storages = {}

    def pack(t):
        st = t.untyped_storage()
        storages[st.data_ptr()] = max(storages.get(st.data_ptr(), 0), st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(storages.values()), out


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize("conv,edge", [("gen", EDGE), ("gen", 0), ("gcn", 0), ("sage", 0)])
@pytest.mark.parametrize("solver", ["anderson", "broyden"])
def test_forward_converges_and_shapes(conv, edge, solver):
    g, x, e, _ = _data()
    torch.manual_seed(1)
    model = DEQGNN(IN, HID, OUT, edge_channels=edge, conv=conv, solver=solver, tol=1e-4, max_iter=100)
    if conv == "sage":
        # At default init the SAGE block often has no attracting equilibrium
        # (both solvers stall at 1e-1..1e-3 for most seeds); GEN and GCN blocks
        # converge as initialised.
        _shrink_conv1(model, 0.3)
    out = model(g, x, e if edge else None)
    assert out.shape == (N_NODES, OUT)
    info = model.last_forward_info
    assert info.converged and info.rel_residual <= 1e-4 and len(info.history) == info.iterations
    out.sum().backward()
    assert model.last_backward_info.converged
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in _params(model))


def test_default_conv_is_gen_and_params_do_not_depend_on_iterations():
    counts = set()
    for max_iter in (5, 50, 500):
        model = DEQGNN(IN, HID, OUT, edge_channels=EDGE, max_iter=max_iter)
        counts.add(sum(p.numel() for p in model.parameters()))
    assert model.conv == "gen" and type(model.block.conv1.conv).__name__ == "GENConv"
    assert len(counts) == 1


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_conv("gcn", HID, edge_channels=EDGE)
    with pytest.raises(ValueError):
        make_conv("gat", HID)
    with pytest.raises(ValueError):
        DEQGNN(IN, HID, OUT, solver="newton")
    with pytest.raises(ValueError):
        DEQGNN(IN, HID, OUT, dropout=1.0)


def test_output_is_head_of_block_at_fixed_point():
    g, x, e, _ = _data()
    torch.manual_seed(1)
    model = DEQGNN(IN, HID, OUT, edge_channels=EDGE, tol=1e-6, max_iter=200).eval()
    out = model(g, x, e)
    z_star = model.equilibrium(g, x, e)
    z = model.block(z_star, model.encoder(x), g, None, e)
    ref = model.head(F.relu(model.head_norm(z)))
    assert torch.allclose(out, ref, atol=1e-5)
    fz = model.block(z_star, model.encoder(x), g, None, e)
    assert ((fz - z_star).norm() / fz.norm()).item() <= 1e-6 * 1.01


def test_no_grad_inference_builds_no_graph():
    g, x, e, _ = _data()
    torch.manual_seed(1)
    model = DEQGNN(IN, HID, OUT, edge_channels=EDGE, max_iter=100).eval()
    with torch.no_grad():
        out = model(g, x, e)
    assert not out.requires_grad and model.last_backward_info is None


# --------------------------------------------------------------- convergence report


def test_nonconvergence_warns_with_numbers_forward_and_backward():
    g, x, e, _ = _data()
    model = DEQGNN(IN, HID, OUT, edge_channels=EDGE, tol=1e-4, max_iter=2, backward_max_iter=1)
    with pytest.warns(ConvergenceWarning) as record:
        out = model(g, x, e)
        out.sum().backward()
    msgs = [str(w.message) for w in record]
    fwd = [m for m in msgs if "DEQGNN forward solve" in m]
    bwd = [m for m in msgs if "DEQGNN backward (adjoint) solve" in m]
    assert fwd and bwd
    fi, bi = model.last_forward_info, model.last_backward_info
    assert not fi.converged and fi.iterations == 2 and not bi.converged and bi.iterations == 1
    assert f"relative residual {fi.rel_residual:.3e}" in fwd[0] and "tol 1.0e-04" in fwd[0]
    assert "after 2 iterations" in fwd[0] and "after 1 iterations" in bwd[0]


# ------------------------------------------------------------ implicit vs unrolled


def _implicit_and_unrolled_grads(model, g, x, e, y, Ks, seed=123):
    """Gradients (params + inputs) of the implicit model and of K unrolled steps from Z*.

    The same RNG seed before each pass gives the same dropout mask (it is drawn
    right after the encoder), so all passes see the same map f.
    """
    xs = x.clone().requires_grad_()
    es = e.clone().requires_grad_() if e is not None else None
    wrt = _params(model) + [xs] + ([es] if es is not None else [])

    def flat(grads):
        return torch.cat([t.reshape(-1) for t in grads])

    model.implicit = True
    torch.manual_seed(seed)
    loss = F.cross_entropy(model(g, xs, es), y)
    g_imp = flat(torch.autograd.grad(loss, wrt))

    torch.manual_seed(seed)
    z_star = model.equilibrium(g, x, e)
    # Spectral radius of J = df/dz at Z* by Gelfand's formula ||J^k||^(1/k):
    # this is exactly the rate of the truncated Neumann series below.
    torch.manual_seed(seed)
    xe = model.encoder(x).detach()
    mask = model._dropout_mask(xe)
    z_in = z_star.clone().requires_grad_()
    fz = model.block(z_in, xe, g, mask, e)
    v = torch.randn_like(z_in)
    v = v / v.norm()
    k_rho = 30
    for _ in range(k_rho):
        (v,) = torch.autograd.grad(fz, z_in, v, retain_graph=True)
    rho = v.norm().item() ** (1.0 / k_rho)

    errors = {}
    model.implicit = False
    cap = model.max_iter
    for K in Ks:
        model.max_iter = K
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a K-step unroll is not a solve
            loss = F.cross_entropy(model(g, xs, es, z0=z_star), y)
        g_unr = flat(torch.autograd.grad(loss, wrt))
        errors[K] = ((g_unr - g_imp).norm() / g_imp.norm()).item()
    model.implicit, model.max_iter = True, cap
    return errors, rho


@pytest.mark.parametrize(
    "conv,edge,solver,dropout,scale",
    [
        ("gcn", 0, "anderson", 0.0, 0.1),
        ("gcn", 0, "broyden", 0.0, 0.1),
        ("gen", EDGE, "anderson", 0.3, 0.3),
        ("gen", EDGE, "broyden", 0.0, 0.3),
    ],
)
def test_implicit_gradient_matches_unrolled_from_fixed_point(conv, edge, solver, dropout, scale):
    r"""The implicit gradient is the limit of backprop through K steps started at Z*.

    Unrolling K steps from the fixed point Z* (Z* a constant) and backpropagating
    gives the truncated Neumann series
        g_K = sum_{k<K} (J^T)^k  dl/dz,
    while the implicit adjoint is g = sum_{k>=0} (J^T)^k dl/dz = (I - J^T)^{-1} dl/dz.
    Their difference is sum_{k>=K} (J^T)^k dl/dz, of norm about C * rho^K / (1 - rho)
    for the spectral radius rho of J (C absorbs the non-normality of J and the
    map from g to the parameter gradients, measured ~0.1-1 here). So:
      * at each K the relative error must lie below 10 * rho^K / (1 - rho) plus a
        floor of 1e-8 (forward/backward solves at tol 1e-11 in float64 leave
        O(tol / (1 - rho)) ~ 1e-10; 100x margin for roundoff);
      * at K with rho^K < 1e-12 the two gradients agree to 1e-8;
      * at K = 1 the error is large (> 1e-4): the test can tell the implicit
        gradient from the one-step ("Jacobian-free") gradient.
    Conv1's weights are shrunk so the block is a contraction (rho < 1), which
    the plain unrolled iteration needs; the implicit solve itself does not.
    Dropout uses one fixed mask, so this also checks the backward solve sees
    the forward's mask. Inputs (node and edge features) are checked too.
    """
    g, x, e, y = _data(torch.float64)
    torch.manual_seed(7)
    model = DEQGNN(
        IN,
        HID,
        OUT,
        edge_channels=edge,
        conv=conv,
        solver=solver,
        dropout=dropout,
        tol=1e-11,
        max_iter=300,
        backward_tol=1e-11,
    ).double()
    _shrink_conv1(model, scale)
    e_in = e if edge else None
    # A first pass to learn rho and pick the unroll lengths from it.
    errors, rho = _implicit_and_unrolled_grads(model, g, x, e_in, y, Ks=[1])
    assert rho < 0.9, rho
    k_final = math.ceil(math.log(1e-12) / math.log(rho))
    Ks = sorted({1, 5, 10, max(1, k_final // 2), k_final})
    errors, rho = _implicit_and_unrolled_grads(model, g, x, e_in, y, Ks=Ks)
    assert model.last_forward_info.converged and model.last_backward_info.converged
    for K, err in errors.items():
        assert err <= 10 * rho**K / (1 - rho) + 1e-8, (K, err, rho)
    assert errors[k_final] <= 1e-8, errors
    assert errors[1] > 1e-4, errors


# ------------------------------------------------------------------------ memory


def test_memory_does_not_grow_with_iteration_cap():
    g, x, e, y = _data()
    torch.manual_seed(3)
    model = DEQGNN(IN, HID, OUT, edge_channels=EDGE, dropout=0.2, tol=0.0)  # tol 0: use every iteration

    def run(implicit, max_iter):
        model.implicit, model.max_iter = implicit, max_iter
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            nbytes, out = _saved_bytes(lambda: model(g, x, e))
            assert model.last_forward_info.iterations == max_iter
            F.cross_entropy(out, y).backward()  # the graph is usable
        return nbytes

    implicit_10, implicit_100 = run(True, 10), run(True, 100)
    unrolled_1, unrolled_10, unrolled_100 = run(False, 1), run(False, 10), run(False, 100)
    # Implicit: exactly the same saved tensors whatever the cap.
    assert implicit_10 == implicit_100
    # It holds one block application plus Z*: within 2x of a 1-step unroll.
    assert implicit_100 <= 2 * unrolled_1
    # Unrolled: one block's activations per step.
    assert unrolled_100 > 5 * unrolled_10 > 25 * unrolled_1 / 5


# ------------------------------------------------------------- autograd plumbing


def test_repeated_forwards_autograd_grad_and_no_leak():
    g, x, e, y = _data()
    torch.manual_seed(4)
    model = DEQGNN(IN, HID, OUT, edge_channels=EDGE, tol=1e-6, max_iter=100)
    params = _params(model)

    # autograd.grad and .backward() agree.
    loss = F.cross_entropy(model(g, x, e), y)
    grads = torch.autograd.grad(loss, params)
    loss = F.cross_entropy(model(g, x, e), y)
    loss.backward()
    for p, gr in zip(params, grads):
        assert torch.allclose(p.grad, gr, rtol=1e-4, atol=1e-7)
    model.zero_grad()

    # Two live forwards, each with its own adjoint, backward once through both.
    out1, out2 = model(g, x, e), model(g, 2 * x, e)
    both = torch.autograd.grad(F.cross_entropy(out1, y) + F.cross_entropy(out2, y), params)
    one = torch.autograd.grad(F.cross_entropy(model(g, x, e), y), params)
    two = torch.autograd.grad(F.cross_entropy(model(g, 2 * x, e), y), params)
    for a, b, c in zip(both, one, two):
        assert torch.allclose(a, b + c, rtol=1e-4, atol=1e-7)

    # retain_graph: a second backward through the same graph solves again.
    out = model(g, x, e)
    l = F.cross_entropy(out, y)
    g1 = torch.autograd.grad(l, params, retain_graph=True)
    g2 = torch.autograd.grad(l, params)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    del out, l, out1, out2

    # No graphs kept alive across training steps.
    opt = torch.optim.SGD(params, lr=1e-3)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(g, x, e), y).backward()
        opt.step()

    def live_tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if torch.is_tensor(o))

    step()
    step()
    before = live_tensors()
    for _ in range(4):
        step()
    assert live_tensors() == before


# ------------------------------------------------------------------------ training


@pytest.mark.parametrize("solver", ["anderson", "broyden"])
def test_model_trains(solver):
    g, x, e, _ = _data()
    y = x[:, :OUT].argmax(1)  # a learnable target (random labels learn too slowly for a quick test)
    torch.manual_seed(5)
    model = DEQGNN(IN, HID, OUT, edge_channels=EDGE, dropout=0.1, solver=solver, tol=1e-4, max_iter=60)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses, converged = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # counted below instead
        for _ in range(15):
            opt.zero_grad()
            loss = F.cross_entropy(model(g, x, e), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            converged += model.last_forward_info.converged and model.last_backward_info.converged
    assert converged >= 12, converged
    # Dropout makes single steps noisy: compare the mean of the last three.
    assert sum(losses[-3:]) / 3 < 0.85 * losses[0], losses
