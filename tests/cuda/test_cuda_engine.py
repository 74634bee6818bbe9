"""The CUDA tier: the reversible engine's CUDA paths, with torch alone (DGL is not needed).

What CPU CI cannot show: the CUDA generator's state recorded and replayed around ``nn.Dropout``,
storage freed and refilled on the device, the allocator's peak flat in depth
(``torch.cuda.max_memory_allocated``), and autocast in bf16 and fp16. The checks are those of
:mod:`revgnn_dgl.testing.engine_checks`, which ``revgnn-dgl info --check --device cuda`` runs too.

On a GPU machine, from the repository root (see ``benchmarks/README.md`` for the files to copy
where the project is not installed)::

    python -m pytest -m cuda tests/cuda -q -rs

Without a CUDA device every test skips; nothing here imports DGL.
"""

from __future__ import annotations

import pytest
import torch
from grad_check import assert_gradients_match, mismatch

from revgnn_dgl.testing import engine_checks as checks

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: this tier runs on a GPU machine"),
]

DEVICE = "cuda"


@pytest.mark.parametrize("groups,depth", [(2, 4), (3, 3)])
def test_float64_gradients_equal_autograd_with_dropout_inside(groups: int, depth: int) -> None:
    """nn.Dropout (CUDA random numbers replayed) and SharedDropout inside, every kind of argument."""
    (out_r, grads_r), (out_p, grads_p) = checks.engine_gradients(DEVICE, depth=depth, groups=groups)
    assert out_r.is_cuda and all(g.is_cuda for g in grads_r.values() if g is not None)
    assert torch.equal(out_r, out_p)
    print("mismatch", mismatch(grads_r, grads_p))
    assert_gradients_match(grads_r, grads_p)


def test_without_rng_replay_cuda_dropout_differs() -> None:
    """The replay is what makes the test above pass: the CUDA generator really is drawn from."""
    original = checks.ToyModel.__init__

    def no_replay(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        for block in self.blocks:
            block.preserve_rng_state = False

    checks.ToyModel.__init__ = no_replay
    try:
        (_, grads_r), (_, grads_p) = checks.engine_gradients(DEVICE, depth=2)
    finally:
        checks.ToyModel.__init__ = original
    assert mismatch(grads_r, grads_p) > 1e3


def test_requires_grad_switched_between_forward_and_backward() -> None:
    result = checks.check_requires_grad_toggle(DEVICE)
    assert result.passed, result.detail


def test_storage_freed_guarded_and_refilled_on_the_device() -> None:
    result = checks.check_freed_outputs(DEVICE)
    assert result.passed, result.detail


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_against_autograd_under_autocast(dtype: torch.dtype) -> None:
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    result = checks.check_autocast(DEVICE, dtype)
    print(result.detail)
    assert result.passed, result.detail


def test_memory_flat_in_depth() -> None:
    result = checks.check_memory_flat(DEVICE)
    print(result.detail)
    assert result.passed, result.detail
