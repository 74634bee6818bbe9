"""Time per training step of execution variants, side by side in one process.

:func:`speed_compare` builds every variant of one model from the same weights on the same
graph (see :mod:`revgnn_dgl.bench.workload`), warms each up, then times steps in
interleaved rounds (variant order rotated each round), so that a change in the machine's load
hits all variants alike; it reports the median per variant and its ratio to ``ours``. The
first step's loss is recorded for each variant: equal losses show that the variants compute
the same function.

:func:`run_speed` does the same in a fresh process, with ``OMP_WAIT_POLICY=PASSIVE``: on a
machine whose cores are shared with other jobs, OpenMP's default busy-waiting made a 2-thread
step of a small graph 28 times slower than 1 thread here (a parallel region waits for a thread
whose core another process holds); passive waiting removes that pathology.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from .. import zoo
from ..env import CHILD_ENV, environment
from ..train.device import resolve_device
from .memory import config_row
from .profiling import DEFAULT_MMAP_THRESHOLD, run_in_subprocess
from .workload import StepConfig, TrainStep, make_batch, model_arguments, variant_available, variant_module

__all__ = ["speed_compare", "run_speed", "op_profile"]


def op_profile(ts: TrainStep, top: int = 12) -> List[Dict[str, Any]]:
    """Operators taking the most self CPU time in one step (``torch.profiler``), for the report."""
    from torch.profiler import ProfilerActivity, profile

    ts.zero_grad()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        ts.step()
    ts.zero_grad()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
    return [{"op": e.key, "calls": e.count, "self_s": e.self_cpu_time_total / 1e6} for e in events]


def speed_compare(
    base: Dict[str, Any],
    depths: Sequence[int],
    variants: Sequence[str] = ("ours", "disable"),
    warmup: int = 1,
    repeats: int = 5,
    threads: Optional[int] = None,
    profile: bool = False,
    variant_modules: Optional[Mapping[str, str]] = None,
) -> List[Dict[str, Any]]:
    """Time one training step of each variant at each depth, in this process.

    Parameters
    ----------
    base : dict
        :class:`~revgnn_dgl.bench.workload.StepConfig` fields shared by all (``model``,
        ``hidden``, ``groups``, ``nodes``, ``edges``, ``device``, ...).
    depths : sequence of int
        Depths to compare at.
    variants : sequence of str
        Variants (``ours``, ``disable`` or registered ones,
        :func:`~revgnn_dgl.bench.workload.register_variant`); ``ours`` is the reference of the
        ratios.
    warmup : int
        Untimed steps per variant first.
    repeats : int
        Timed rounds; each round times one step of every variant.
    threads : int, optional
        ``torch.set_num_threads``.
    profile : bool
        Add the top operators of one more step per variant (``op_profile``).
    variant_modules : mapping, optional
        Variant -> the module that registers it, for variants registered in another process
        (:func:`run_speed` passes its own); imported before the variant is built.

    Returns
    -------
    list of dict
        One row per (depth, variant), ``kind='speed'``: ``step_time_s`` (median),
        ``step_times_s``, ``time_ratio_to_ours``, ``first_loss``, ``parameters`` and the
        environment.
    """
    if threads:
        torch.set_num_threads(int(threads))
    rows: List[Dict[str, Any]] = []
    for depth in depths:
        cfg0 = StepConfig.from_dict({**base, "depth": int(depth), "variant": "ours"})
        device = resolve_device(cfg0.device)
        batch = make_batch(cfg0.nodes, cfg0.edges, cfg0.edge_feats, cfg0.species, cfg0.tasks, cfg0.seed, device)
        name, _, args = model_arguments(cfg0)
        torch.manual_seed(cfg0.seed)
        model = zoo.create_model(name, **args)
        steps: Dict[str, TrainStep] = {}
        depth_rows = {v: _prepared(cfg0, v, variant_modules, batch, model, warmup, steps) for v in variants}
        times = _timed(steps, repeats)
        ref = statistics.median(times["ours"]) if times.get("ours") else None
        env = environment(device)
        for variant, row in depth_rows.items():
            if variant in times and times[variant]:
                med = statistics.median(times[variant])
                row.update(
                    step_time_s=med,
                    step_time_min_s=min(times[variant]),
                    step_times_s=times[variant],
                    time_ratio_to_ours=(med / ref) if ref else None,
                )
                if profile:
                    row["op_profile"] = op_profile(steps[variant])
            row.update(env)
            rows.append(row)
        del steps
    return rows


def _prepared(cfg0: StepConfig, variant: str, variant_modules: Optional[Mapping[str, str]], batch: Any, model: Any,
              warmup: int, steps: Dict[str, TrainStep]) -> Dict[str, Any]:  # fmt: skip
    """The row of ``variant`` at ``cfg0``'s depth; its step, built on the shared model and batch and warmed up,
    goes into ``steps`` (not when the variant is unavailable or fails to build)."""
    module = (variant_modules or {}).get(variant)
    cfg = StepConfig.from_dict({**cfg0.to_dict(), "variant": variant, "variant_module": module})
    row = config_row(cfg, kind="speed")
    why = variant_available(variant, cfg.variant_module)
    if why:
        row.update(status="unavailable", message=why)
        return row
    try:
        ts = TrainStep(cfg, batch=batch, model=model)
        ts.prime()
        first_loss = ts.step()  # same weights, mask and data: same loss
        ts.zero_grad()
        for _ in range(max(0, warmup - 1)):
            ts.step()
            ts.zero_grad()
        steps[variant] = ts
        row.update(status="ok", parameters=ts.num_parameters, first_loss=first_loss)
    except (RuntimeError, ValueError) as err:
        row.update(status="error", message=f"{type(err).__name__}: {err}")
    return row


def _timed(steps: Dict[str, TrainStep], repeats: int) -> Dict[str, List[float]]:
    """Each step's times over ``repeats`` rounds; each round times one step of every variant, starting
    one further along each round."""
    times: Dict[str, List[float]] = {v: [] for v in steps}
    order = list(steps)
    for r in range(repeats):
        for variant in order[r % len(order) :] + order[: r % len(order)] if order else []:
            ts = steps[variant]
            ts.zero_grad()
            ts.synchronize()
            t0 = time.perf_counter()
            ts.step()
            ts.synchronize()
            times[variant].append(time.perf_counter() - t0)
    return times


def run_speed(
    base: Dict[str, Any],
    depths: Sequence[int],
    variants: Sequence[str] = ("ours", "disable"),
    warmup: int = 1,
    repeats: int = 5,
    threads: Optional[int] = None,
    profile: bool = False,
    timeout: Optional[float] = None,
    mmap_threshold: Optional[int] = DEFAULT_MMAP_THRESHOLD,
) -> List[Dict[str, Any]]:
    """:func:`speed_compare` in one fresh process (all variants together), never raising.

    A child that fails gives one ``error``/``oom``/``timeout`` row per (depth, variant). The
    child imports the modules that registered the variants here before it builds them.
    """
    modules = {v: variant_module(v) for v in variants if variant_module(v)}
    report = run_in_subprocess(
        "revgnn_dgl.bench.speed:speed_compare",
        kwargs=dict(
            base=base,
            depths=list(depths),
            variants=list(variants),
            warmup=warmup,
            repeats=repeats,
            threads=threads,
            profile=profile,
            variant_modules=modules,
        ),
        env=CHILD_ENV,
        timeout=timeout,
        mmap_threshold=mmap_threshold,
    )
    if report["status"] == "ok":
        return report["result"]
    rows = []
    env = environment()
    for depth in depths:
        for variant in variants:
            cfg = StepConfig.from_dict({**base, "depth": int(depth), "variant": variant})
            row = config_row(cfg, kind="speed", status=report["status"], message=report.get("message"))
            row.update(env)
            rows.append(row)
    return rows
