"""One comparison for every "memory-saving backward equals ordinary autograd" test.

The reversible backward reconstructs activations instead of storing them; in float64 it agrees
with ordinary autograd (``disable=True``, same weights, inputs and dropout masks) to about 1e-12
relative per element at depth 8 and about 2e-10 at depth 100 (measured, see the tests), while a
wrong gradient -- a term dropped, a reconstruction off by one ulp too many per layer, a dropout
mask not replayed -- is off by far more. :func:`assert_gradients_match` compares per element
with ``rtol = 1e-9`` and an absolute floor of ``1e-12`` times the largest entry of the reference
tensor (for entries that are zero or tiny by cancellation), which keeps those two apart.

``tests/nn/test_grad_check.py`` injects bugs of that size into the reversible block and checks
that this very helper fails on them: the gradient tests cannot be looser than that.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

import torch
from torch import Tensor

#: Relative tolerance per element (float64).
RTOL = 1e-9
#: Absolute tolerance per element, as a fraction of the reference tensor's largest magnitude.
ATOL_SCALE = 1e-12

Grads = Union[Mapping[str, Tensor], Sequence[Tensor]]


def _named(grads: Grads) -> dict:
    if isinstance(grads, Mapping):
        return dict(grads)
    return {f"#{i}": g for i, g in enumerate(grads)}


def mismatch(actual: Grads, expected: Grads, rtol: float = RTOL, atol_scale: float = ATOL_SCALE) -> float:
    """The largest ``|a - b| / (atol + rtol |b|)`` over every element of every pair.

    :func:`assert_gradients_match` passes exactly when this is at most 1; tests print it so
    that the margin is on record.
    """
    a, b = _named(actual), _named(expected)
    worst = 0.0
    for name in b:
        x, y = a[name].double(), b[name].double()
        atol = atol_scale * float(y.abs().max()) if y.numel() else 0.0
        bound = atol + rtol * y.abs()
        diff = (x - y).abs()
        if (diff > 0).any():
            ratio = torch.where(bound > 0, diff / bound.clamp(min=torch.finfo(torch.float64).tiny), torch.full_like(diff, float("inf")))
            worst = max(worst, float(ratio[diff > 0].max()))
    return worst


def assert_gradients_match(
    actual: Grads,
    expected: Grads,
    rtol: float = RTOL,
    atol_scale: float = ATOL_SCALE,
    require_float64: bool = True,
) -> None:
    """Assert two sets of gradients are equal to float64 rounding of the reconstruction.

    Parameters
    ----------
    actual, expected : mapping name -> Tensor, or sequence of Tensor
        The gradients of the memory-saving path and of ordinary autograd (the reference), with
        the same names (or the same order). Must not be empty, and the reference must not be
        all zeros (a comparison of zeros shows nothing).
    rtol : float
        Relative tolerance per element.
    atol_scale : float
        Absolute tolerance per element, times the largest magnitude of the reference tensor.
    require_float64 : bool
        Refuse other dtypes: the default tolerances only make sense in float64.
    """
    a, b = _named(actual), _named(expected)
    assert b, "no gradients to compare"
    assert list(a) == list(b), f"different gradients: {sorted(set(a) ^ set(b))} (or a different order)"
    assert any(bool((t != 0).any()) for t in b.values()), "every reference gradient is zero: nothing is compared"
    for name, ref in b.items():
        got = a[name]
        if require_float64:
            assert ref.dtype == got.dtype == torch.float64, f"{name}: compare in float64 (got {got.dtype}, {ref.dtype})"
        scale = float(ref.abs().max()) if ref.numel() else 0.0
        torch.testing.assert_close(
            got, ref, rtol=rtol, atol=atol_scale * scale, msg=lambda m, name=name: f"gradient {name}: {m}"
        )
