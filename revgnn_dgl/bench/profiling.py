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
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch

__all__ = [
    "MemoryStats",
    "StepMemory",
    "measure_peak_memory",
    "retained_bytes",
    "measure_forward_backward",
    "run_in_subprocess",
    "DEFAULT_MMAP_THRESHOLD",
]

#: Bytes; glibc serves every block at least this large by its own ``mmap`` (see
#: :func:`run_in_subprocess`).
DEFAULT_MMAP_THRESHOLD = 65536


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
        _ExtraFields_Allocation,
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
        return sum(o.sum() for o in out if isinstance(o, torch.Tensor) and o.requires_grad)
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


# --------------------------------------------------------------------------------------------
# Fresh-process runner

# The child's bootstrap. Standalone (stdlib only) so that the child imports nothing the target
# does not need, and its peak RSS is the target's plus the interpreter's.
_CHILD = r"""
import importlib, json, os, resource, sys, time, traceback
spec_path, out_path = sys.argv[1], sys.argv[2]
with open(spec_path) as f:
    spec = json.load(f)
sys.path[:0] = [p for p in spec["sys_path"] if p not in sys.path]
mem_words = ("out of memory", "can't allocate memory", "cannot allocate memory")

def rss():
    # VmHWM is this process's own peak; ru_maxrss would start from the parent's (see the docs).
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # Linux reports KiB

def to_json(o):
    if hasattr(o, "tolist"):  # numpy arrays and scalars, torch tensors
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON-serializable")

out = {"status": "error"}
try:
    module_name, _, attr = spec["target"].partition(":")
    fn = importlib.import_module(module_name)
    for part in attr.split("."):
        fn = getattr(fn, part)
    out["max_rss_before_call_bytes"] = rss()
    t0 = time.perf_counter()
    result = fn(*spec["args"], **spec["kwargs"])
    out["call_s"] = time.perf_counter() - t0
    out["max_rss_bytes"] = rss()
    try:
        text = json.dumps(dict(out, status="ok", result=result), default=to_json)
    except (TypeError, ValueError) as e:
        raise TypeError(f"the result of {spec['target']} is not JSON-serializable: {e}") from None
except BaseException as e:
    oom = isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or any(
        w in str(e).lower() for w in mem_words)
    msg = f"{type(e).__name__}: {e}"
    out.update(status="oom" if oom else "error", message=msg, max_rss_bytes=rss(),
               traceback="".join(traceback.format_exception(type(e), e, e.__traceback__)))
    text = json.dumps(out, default=str)
with open(out_path + ".part", "w") as f:
    f.write(text)
os.replace(out_path + ".part", out_path)
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)  # skip interpreter teardown: slow with torch loaded, and it could crash after the fact
"""


def run_in_subprocess(
    target: str,
    kwargs: Optional[Mapping[str, Any]] = None,
    env: Optional[Mapping[str, str]] = None,
    timeout: Optional[float] = None,
    *,
    args: Sequence[Any] = (),
    mmap_threshold: Optional[int] = DEFAULT_MMAP_THRESHOLD,
    python: Optional[str] = None,
    cwd: Optional[str] = None,
) -> Dict[str, Any]:
    """Run ``module:function`` in a fresh Python process and report its result and peak RSS.

    Parameters
    ----------
    target : str
        ``'package.module:function'`` (a dotted attribute path after the colon also works). The
        child gets the parent's ``sys.path``, so anything the parent can import, it can.
    kwargs : mapping, optional
        Keyword arguments; must be JSON-serializable.
    env : mapping, optional
        Environment variables to set in the child, over the parent's environment (and over the
        ``MALLOC_MMAP_THRESHOLD_`` default).
    timeout : float, optional
        Seconds after which the child is killed and ``status`` is ``'timeout'``.
    args : sequence, optional
        Positional arguments; must be JSON-serializable.
    mmap_threshold : int or None, default 65536
        Value for glibc's ``MALLOC_MMAP_THRESHOLD_`` in the child; None leaves glibc's default.
        See Notes.
    python : str, optional
        Interpreter to run; defaults to ``sys.executable``.
    cwd : str, optional
        Working directory of the child.

    Returns
    -------
    dict
        ``status``: ``'ok'``, ``'error'`` (an exception or a crash), ``'oom'`` (MemoryError, a
        torch "out of memory" / "can't allocate memory" error, or death by SIGKILL, which is how
        the kernel's OOM killer ends a process) or ``'timeout'``; ``result``: the function's
        return value, when ok; ``message`` and ``traceback``: what went wrong, otherwise;
        ``max_rss_bytes``: the child's peak resident set size, read by the child itself after
        the call (``max_rss_exact`` True) or, for a child that died first, the parent's last
        sample (False; None if there was none); ``max_rss_before_call_bytes``: the peak just
        before the call (interpreter plus imports); ``returncode``, ``wall_s`` (process
        lifetime), ``call_s`` (the call alone) and ``stderr_tail`` (the last 4000 characters;
        the child's stdout is discarded). Keys that do not apply are None.

    Raises
    ------
    ValueError
        If ``target`` has no ``':'``.
    TypeError
        If the arguments are not JSON-serializable.

    Notes
    -----
    Peak RSS is the kernel's ``VmHWM`` of the child's own address space (``/proc``, Linux). Not
    ``ru_maxrss``: Linux carries the high-water mark of the address space a process replaced
    at ``exec`` over into it, and ``subprocess`` starts children by ``vfork``, so a child of a
    parent that once held 1 GiB reports at least 1 GiB (``RUSAGE_CHILDREN`` is worse still: the
    largest over all children ever). Without ``/proc`` the child falls back to ``ru_maxrss``.

    Why ``MALLOC_MMAP_THRESHOLD_=65536``: by default glibc serves blocks of 128 KiB and more by
    ``mmap`` and returns them to the system on free, but each such free raises the threshold to
    the freed size (up to 32 MiB). Afterwards blocks that size come from the heap, where freed
    memory stays resident and fragments, so peak RSS grows with depth even when live memory is
    flat. A fixed threshold turns the dynamic adjustment off: every block of 64 KiB or more is
    mapped and unmapped on its own, and peak RSS follows peak live memory (plus the interpreter
    and libraries). The price is more ``mmap``/``munmap`` calls and page faults. Past about
    65,000 live mapped blocks (glibc's ``M_MMAP_MAX`` and the kernel's ``vm.max_map_count``)
    allocations fall back to the heap.
    """
    if ":" not in target:
        raise ValueError(f"target must look like 'package.module:function', got {target!r}")
    spec = {
        "target": target,
        "args": list(args),
        "kwargs": dict(kwargs or {}),
        "sys_path": [p for p in sys.path if p],  # '' would mean the child's cwd, not ours
    }
    spec_text = json.dumps(spec)  # raises TypeError for arguments that cannot be sent
    child_env = dict(os.environ)
    if mmap_threshold is not None:
        child_env["MALLOC_MMAP_THRESHOLD_"] = str(int(mmap_threshold))
    child_env.update(env or {})

    with tempfile.TemporaryDirectory(prefix="revgnn_profiling_") as tmp:
        spec_path = os.path.join(tmp, "spec.json")
        out_path = os.path.join(tmp, "result.json")
        with open(spec_path, "w") as f:
            f.write(spec_text)
        # Output goes to files, not pipes: a chatty child cannot block on a full pipe.
        with open(os.path.join(tmp, "stdout"), "wb") as fout, open(os.path.join(tmp, "stderr"), "w+b") as ferr:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [python or sys.executable, "-c", _CHILD, spec_path, out_path],
                stdin=subprocess.DEVNULL,
                stdout=fout,
                stderr=ferr,
                env=child_env,
                cwd=cwd,
            )
            timed_out, sampled_rss = _wait(proc, timeout)
            wall = time.perf_counter() - t0
            ferr.seek(0, os.SEEK_END)
            ferr.seek(max(0, ferr.tell() - 4000))
            stderr_tail = ferr.read().decode(errors="replace")
        report: Dict[str, Any] = {}
        if os.path.exists(out_path):
            with open(out_path) as f:
                report = json.load(f)

    code = proc.returncode
    if not report or report.get("status") not in ("ok", "error", "oom"):
        report = {"status": "error"}
        if timed_out:
            report.update(status="timeout", message=f"killed after the {timeout} s timeout")
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:  # a real-time signal, say
                name = f"signal {-code}"
            if -code == signal.SIGKILL:
                report.update(
                    status="oom", message="killed by SIGKILL, most likely by the kernel's out-of-memory killer"
                )
            else:
                report["message"] = f"crashed: killed by signal {name}"
        else:
            report["message"] = f"exited with code {code} without a result"
        if stderr_tail.strip():
            report["message"] += "; stderr ends with: " + stderr_tail.strip()[-500:]
    # The child's own reading is exact; a child that died before reporting has only the
    # parent's last sample, which can miss the final moments (an OOM kill's, say).
    report["max_rss_exact"] = report.get("max_rss_bytes") is not None
    if not report["max_rss_exact"]:
        report["max_rss_bytes"] = sampled_rss
    report.update(returncode=code, wall_s=wall, stderr_tail=stderr_tail)
    for key in ("result", "message", "traceback", "call_s", "max_rss_before_call_bytes"):
        report.setdefault(key, None)  # the same keys whatever happened, for tabulating sweeps
    return report


def _read_hwm(pid: int) -> Optional[int]:
    """Peak resident set size (``VmHWM``) of a live process in bytes, or None if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None  # gone, a zombie (no memory map left), or no /proc


def _wait(proc: subprocess.Popen, timeout: Optional[float]) -> Tuple[bool, Optional[int]]:
    """Wait for ``proc``, killing it after ``timeout`` s; sample its peak RSS meanwhile.

    Returns whether it timed out and the last ``VmHWM`` read, a fallback for a child that dies
    before reporting its own (up to one polling interval, 50 ms, of growth may be missed).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.002
    sampled: Optional[int] = None
    try:
        while True:
            hwm = _read_hwm(proc.pid)
            sampled = hwm if hwm is not None else sampled
            wait = delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic()))
            try:
                proc.wait(timeout=wait)
                return False, sampled
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    proc.kill()
                    proc.wait()
                    return True, sampled
            delay = min(delay * 2, 0.05)
    except BaseException:
        if proc.poll() is None:  # e.g. KeyboardInterrupt: do not leave the child running
            proc.kill()
            proc.wait()
        raise
