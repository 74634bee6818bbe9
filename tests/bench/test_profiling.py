"""Tests for revgnn_dgl.bench.profiling: exact allocator accounting and the fresh-process runner."""

from __future__ import annotations

import os
import signal
import sys

import pytest
import torch

from revgnn_dgl.bench.profiling import (
    DEFAULT_MMAP_THRESHOLD,
    measure_forward_backward,
    measure_peak_memory,
    retained_bytes,
    run_in_subprocess,
)

# dgl is imported inside the tests that need it: the subprocess tests import this module in a
# fresh interpreter, which should not pay for importing DGL.

MB4 = 1000 * 1000 * 4  # bytes of a 1000 x 1000 float32 tensor


def test_known_allocation_is_exact():
    stats = measure_peak_memory(lambda: torch.empty(1000, 1000))
    assert stats.peak_bytes == MB4
    assert stats.end_bytes == MB4
    assert isinstance(stats.result, torch.Tensor) and stats.result.shape == (1000, 1000)
    assert stats.device == torch.device("cpu")


def test_freed_temporaries_count_in_peak_not_end():
    def keep_one() -> torch.Tensor:
        kept = torch.empty(1000, 1000)
        tmp = torch.empty(500, 1000)
        del tmp
        return kept

    def keep_none() -> None:
        a = torch.empty(1000, 1000)
        b = torch.empty(500, 1000)  # alive together with a: peak 6 MB
        del a, b

    stats = measure_peak_memory(keep_one)
    assert (stats.peak_bytes, stats.end_bytes) == (MB4 + MB4 // 2, MB4)
    stats = measure_peak_memory(keep_none, collect_garbage=False)
    assert (stats.peak_bytes, stats.end_bytes) == (MB4 + MB4 // 2, 0)
    assert stats.result is None


def test_freeing_memory_from_an_earlier_measurement_is_negative():
    held = measure_peak_memory(lambda: torch.empty(1000, 1000)).result
    box = [held]
    del held
    stats = measure_peak_memory(box.clear)  # drops the last reference inside
    assert stats.peak_bytes == 0
    assert stats.end_bytes == -MB4


def test_exception_propagates_and_profiler_is_left_off():
    def boom() -> None:
        torch.empty(10)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        measure_peak_memory(boom)
    assert not torch.autograd._profiler_enabled()
    assert measure_peak_memory(lambda: torch.empty(250)).end_bytes == 1000


def test_refuses_to_nest_inside_a_running_profiler():
    with torch.autograd.profiler.profile():
        with pytest.raises(RuntimeError, match="already running"):
            measure_peak_memory(lambda: None)
    with pytest.raises(ValueError):
        measure_peak_memory(lambda: None, device="meta")


class _Square(torch.autograd.Function):
    """x * x with known scratch allocations in forward (4 MB) and backward (8 MB)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x * x
        scratch = torch.empty(1000, 1000)
        del scratch
        ctx.save_for_backward(x)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        scratch = torch.empty(2000, 1000)
        del scratch
        return 2 * x * grad


def test_autograd_function_forward_and_backward_are_seen():
    x = torch.randn(1000, 1000, requires_grad=True)
    # Forward keeps its output; x is saved but was allocated before, so costs nothing new.
    assert retained_bytes(lambda: _Square.apply(x)) == MB4
    step = measure_forward_backward(lambda: _Square.apply(x))
    assert step.retained_bytes == MB4
    assert step.forward_peak_bytes == 2 * MB4  # output + forward scratch
    assert step.peak_bytes >= 2 * MB4  # backward scratch (the output is already released)
    assert step.end_bytes == MB4  # x.grad
    assert x.grad is not None


def test_retained_bytes_grow_linearly_with_depth_unless_no_grad():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(64, 64) for _ in range(8)]
    x = torch.randn(256, 64)

    def stack(depth: int, grad: bool = True) -> torch.Tensor:
        with torch.set_grad_enabled(grad):
            h = x
            for layer in layers[:depth]:
                h = torch.tanh(layer(h))
            return h

    kept = [retained_bytes(lambda d=d: stack(d)) for d in (2, 4, 6, 8)]
    steps = {b - a for a, b in zip(kept, kept[1:])}
    assert len(steps) == 1 and steps.pop() > 0  # the same bytes per layer, every layer
    flat = {retained_bytes(lambda d=d: stack(d, grad=False)) for d in (2, 8)}
    assert flat == {256 * 64 * 4}  # only the output


def test_dgl_ops_are_seen():
    import dgl  # a dependency of the package: missing or broken is a failure, not a skip

    g = dgl.rand_graph(100, 500)
    feat = torch.randn(100, 16)
    out_bytes = 100 * 16 * 4

    # First use builds the CSC format (int64 indptr, indices, edge ids) through torch's allocator.
    first = measure_peak_memory(lambda: dgl.ops.copy_u_sum(g, feat))
    assert first.end_bytes == out_bytes + 8 * (101 + 2 * 500)
    assert measure_peak_memory(lambda: dgl.ops.copy_u_sum(g, feat)).end_bytes == out_bytes

    def message_passing() -> torch.Tensor:
        with g.local_scope():
            g.ndata["h"] = feat
            g.update_all(dgl.function.copy_u("h", "m"), dgl.function.sum("m", "o"))
            return g.ndata["o"]

    stats = measure_peak_memory(message_passing)
    assert stats.peak_bytes == stats.end_bytes == out_bytes

    leaf = feat.clone().requires_grad_()
    step = measure_forward_backward(lambda: dgl.ops.copy_u_sum(g, leaf))
    assert step.retained_bytes == out_bytes
    assert step.end_bytes >= out_bytes  # the gradient (plus the CSR format backward builds)


# ---- fresh-process runner ---------------------------------------------------------------------


def _child_allocate(nbytes: int) -> dict:
    """Runs in the child: allocate and touch ``nbytes``, report what measure_peak_memory saw."""
    stats = measure_peak_memory(lambda: torch.ones(nbytes // 4))
    return {
        "peak": stats.peak_bytes,
        "end": stats.end_bytes,
        "mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
    }


def _child_sigkill() -> None:
    """Runs in the child: die by SIGKILL, as the kernel's OOM killer would end it."""
    os.kill(os.getpid(), signal.SIGKILL)


def test_subprocess_returns_result_and_rss():
    nbytes = 64 * 2**20
    report = run_in_subprocess(f"{__name__}:_child_allocate", {"nbytes": nbytes}, timeout=120)
    assert report["status"] == "ok", report
    assert report["result"] == {
        "peak": nbytes,
        "end": nbytes,
        "mmap_threshold": str(DEFAULT_MMAP_THRESHOLD),
    }
    assert report["max_rss_exact"] is True
    assert report["max_rss_before_call_bytes"] > 0
    # The touched tensor is resident on top of the interpreter and torch.
    assert report["max_rss_bytes"] - report["max_rss_before_call_bytes"] >= 0.9 * nbytes
    assert report["returncode"] == 0 and report["message"] is None


def test_subprocess_env_and_positional_args():
    report = run_in_subprocess("os:getenv", args=["MALLOC_MMAP_THRESHOLD_"], env={"MALLOC_MMAP_THRESHOLD_": "131072"})
    assert report["result"] == "131072"
    assert run_in_subprocess("os:getenv", args=["MALLOC_MMAP_THRESHOLD_"], mmap_threshold=None)[
        "result"
    ] == os.environ.get("MALLOC_MMAP_THRESHOLD_")
    assert run_in_subprocess("json:loads", {"s": "[1, 2.5]"})["result"] == [1, 2.5]


def test_subprocess_reports_failures_without_raising():
    failed = run_in_subprocess("json:loads", {"s": "not json"})
    assert failed["status"] == "error"
    assert failed["message"].startswith("JSONDecodeError")
    assert "Traceback" in failed["traceback"]

    missing = run_in_subprocess("no_such_module_xyz:f")
    assert missing["status"] == "error" and "ModuleNotFoundError" in missing["message"]

    unserializable = run_in_subprocess("builtins:object")
    assert unserializable["status"] == "error" and "JSON-serializable" in unserializable["message"]

    oom = run_in_subprocess("builtins:bytearray", args=[2**60])  # MemoryError at once
    assert oom["status"] == "oom" and oom["message"].startswith("MemoryError")

    crashed = run_in_subprocess("os:abort")
    assert crashed["status"] == "error" and "SIGABRT" in crashed["message"]
    assert crashed["returncode"] < 0 and crashed["max_rss_exact"] is False

    killed = run_in_subprocess(f"{__name__}:_child_sigkill")
    assert killed["status"] == "oom" and "SIGKILL" in killed["message"]

    slow = run_in_subprocess("time:sleep", args=[60], timeout=0.5)
    assert slow["status"] == "timeout" and slow["wall_s"] < 30


def test_subprocess_rejects_bad_arguments():
    with pytest.raises(ValueError):
        run_in_subprocess("json.loads")
    with pytest.raises(TypeError):
        run_in_subprocess("json:loads", {"s": object()})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS from /proc")
def test_child_rss_does_not_inherit_parent_peak():
    # A child's ru_maxrss starts at its parent's peak (Linux carries it over exec); VmHWM does not.
    report = run_in_subprocess("json:loads", {"s": "1"})
    assert report["max_rss_bytes"] < 200 * 2**20  # a bare interpreter, not this torch process
