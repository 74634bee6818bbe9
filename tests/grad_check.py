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

# The comparison itself lives in the package, torch only, so that the CUDA tier (tests/cuda) and
# ``revgnn-dgl info --check`` apply the very same rule.
from revgnn_dgl.testing.engine_checks import ATOL_SCALE, RTOL, mismatch, named_gradients

__all__ = ["ATOL_SCALE", "RTOL", "assert_gradients_match", "mismatch"]

Grads = Union[Mapping[str, Tensor], Sequence[Tensor]]


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
    a, b = named_gradients(actual), named_gradients(expected)
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
