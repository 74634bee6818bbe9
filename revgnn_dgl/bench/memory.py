"""Peak memory and time of one training step, each configuration in a fresh process.

:func:`measure_step` is what runs in the child: build the model, graph and optimizer, warm up,
then measure one step (forward, backward, clipping, Adam) and time a few more.

* Peak allocated bytes, the number that decides what fits: on CUDA
  ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; on CPU the exact
  peak of bytes handed out by torch's allocator (:func:`revgnn_dgl.bench.profiling.measure_peak_memory`,
  which reads the allocator's running total from the profiler's memory events). Both are
  reported absolute: what was live when the step started (parameters, Adam state, graph,
  inputs: ``state_bytes``) plus the step's own peak above that (``step_peak_delta_bytes``).
* Peak RSS of the whole process (``VmHWM``): interpreter, libraries and allocator slack
  included. glibc's dynamic mmap threshold makes RSS misleading for deep models, so the child
  runs with ``MALLOC_MMAP_THRESHOLD_`` fixed (:func:`revgnn_dgl.bench.profiling.run_in_subprocess`;
  see ``benchmarks/README.md`` for the trap this avoids).

:func:`memory_sweep` runs configurations in increasing depth, one fresh process each, and
never crashes on a model that does not fit: it writes a row with status ``oom`` (the child hit
the memory cap or the OOM killer), ``skipped`` (the projection from smaller depths exceeds the
cap, or a smaller depth already failed), ``timeout`` or ``error`` instead.
"""

from __future__ import annotations

import gc
import resource
import statistics
import time
from collections import defaultdict
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from ..env import CHILD_ENV, environment
from ..train.device import resolve_device
from .profiling import DEFAULT_MMAP_THRESHOLD, measure_peak_memory, run_in_subprocess
from .workload import StepConfig, TrainStep, variant_available

__all__ = [
    "measure_step",
    "memory_sweep",
    "live_blocks_at_peak",
    "peak_breakdown",
    "config_row",
    "GiB",
    "MiB",
]

GiB = 1024**3
MiB = 1024**2
_TARGET = "revgnn_dgl.bench.memory:measure_step"


def _proc_status(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def measure_step(
    config: Dict[str, Any],
    warmup: int = 1,
    repeats: int = 3,
    threads: Optional[int] = None,
    mem_cap_bytes: Optional[int] = None,
    breakdown: bool = False,
    time_budget_s: Optional[float] = None,
) -> Dict[str, Any]:
    """Build a configuration, then measure one training step's peak memory and time.

    Meant to run in a fresh process (:func:`revgnn_dgl.bench.profiling.run_in_subprocess`), but
    callable directly.

    Parameters
    ----------
    config : dict
        A :class:`~revgnn_dgl.bench.workload.StepConfig` as a dict.
    warmup : int
        Full steps before the measured one. 0 is allowed: Adam's state is created beforehand
        either way (:meth:`TrainStep.prime`), and so are the graph's sparse formats.
    repeats : int
        Timed steps after the measured one, without the profiler; the reported time is their
        median (with 0, the time of the measured step itself), and their peak RSS is
        ``peak_rss_steps_bytes`` (None with 0).
    time_budget_s : float, optional
        Stop timing once the timed steps took this long, after at least one (deep models on
        large graphs take minutes per step).
    threads : int, optional
        ``torch.set_num_threads``.
    mem_cap_bytes : int, optional
        Limit on the process's data segment (``RLIMIT_DATA``: heap and private mappings), so
        that an allocation past it fails with an out-of-memory error instead of swapping or
        waking the OOM killer. Covers the whole process: interpreter and libraries included.
    breakdown : bool
        Also list what is live at the peak (CPU only, see :func:`live_blocks_at_peak`), in one
        more step.

    Returns
    -------
    dict
        ``parameters``, ``state_bytes``, ``step_peak_delta_bytes``, ``peak_allocated_bytes``
        (their sum), ``setup_peak_bytes`` (the peak over build and warm-up),
        ``step_time_s`` (median), ``step_times_s``, ``profiled_step_s``, ``loss``,
        ``peak_rss_steps_bytes`` (peak RSS over the unprofiled timed steps: the high-water mark
        is restarted after the profiled phases, whose event records would otherwise dominate),
        ``peak_rss_profiled_bytes`` (the high-water mark before that restart, profiler
        included), ``rss_before_steps_bytes``, ``components`` (bytes of the state by kind) and
        ``env`` (see :func:`~revgnn_dgl.env.environment`); with ``breakdown``,
        ``breakdown`` too.
    """
    if threads:
        torch.set_num_threads(int(threads))
    if not mem_cap_bytes:
        return _measure_step(config, warmup, repeats, breakdown, time_budget_s)
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = int(mem_cap_bytes) if hard == resource.RLIM_INFINITY else min(int(mem_cap_bytes), hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    try:
        return _measure_step(config, warmup, repeats, breakdown, time_budget_s)
    except (RuntimeError, OSError) as err:
        # Past the cap, what fails first may be a torch allocation ("can't allocate memory"),
        # a DGL one (bad_alloc) or a thread's stack (EAGAIN from pthread_create): all mean
        # "does not fit", so report them as such.
        text = str(err).lower()
        if any(w in text for w in _MEMORY_WORDS):
            raise MemoryError(
                f"over the {cap / GiB:.2f} GiB memory cap (RLIMIT_DATA): {type(err).__name__}: {err}"
            ) from err
        raise
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


_MEMORY_WORDS = ("allocate", "out of memory", "bad_alloc", "resource temporarily unavailable", "cannot allocate")


def _measure_step(
    config: Dict[str, Any], warmup: int, repeats: int, breakdown: bool, time_budget_s: Optional[float]
) -> Dict[str, Any]:
    cfg = StepConfig.from_dict(config)
    device = resolve_device(cfg.device)

    def setup() -> TrainStep:
        ts = TrainStep(cfg)
        ts.prime()
        for _ in range(warmup):
            ts.step()
            ts.zero_grad()
        ts.synchronize()
        return ts

    t0 = time.perf_counter()
    built = measure_peak_memory(setup, device)
    setup_s = time.perf_counter() - t0
    ts: TrainStep = built.result
    built.result = None
    state_bytes, setup_peak = built.end_bytes, built.peak_bytes

    def one_step() -> float:
        loss = ts.step()
        ts.synchronize()
        return loss

    # Nothing runs between the two measurements, so the second starts where the first ended.
    measured = measure_peak_memory(one_step, device)
    cuda_max = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    ts.zero_grad()
    live = live_blocks_at_peak(one_step) if breakdown and device.type == "cpu" else None
    ts.zero_grad()

    # Peak RSS of training steps without the profiler: its event records (hundreds of MiB for a
    # deep step) would otherwise dominate. Give back what it left, then restart the high-water mark.
    hwm_profiled = _proc_status("VmHWM")
    del built
    gc.collect()
    _malloc_trim()
    rss_reset = _reset_peak_rss()
    rss_before = _proc_status("VmRSS")
    times: List[float] = []
    for _ in range(repeats):
        ts.zero_grad()
        ts.synchronize()
        start = time.perf_counter()
        ts.step()
        ts.synchronize()
        times.append(time.perf_counter() - start)
        if time_budget_s is not None and sum(times) >= time_budget_s:
            break
    ts.zero_grad()
    steps_hwm = _proc_status("VmHWM") if (rss_reset and times) else None
    out: Dict[str, Any] = {
        "model_card": ts.model_name,
        "architecture": ts.architecture,
        "arguments": ts.arguments,
        "parameters": ts.num_parameters,
        "state_bytes": state_bytes,
        "step_peak_delta_bytes": measured.peak_bytes,
        "peak_allocated_bytes": state_bytes + measured.peak_bytes,
        "cuda_max_memory_allocated": cuda_max,
        "setup_peak_bytes": setup_peak,
        "step_end_bytes": measured.end_bytes,
        "step_time_s": statistics.median(times) if times else measured.elapsed_s,
        "step_times_s": times,
        "profiled_step_s": measured.elapsed_s,
        "setup_s": setup_s,
        "loss": measured.result,
        "rss_before_steps_bytes": rss_before,
        "peak_rss_steps_bytes": steps_hwm,
        "peak_rss_profiled_bytes": hwm_profiled,
        "components": state_components(ts),
        "env": environment(device),
    }
    if breakdown:
        out["breakdown"] = None if live is None else peak_breakdown(ts, live)
    return out


def _malloc_trim() -> None:
    """Return free heap memory to the system (glibc only; a no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    """Restart this process's ``VmHWM`` at its current RSS (Linux >= 4.0); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def state_components(ts: TrainStep) -> Dict[str, int]:
    """Bytes live between steps, by kind, computed from tensor sizes."""
    param_bytes = sum(p.numel() * p.element_size() for p in ts.params)
    opt_bytes = 0
    for state in ts.optimizer.state.values():
        opt_bytes += sum(t.numel() * t.element_size() for t in state.values() if isinstance(t, torch.Tensor))
    comps = {"parameters": param_bytes, "adam_state": opt_bytes}
    comps.update(ts.batch.nbytes())
    return comps


# ---------------------------------------------------------------------------------- breakdown
def live_blocks_at_peak(fn: Callable[[], Any]) -> Dict[str, Any]:
    """Run ``fn`` and list the allocations (made during it) that are live at its peak.

    Uses the same profiler memory events as :func:`~revgnn_dgl.bench.profiling.measure_peak_memory`,
    replayed in time order. CPU only.

    Returns
    -------
    dict
        ``peak_bytes`` (above the level at the start) and ``blocks``: the sizes in bytes of the
        blocks allocated during ``fn`` and still live at the peak, largest first.
    """
    from torch._C import _autograd as _ag
    from torch._C._profiler import (
        ProfilerActivity,
        ProfilerConfig,
        ProfilerState,
        _ExperimentalConfig,
        _ExtraFields_Allocation,
    )

    gc.collect()
    config = ProfilerConfig(ProfilerState.KINETO, False, True, False, False, False, _ExperimentalConfig())
    activities = {ProfilerActivity.CPU}
    _ag._prepare_profiler(config, activities)
    _ag._enable_profiler(config, activities)
    try:
        _ag._enable_record_function(False)  # memory events only (see revgnn_dgl.bench.profiling)
        try:
            fn()
        finally:
            _ag._enable_record_function(True)
    finally:
        profile = _ag._disable_profiler()
    events: List[Tuple[int, int, int]] = []
    stack = list(profile.experimental_event_tree())
    while stack:
        ev = stack.pop()
        stack.extend(ev.children)
        extra = ev.extra_fields
        if type(extra) is _ExtraFields_Allocation and extra.device.type == "cpu":
            events.append((ev.start_time_ns, extra.ptr, extra.alloc_size))
    events.sort(key=lambda e: e[0])  # stable: ties keep the recorded order
    live: Dict[int, int] = {}
    level = top = 0
    top_index = -1
    for i, (_, ptr, size) in enumerate(events):
        if size > 0:
            live[ptr] = size
        elif ptr in live:
            del live[ptr]
        else:
            continue  # a block from before fn: its free does not lower fn's own level
        level += size
        if level > top:
            top, top_index = level, i
    live = {}
    for _, ptr, size in events[: top_index + 1]:
        if size > 0:
            live[ptr] = size
        else:
            live.pop(ptr, None)
    return {"peak_bytes": top, "blocks": sorted(live.values(), reverse=True)}


def peak_breakdown(ts: TrainStep, live: Dict[str, Any]) -> Dict[str, Any]:
    """Label the blocks live at a step's peak by the tensor shape their size matches.

    Shapes tried (float32 unless said): ``E x D`` (the shared edge embedding and gradients of
    its size), ``E x D/C`` (one group's per-edge tensors), ``E x C*D`` (a tiled embedding),
    ``N x D``, ``N x D/C``, ``N x 2D/C``, ``N x D/C int64`` (max-aggregation indices),
    ``N x tasks`` and the size of any parameter (a gradient). Sizes that match several
    shapes take the first; the rest are ``other``.

    Returns
    -------
    dict
        ``state``: the between-steps components (:func:`state_components`); ``step``: label ->
        ``{"count", "bytes"}`` for the step's live blocks at the peak; ``step_peak_delta_bytes``.
    """
    cfg = ts.cfg
    args = ts.arguments
    n, e = ts.batch.graph.num_nodes(), ts.batch.graph.num_edges()
    d = int(args.get("hidden", args.get("hidden_channels", 0)))
    c = int(args.get("groups", 1)) if ts.architecture != "resgnn" else 1
    w = d // c
    shapes = [
        ("E x D", e * d * 4),
        ("E x D/C", e * w * 4),
        ("E x C*D (tiled)", e * c * d * 4),
        ("E x D/C int64", e * w * 8),
        ("E x edge_feats", e * cfg.edge_feats * 4),
        ("N x D", n * d * 4),
        ("N x D/C", n * w * 4),
        ("N x 2D/C", n * 2 * w * 4),
        ("N x D/C int64", n * w * 8),
        ("N x tasks", n * cfg.tasks * 4),
    ]
    by_size: Dict[int, str] = {}
    for label, size in shapes:
        by_size.setdefault(size, label)
    for p in ts.params:
        by_size.setdefault(p.numel() * p.element_size(), "parameter-sized (gradients)")
    step: Dict[str, Dict[str, int]] = defaultdict(lambda: {"count": 0, "bytes": 0})
    for size in live["blocks"]:
        label = by_size.get(size, "other")
        step[label]["count"] += 1
        step[label]["bytes"] += size
    return {
        "state": state_components(ts),
        "step": dict(sorted(step.items(), key=lambda kv: -kv[1]["bytes"])),
        "step_peak_delta_bytes": live["peak_bytes"],
        "sizes": {"N": n, "E": e, "D": d, "C": c},
    }


# -------------------------------------------------------------------------------------- sweep
def config_row(cfg: StepConfig, **extra: Any) -> Dict[str, Any]:
    """The configuration columns of a result row."""
    row = {
        "model": cfg.model,
        "variant": cfg.variant,
        "depth": cfg.depth,
        "hidden": cfg.hidden,
        "groups": cfg.groups,
        "nodes": cfg.nodes,
        "edges": cfg.edges,
        "edge_feats": cfg.edge_feats,
        "species": cfg.species,
        "tasks": cfg.tasks,
        "device": cfg.device,
    }
    row.update(extra)
    return row


def _row_from_report(cfg: StepConfig, report: Dict[str, Any], mmap_threshold: Optional[int]) -> Dict[str, Any]:
    row = config_row(cfg, kind="memory", status=report["status"])
    res = report.get("result") or {}
    args = res.get("arguments", {})
    env = res.pop("env", None) or environment()
    if not res:  # the child died: record the parent's environment and the child's settings
        env["mmap_threshold"] = None if mmap_threshold is None else str(mmap_threshold)
    row.update(
        architecture=res.get("architecture"),
        hidden=args.get("hidden", args.get("hidden_channels", cfg.hidden)),
        groups=args.get("groups", cfg.groups),
        parameters=res.get("parameters"),
        peak_allocated_bytes=res.get("peak_allocated_bytes"),
        state_bytes=res.get("state_bytes"),
        step_peak_delta_bytes=res.get("step_peak_delta_bytes"),
        cuda_max_memory_allocated=res.get("cuda_max_memory_allocated"),
        # Peak RSS of the unprofiled steps; for a child that died, the parent's last sample.
        peak_rss_bytes=res.get("peak_rss_steps_bytes") if res else report.get("max_rss_bytes"),
        peak_rss_profiled_bytes=res.get("peak_rss_profiled_bytes"),
        rss_before_steps_bytes=res.get("rss_before_steps_bytes"),
        rss_before_call_bytes=report.get("max_rss_before_call_bytes"),
        step_time_s=res.get("step_time_s"),
        step_times_s=res.get("step_times_s"),
        profiled_step_s=res.get("profiled_step_s"),
        setup_s=res.get("setup_s"),
        loss=res.get("loss"),
        components=res.get("components"),
        breakdown=res.get("breakdown"),
        message=report.get("message"),
        wall_s=report.get("wall_s"),
    )
    comps = res.get("components") or {}
    if row["peak_allocated_bytes"] is not None and comps:
        # What is left once parameters, their gradients and Adam's moments are taken out:
        # activations and per-step temporaries, the part a reversible model keeps flat in depth.
        model_state = 2 * comps["parameters"] + comps["adam_state"]
        row["model_state_bytes"] = model_state
        row["peak_minus_model_state_bytes"] = row["peak_allocated_bytes"] - model_state
    row.update({k: v for k, v in env.items()})
    return row


def _project(history: Sequence[Tuple[int, float]], depth: int) -> Optional[float]:
    """Linear extrapolation in depth from the two deepest successful points."""
    if len(history) < 2:
        return None
    (d1, m1), (d2, m2) = history[-2], history[-1]
    if d2 == d1:
        return m2
    slope = max(0.0, (m2 - m1) / (d2 - d1))
    return m2 + slope * (depth - d2)


def memory_sweep(
    models: Sequence[str],
    depths: Iterable[int],
    variants: Sequence[str] = ("ours",),
    base: Optional[Dict[str, Any]] = None,
    warmup: int = 1,
    repeats: int = 3,
    threads: Optional[int] = None,
    mem_cap_bytes: Optional[int] = 8 * GiB,
    timeout: Optional[float] = None,
    mmap_threshold: Optional[int] = DEFAULT_MMAP_THRESHOLD,
    breakdown: bool = False,
    time_budget_s: Optional[float] = None,
    on_row: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> List[Dict[str, Any]]:
    """Measure every (model, variant, depth), each in a fresh process, deepest last.

    Parameters
    ----------
    models : sequence of str
        Model or architecture names (see :class:`~revgnn_dgl.bench.workload.StepConfig`).
    depths : iterable of int
        Depths; run in increasing order so that growth can be projected.
    variants : sequence of str
        Execution variants (``ours``, ``disable`` or registered ones,
        :func:`~revgnn_dgl.bench.workload.register_variant`: each child imports the module that
        registered its variant); those unknown or unusable here give ``unavailable`` rows.
    base : dict, optional
        Other :class:`StepConfig` fields (hidden, groups, nodes, edges, device, ...).
    warmup, repeats, threads, breakdown, time_budget_s
        Passed to :func:`measure_step`.
    mem_cap_bytes : int, optional
        The memory cap. A configuration whose peak RSS or allocator peak, projected linearly
        from the two deepest successful ones, exceeds it is not run (status ``skipped``); one
        that exceeds it while running fails its allocation (status ``oom``). Deeper
        configurations of the same series are then skipped. None: no cap.
    timeout : float, optional
        Seconds per configuration (status ``timeout``).
    mmap_threshold : int, optional
        glibc's ``MALLOC_MMAP_THRESHOLD_`` for the children; None keeps glibc's dynamic default
        (peak RSS then drifts upward with depth; see ``benchmarks/README.md``).
    on_row : callable, optional
        Called with each row as soon as it is made (progress, incremental saving).

    Returns
    -------
    list of dict
        One row per configuration (``kind='memory'``).
    """
    base = dict(base or {})
    rows: List[Dict[str, Any]] = []
    depths = sorted(set(int(d) for d in depths))
    measure = dict(warmup=warmup, repeats=repeats, threads=threads, mem_cap_bytes=mem_cap_bytes, breakdown=breakdown,
                   time_budget_s=time_budget_s)  # fmt: skip
    for model in models:
        for variant in variants:
            series = _Series(mem_cap_bytes, variant_available(variant))
            for depth in depths:
                cfg = StepConfig.from_dict({**base, "model": model, "depth": depth, "variant": variant})
                row = series.measure(cfg, measure, timeout, mmap_threshold)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows


class _Series:
    """One (model, variant) series of :func:`memory_sweep`, deepest last: a depth projected past the cap,
    or after one that failed, is skipped."""

    def __init__(self, mem_cap_bytes: Optional[int], why_not: Optional[str]) -> None:
        self.cap, self.why_not = mem_cap_bytes, why_not
        self.history: List[Tuple[int, float]] = []
        self.failed: Optional[str] = None

    def measure(
        self, cfg: StepConfig, measure: Dict[str, Any], timeout: Optional[float], mmap_threshold: Optional[int]
    ) -> Dict[str, Any]:
        cap, history = self.cap, self.history
        projected = _project(history, cfg.depth)
        if self.why_not or self.failed or (cap and projected is not None and projected > cap):
            if self.why_not:
                status, message = "unavailable", self.why_not
            elif self.failed:
                status, message = "skipped", self.failed
            else:
                status = "skipped"
                cap_gib = (cap or 0) / GiB  # projected and cap are set here
                message = (
                    f"projected peak {(projected or 0) / GiB:.2f} GiB (linear in depth from depths "
                    f"{history[-2][0]} and {history[-1][0]}) exceeds the {cap_gib:.2f} GiB cap"
                )
                self.failed = f"a shallower configuration was projected past the {cap_gib:.2f} GiB cap"
            row = config_row(cfg, kind="memory", status=status, message=message, projected_peak_bytes=projected)
            row.update(environment())
        else:
            report = run_in_subprocess(_TARGET, kwargs=dict(config=cfg.to_dict(), **measure), env=CHILD_ENV,
                                       timeout=timeout, mmap_threshold=mmap_threshold)  # fmt: skip
            row = _row_from_report(cfg, report, mmap_threshold)
            row["projected_peak_bytes"] = projected
            if row["status"] == "oom" and cap:
                row["message"] = f"exceeded the {cap / GiB:.2f} GiB cap: {row['message']}"
            if row["status"] == "ok":
                history.append((cfg.depth, max(row["peak_rss_bytes"] or 0, row["peak_allocated_bytes"] or 0)))
            elif row["status"] in ("oom", "timeout"):
                self.failed = f"depth {cfg.depth} already ended in {row['status']}"
        row["mem_cap_bytes"] = cap
        return row
