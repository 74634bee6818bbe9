"""The gradient comparison that every reversible-vs-autograd test uses (``tests/grad_check.py``)
catches a deliberately wrong gradient: bugs are injected into the reversible block's backward,
and the helper must fail on them, while the correct backward passes.

Measured on this model (RevGNN, 6 layers, float64): the correct backward uses 6e-4 of the
tolerance; adding 1e-7 to one element of one parameter gradient per block gives 7e4 times the
tolerance, and scaling one element of each reconstructed input by (1 + 1e-9) gives 105 times
(the smallest such error caught is about 1e-11). The former check (largest difference below 1e-5
of the largest entry) let both through: they move a gradient by 8e-6 and 1.4e-9 of its size.
"""

from __future__ import annotations

import copy
from typing import Callable, Dict, Optional

import dgl
import pytest
import torch
from grad_check import assert_gradients_match, mismatch

from revgnn_dgl.models import RevGNN
from revgnn_dgl.nn import GroupRevRes

N, E = 30, 150


def gradients(monkeypatch: pytest.MonkeyPatch, backward: Optional[Callable] = None) -> tuple:
    """Parameter gradients of the memory-saving path (with ``backward`` in place of the block's
    reconstruction-and-backprop step, if given) and of ordinary autograd, same weights and masks."""
    gen = torch.Generator().manual_seed(0)
    graph = dgl.graph((torch.randint(0, N, (E,), generator=gen), torch.randint(0, N, (E,), generator=gen)), num_nodes=N)
    feat = torch.rand(N, 8, generator=gen, dtype=torch.float64)
    edge = torch.rand(E, 8, generator=gen, dtype=torch.float64)
    species = torch.nn.functional.one_hot(torch.randint(0, 8, (N,), generator=gen), 8).double()
    torch.manual_seed(0)
    rev = RevGNN(8, 5, hidden=8, num_layers=6, edge_feats=8, species_feats=8, dropout=0.2).double()
    plain = copy.deepcopy(rev)
    plain.set_disable(True)
    if backward is not None:
        monkeypatch.setattr(GroupRevRes, "_reverse_and_backprop", backward)
    grads = []
    for model in (rev, plain):
        torch.manual_seed(5)  # the same dropout mask in both runs
        model(graph, feat, edge, species).pow(2).mean().backward()
        grads.append({name: p.grad for name, p in model.named_parameters()})
    return grads[0], grads[1]


ORIGINAL = GroupRevRes._reverse_and_backprop


def add_to_one_parameter_gradient(delta: float) -> Callable:
    """The recomputation adds ``delta`` to one element of the first parameter's gradient."""

    def backward(self, *args, **kwargs):
        x_rec, grad_x, grad_leaves, grad_params = ORIGINAL(self, *args, **kwargs)
        grad_params = list(grad_params)
        i = next(i for i, g in enumerate(grad_params) if g is not None)
        grad_params[i] = grad_params[i].clone()
        grad_params[i].view(-1)[0] += delta
        return x_rec, grad_x, grad_leaves, grad_params

    return backward


def perturb_reconstructed_input(relative: float) -> Callable:
    """The reconstructed input, which the previous block's backward starts from, is off by
    ``relative`` in one element."""

    def backward(self, *args, **kwargs):
        x_rec, grad_x, grad_leaves, grad_params = ORIGINAL(self, *args, **kwargs)
        x_rec = x_rec.clone()
        x_rec.view(-1)[0] *= 1 + relative
        return x_rec, grad_x, grad_leaves, grad_params

    return backward


def test_correct_backward_passes(monkeypatch):
    rev, plain = gradients(monkeypatch)
    assert mismatch(rev, plain) < 0.01  # measured 6e-4
    assert_gradients_match(rev, plain)


def test_identity_injection_passes(monkeypatch):
    # The injection mechanism itself changes nothing: a zero bug passes.
    rev, plain = gradients(monkeypatch, add_to_one_parameter_gradient(0.0))
    assert_gradients_match(rev, plain)


def test_wrong_parameter_gradient_is_caught(monkeypatch):
    rev, plain = gradients(monkeypatch, add_to_one_parameter_gradient(1e-7))
    with pytest.raises(AssertionError, match=r"gradient \S+: Tensor-likes are not close"):
        assert_gradients_match(rev, plain)


def test_wrong_reconstruction_is_caught(monkeypatch):
    rev, plain = gradients(monkeypatch, perturb_reconstructed_input(1e-9))
    assert mismatch(rev, plain) > 10  # measured 105
    with pytest.raises(AssertionError, match=r"gradient \S+: Tensor-likes are not close"):
        assert_gradients_match(rev, plain)


def test_helper_refuses_comparisons_that_show_nothing():
    a: Dict[str, torch.Tensor] = {"w": torch.ones(3, dtype=torch.float64)}
    with pytest.raises(AssertionError, match="no gradients"):
        assert_gradients_match({}, {})
    with pytest.raises(AssertionError, match="different gradients"):
        assert_gradients_match(a, {"v": a["w"]})
    with pytest.raises(AssertionError, match="every reference gradient is zero"):
        assert_gradients_match({"w": torch.zeros(3, dtype=torch.float64)}, {"w": torch.zeros(3, dtype=torch.float64)})
    with pytest.raises(AssertionError, match="float64"):
        assert_gradients_match({"w": a["w"].float()}, {"w": a["w"].float()})
    # Per element: 1e-9 relative is the limit, also for a small entry next to a large one.
    ref = torch.tensor([1.0, 1e-3], dtype=torch.float64)
    assert_gradients_match({"w": ref * (1 + 5e-10)}, {"w": ref})
    with pytest.raises(AssertionError):
        assert_gradients_match({"w": ref + torch.tensor([0.0, 1e-11], dtype=torch.float64)}, {"w": ref})
