"""Exact memory measurement: peak and retained allocator bytes, and fresh-process runs.

Three tools, for tests that check a reversible stack's activation memory stays flat with depth
and for benchmarks of one training step's peak memory against depth:

* :func:`measure_peak_memory` -- peak and net bytes that torch's allocator handed out while a
  callable ran, exact to the byte on CPU and CUDA alike.
* :func:`retained_bytes` and :func:`measure_forward_backward` -- what a forward pass leaves
  allocated (its output and autograd graph), and the peak over forward plus backward.
* :func:`run_in_subprocess` -- run ``'module:function'`` in a fresh Python process and return its
  JSON result together with the process's peak resident set size, never raising when the child
  crashes or runs out of memory, so that a sweep can go on.

How the CPU measurement works
-----------------------------
Torch keeps no allocator statistics on CPU, but its default CPU allocator reports every
allocation and free to the profiler while memory profiling is on (``c10::ProfiledCPUMemoryReporter``
calls ``reportMemoryUsageToProfiler``). :func:`measure_peak_memory` turns on the Kineto profiler
with ``profile_memory=True`` *and with ``RecordFunction`` turned off*, so that it records memory
events only, not one event per operator. For a 1000-layer GNN training step on CPU (20,000
memory events) that costs about 5 us per event to read back, 0.15-0.2 s, and the step itself no
measurable time beyond run-to-run noise; ``torch.profiler.profile(profile_memory=True)`` made
the same step 7 times slower. Each memory event carries its size and the allocator's running
total right after it (``total_allocated``, updated under the reporter's lock), so the peak is the
largest running total, whatever order the events are listed in.

This sees every tensor that goes through torch's CPU allocator on the measuring thread and on the
autograd engine (CPU backward runs on the calling thread): ATen operators, ``autograd.Function``
forward and backward, and DGL's kernels, whose outputs and graph-format arrays (CSR/CSC built on
first use) DGL allocates through torch via its tensoradapter. Warm a graph up (or call
``g.create_formats_()``) before measuring, or its formats count against the first measurement.

Kineto prints three ``STAGE:`` lines to stderr per measurement; set ``KINETO_LOG_LEVEL=5`` in the
environment before the first measurement to silence it.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Tuple, Union, cast

import torch

from .fresh import DEFAULT_MMAP_THRESHOLD, run_in_subprocess

__all__ = [
    "MemoryStats",
    "StepMemory",
    "measure_peak_memory",
    "retained_bytes",
    "measure_forward_backward",
    "run_in_subprocess",
    "DEFAULT_MMAP_THRESHOLD",
]


@dataclass
class MemoryStats:
    """Allocator bytes seen while a callable ran, relative to the level when it started.

    Attributes
    ----------
    peak_bytes : int
        Highest level of allocated bytes during the call minus the level at its start (>= 0).
    end_bytes : int
        Bytes still allocated when the call returned minus the level at its start; negative if
        the call freed more than it allocated.
    result : Any
        The callable's return value, kept so that whatever it references (an autograd graph,
        say) stays alive and is counted in ``end_bytes``. Drop it to free that memory.
    device : torch.device
        Whose allocator was measured.
    num_events : int
        Allocation and free events recorded (CPU only; 0 on CUDA).
    elapsed_s : float
        Wall-clock seconds the call took, measurement included.
    """

    peak_bytes: int
    end_bytes: int
    result: Any = field(default=None, repr=False)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    num_events: int = 0
    elapsed_s: float = 0.0


@dataclass
class StepMemory:
    """Memory of one forward and backward pass, in bytes relative to the level before forward.

    Attributes
    ----------
    retained_bytes : int
        Allocated after forward while its output is alive: the output plus everything the
        autograd graph saved for backward.
    forward_peak_bytes : int
        Peak during forward.
    peak_bytes : int
        Peak over forward and backward together.
    end_bytes : int
        Allocated after backward once the output and loss are released: typically the newly
        created ``.grad`` tensors.
    """

    retained_bytes: int
    forward_peak_bytes: int
    peak_bytes: int
    end_bytes: int


def measure_peak_memory(
    fn: Callable[[], Any],
    device: Union[torch.device, str] = "cpu",
    *,
    collect_garbage: bool = True,
) -> MemoryStats:
    """Measure the peak and net bytes torch's allocator hands out while ``fn()`` runs.

    Parameters
    ----------
    fn : callable
        Called once with no arguments.
    device : torch.device or str, default 'cpu'
        Whose allocator to watch: ``'cpu'`` (the profiler, see the module docstring) or a CUDA
        device (the caching allocator's statistics). Only that device's memory is counted.
    collect_garbage : bool, default True
        Run ``gc.collect()`` before starting, so that earlier garbage is not freed mid-call, and
        again before stopping, so that reference cycles ``fn`` left behind do not count as
        retained.

    Returns
    -------
    MemoryStats
        ``peak_bytes``, ``end_bytes`` and ``fn``'s return value as ``result``.

    Raises
    ------
    RuntimeError
        On CPU, if a torch profiler is already running (profiler sessions cannot nest).

    Notes
    -----
    CPU counts are the bytes requested from the allocator (``torch.empty(1000, 1000)`` is exactly
    4,000,000); CUDA counts are the caching allocator's, rounded up to 512-byte blocks.

    On CPU only torch's allocator is seen: memory a C++ kernel gets from ``malloc`` or
    ``std::vector`` directly (scratch buffers in oneDNN, MKL or some DGL kernels) and allocations
    made on other threads (intra-op OpenMP workers, data-loader threads) are invisible. A block
    freed during ``fn`` but allocated before it counts only if it was allocated during an
    earlier measurement and not freed between measurements (the reporter knows its size only
    then); otherwise its free goes unseen and ``end_bytes`` overstates what ``fn`` kept. So
    measure code that frees what it allocated, as a training step does, or keep results from
    one measurement alive until the next has started. Gradient buffers that ``fn`` reuses in
    place cause no such trouble. CPU measurements cannot nest; run them one at a time.

    ``collect_garbage`` costs one full ``gc.collect()`` at either end: 0.1-0.2 s each with DGL
    imported, worth turning off in tight loops.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return _measure_cuda(fn, device, collect_garbage)
    if device.type != "cpu":
        raise ValueError(f"cannot measure memory on device {device}; use 'cpu' or 'cuda'")
    return _measure_cpu(fn, collect_garbage)


def _measure_cuda(fn: Callable[[], Any], device: torch.device, collect_garbage: bool) -> MemoryStats:
    if collect_garbage:
        gc.collect()
    torch.cuda.synchronize(device)
    start = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    result = fn()
    if collect_garbage:
        gc.collect()
    torch.cuda.synchronize(device)  # so frees queued behind pending kernels are counted
    elapsed = time.perf_counter() - t0
    return MemoryStats(
        peak_bytes=torch.cuda.max_memory_allocated(device) - start,
        end_bytes=torch.cuda.memory_allocated(device) - start,
        result=result,
        device=device,
        elapsed_s=elapsed,
    )


def _measure_cpu(fn: Callable[[], Any], collect_garbage: bool) -> MemoryStats:
    # Private torch APIs: the same calls torch.autograd.profiler.profile makes, minus its
    # Python-side parsing of every event, which would dominate the cost for deep stacks.
    from torch._C import _autograd as _ag
    from torch._C._profiler import (
        ProfilerActivity,
        ProfilerConfig,
        ProfilerState,
        _ExperimentalConfig,
    )

    if torch.autograd._profiler_enabled():
        raise RuntimeError(
            "measure_peak_memory on CPU needs the torch profiler, which is already running; "
            "profiler sessions cannot nest"
        )
    if collect_garbage:
        gc.collect()
    config = ProfilerConfig(
        ProfilerState.KINETO,
        False,  # report_input_shapes
        True,  # profile_memory
        False,  # with_stack
        False,  # with_flops
        False,  # with_modules
        _ExperimentalConfig(),
    )
    activities = {ProfilerActivity.CPU}
    _ag._prepare_profiler(config, activities)  # enabling without preparing segfaults in 2.2
    t0 = time.perf_counter()
    _ag._enable_profiler(config, activities)
    try:
        # Operator events are not needed, and recording them costs more than the ops themselves
        # for small layers. Memory events do not depend on RecordFunction. (Thread-local; the
        # autograd engine copies it to its threads with the rest of the thread-local state.)
        _ag._enable_record_function(False)
        try:
            # Anchor: its allocation event gives the allocator's running total at the start,
            # which makes the result independent of the order in which events are listed.
            anchor = torch.empty(1, dtype=torch.uint8)
            anchor_ptr = anchor.data_ptr()
            result = fn()
            if collect_garbage:
                gc.collect()
            del anchor
        finally:
            _ag._enable_record_function(True)
    finally:
        profile = _ag._disable_profiler()
    elapsed = time.perf_counter() - t0

    base, top, net, count = _memory_events(profile, anchor_ptr)
    if base is None:
        raise RuntimeError("torch profiler recorded no CPU memory events; cannot measure memory")
    peak = 0 if top is None else max(0, top - base)
    return MemoryStats(
        peak_bytes=peak,
        end_bytes=net,
        result=result,
        device=torch.device("cpu"),
        num_events=count,
        elapsed_s=elapsed,
    )


def _memory_events(profile: Any, anchor_ptr: int) -> Tuple[Optional[int], Optional[int], int, int]:
    """The CPU allocation events of a profile: the running total at the anchor's allocation (None if
    not seen), the highest running total after an allocation, the net bytes and the events counted."""
    from torch._C._profiler import _ExtraFields_Allocation

    # ~5 us per event; attribute reads dominate, so read only what each event needs.
    check_device = torch.cuda.is_initialized()  # only then can CUDA memory events show up
    base: Optional[int] = None
    top: Optional[int] = None
    net = 0
    count = 0
    stack = list(profile.experimental_event_tree())
    while stack:
        # With RecordFunction off there are no operator events for memory events to nest
        # under, so all are roots; walking children anyway keeps this right if that changes.
        ev = stack.pop()
        children = ev.children
        if children:
            stack.extend(children)
        extra = ev.extra_fields
        if type(extra) is not _ExtraFields_Allocation:
            continue
        if check_device and extra.device.type != "cpu":
            continue
        size = extra.alloc_size
        if (size == 1 or size == -1) and extra.ptr == anchor_ptr:
            if size == 1:
                base = extra.total_allocated  # includes the anchor's byte, as do the others
            continue
        net += size
        count += 1
        if size > 0:
            total = extra.total_allocated
            if top is None or total > top:
                top = total
    return base, top, net, count


def retained_bytes(forward_fn: Callable[[], Any], device: Union[torch.device, str] = "cpu") -> int:
    """Bytes a forward pass leaves allocated while its output, and so its autograd graph, lives.

    Parameters
    ----------
    forward_fn : callable
        Runs the forward pass and returns its output (anything that references the graph).
    device : torch.device or str, default 'cpu'
        Whose allocator to watch.

    Returns
    -------
    int
        ``end_bytes`` of :func:`measure_peak_memory`: the output plus the tensors saved for
        backward. A reversible stack keeps this flat in depth; a plain one grows linearly.
    """
    stats = measure_peak_memory(forward_fn, device)
    return stats.end_bytes  # the output dies with ``stats`` here


def _default_loss(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out if out.dim() == 0 else out.sum()
    if isinstance(out, (tuple, list)):
        return cast(torch.Tensor, sum(o.sum() for o in out if isinstance(o, torch.Tensor) and o.requires_grad))
    raise TypeError(f"cannot make a loss from {type(out).__name__}; pass loss_fn")


def measure_forward_backward(
    forward_fn: Callable[[], Any],
    device: Union[torch.device, str] = "cpu",
    loss_fn: Optional[Callable[[Any], torch.Tensor]] = None,
) -> StepMemory:
    """Measure a forward pass, what it retains, and the peak over forward plus backward.

    Parameters
    ----------
    forward_fn : callable
        Runs the forward pass and returns its output.
    device : torch.device or str, default 'cpu'
        Whose allocator to watch.
    loss_fn : callable, optional
        Maps the output to a scalar to call ``backward()`` on; by default the sum of the output
        (or of each tensor in a tuple or list that requires grad).

    Returns
    -------
    StepMemory
        All numbers relative to the allocated level before forward. Gradients accumulate into
        ``.grad`` as usual; set them to None beforehand so each call counts their allocation.
    """
    loss_fn = _default_loss if loss_fn is None else loss_fn
    fwd = measure_peak_memory(forward_fn, device)
    holder = [fwd.result]
    fwd.result = None  # the holder is now the output's only reference, so backward can free it

    def backward() -> None:
        out = holder.pop()
        loss = loss_fn(out)
        del out  # the graph keeps what backward needs; the rest may go
        loss.backward()

    # The second measurement starts from the level the first ended at (nothing runs between).
    bwd = measure_peak_memory(backward, device)
    return StepMemory(
        retained_bytes=fwd.end_bytes,
        forward_peak_bytes=fwd.peak_bytes,
        peak_bytes=max(fwd.peak_bytes, fwd.end_bytes + bwd.peak_bytes),
        end_bytes=fwd.end_bytes + bwd.end_bytes,
    )
