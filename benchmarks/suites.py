"""The benchmark suites behind ``benchmarks/*.py`` and ``benchmarks/results``.

Each suite is a preset of :func:`revgnn_dgl.bench.memory.memory_sweep` and
:func:`revgnn_dgl.bench.speed.run_speed` calls plus a summary that checks the targets:

* :func:`memory_vs_depth` -- ResGNN, RevGNN, WT-RevGNN (and DEQ-GNN when the zoo has it) at
  equal width D=80 on one generated graph, depths 2 to 1001.
* :func:`paper_scale` -- RevGNN-Deep, RevGNN-Wide and ResGNN-112 on a graph the size of one
  of the paper's training batches, with what the peak is made of.
* :func:`alternatives` -- our reversible block against ``disable=True``, DGL's
  ``GroupRevRes`` and PyG's ``GroupAddRev`` (:mod:`alternatives_variants`): time in one
  process, memory in fresh processes.
* :func:`glibc_trap` -- peak RSS of the same runs with glibc's dynamic mmap threshold and
  with it fixed.

Rows are rewritten to ``<out>/<suite>.csv|json`` after every configuration, so a suite that is
stopped keeps what it measured. :func:`report` prints the tables of ``benchmarks/README.md`` from
them. The entry scripts (``python benchmarks/memory_vs_depth.py ...``) call :func:`main`.

An experiment, not part of the package: it imports :mod:`revgnn_dgl`, never the reverse. The
``dgl`` and ``pyg`` variants of :func:`alternatives` and :func:`glibc_trap` come from
:mod:`alternatives_variants`, which registers them with
:func:`revgnn_dgl.bench.workload.register_variant`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import alternatives_variants  # noqa: F401  (registers the dgl and pyg variants)

from revgnn_dgl import zoo
from revgnn_dgl.bench.cli import parse_depths
from revgnn_dgl.bench.memory import GiB, MiB, memory_sweep
from revgnn_dgl.bench.plots import plot_memory, plot_paper_comparison, plot_time
from revgnn_dgl.bench.results import markdown_table, read_rows, write_rows
from revgnn_dgl.bench.speed import run_speed

__all__ = [
    "SWEEP_GRAPH",
    "PAPER_BATCH",
    "PAPER_GB",
    "memory_vs_depth",
    "paper_scale",
    "paper_scale_full",
    "summarize_paper_scale",
    "alternatives",
    "glibc_trap",
    "report",
    "replot",
    "main",
]

RESULTS = Path(__file__).resolve().parent / "results"
#: The graph of the depth sweeps: small enough that a 1001-layer step takes minutes on one core.
SWEEP_GRAPH: Dict[str, Any] = dict(nodes=5000, edges=50000, edge_feats=8, species=8, tasks=112)
#: One of the paper's training batches: ogbn-proteins (132,534 nodes, 39,561,252 directed edges)
#: cut into 10 random parts keeps 1/10 of the nodes and about 1/100 of the edges in each part.
PAPER_BATCH: Dict[str, Any] = dict(nodes=13250, edges=790000, edge_feats=8, species=8, tasks=112)
#: The paper's GPU memory for one training batch (GB; unit not stated, compared as 1e9 bytes,
#: the stricter reading).
PAPER_GB = {"revgnn-deep": 2.86, "revgnn-wide": 7.91, "resgnn-112": 27.1}
_PAPER_TITLE = (
    f"one training step on a paper-sized batch ({PAPER_BATCH['nodes']:,} nodes, {PAPER_BATCH['edges']:,} edges)"
)


def _collector(out: Path, name: str) -> "tuple[List[Dict[str, Any]], Callable[[Dict[str, Any]], None]]":
    rows: List[Dict[str, Any]] = []

    def on_row(row: Dict[str, Any]) -> None:
        rows.append(row)
        t = row.get("step_time_s")
        peak = row.get("peak_allocated_bytes")
        print(
            f"[{name}] {row['model']} [{row['variant']}] depth {row['depth']}: {row['status']}"
            + (f", peak {peak / MiB:,.1f} MiB" if peak else "")
            + (f", rss {row['peak_rss_bytes'] / MiB:,.1f} MiB" if row.get("peak_rss_bytes") else "")
            + (f", step {t:.2f} s" if t else "")
            + (f" ({row.get('message')})" if row["status"] != "ok" else ""),
            flush=True,
        )
        write_rows(rows, out, name)

    return rows, on_row


def _write_summary(out: Path, name: str, summary: Dict[str, Any]) -> Path:
    path = out / f"{name}_summary.json"
    with open(path, "w") as fh:
        json.dump(summary, fh, indent=1, default=str)
        fh.write("\n")
    return path


def _ok(rows: Sequence[Dict[str, Any]], model: str, variant: str = "ours") -> List[Dict[str, Any]]:
    return sorted(
        (r for r in rows if r["model"] == model and r["variant"] == variant and r["status"] == "ok"),
        key=lambda r: r["depth"],
    )


def _at(rows: Sequence[Dict[str, Any]], depth: int) -> Optional[Dict[str, Any]]:
    return next((r for r in rows if r["depth"] == depth), None)


# ------------------------------------------------------------------------------ memory vs depth
def memory_vs_depth(
    out: Path = RESULTS,
    depths: str = "2,4,...,1001",
    deq_max_depth: int = 256,
    graph: Optional[Dict[str, Any]] = None,
    hidden: int = 80,
    threads: int = 1,
    mem_cap_gb: float = 8.0,
    name: str = "memory_vs_depth",
    revgat_max_depth: int = 128,
    only: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """ResGNN vs RevGNN vs WT-RevGNN (vs DEQ-GNN, vs RevGAT) at equal width, peak memory against depth.

    DEQ-GNN's "depth" is its solver's iteration count (``tol=0`` makes it use them all), run
    up to ``deq_max_depth``: it has converged long before, and each iteration costs about as
    much as a RevGNN layer. RevGAT (``revgat-arxiv``'s architecture with one head of ``hidden``
    channels, so its blocks are as wide as RevGNN's) runs up to ``revgat_max_depth``. ``only`` measures just those models and keeps the
    other models' rows of an earlier run in ``out``.
    """
    out = Path(out)
    graph = dict(graph or SWEEP_GRAPH)
    base = dict(hidden=hidden, groups=2, **graph)
    rows, on_row = _collector(out, name)
    if only:
        previous = out / f"{name}.json"
        rows.extend(r for r in (read_rows(previous) if previous.exists() else []) if r["model"] not in only)
    wanted = lambda model: not only or model in only  # noqa: E731
    common = dict(
        warmup=0, repeats=3, time_budget_s=60.0, threads=threads, mem_cap_bytes=int(mem_cap_gb * GiB), on_row=on_row
    )
    ds = parse_depths(depths)
    plain = [m for m in ("resgnn-112", "revgnn-112", "wt-revgnn-80") if wanted(m)]
    if plain:
        memory_sweep(plain, ds, base=base, **common)
    deq = next((m for m in ("deq-gnn-64", "deq-gnn") if m in zoo.list_models()), None)
    if deq is not None and wanted(deq):
        memory_sweep([deq], [d for d in ds if d <= deq_max_depth], base={**base, "extra": {"tol": 0.0}}, **common)
    if wanted("revgat-arxiv"):
        memory_sweep(["revgat-arxiv"], [d for d in ds if 3 <= d <= revgat_max_depth], base={**base, "extra": {"heads": 1}},
                     **common)  # fmt: skip
    write_rows(rows, out, name)
    title = (
        f"one training step, D={hidden}, C=2, {graph['nodes']:,} nodes, {graph['edges']:,} edges, "
        f"CPU, {threads} thread(s)"
    )
    plot_memory(rows, out / f"{name}.png", title=title)
    plot_time(rows, out / f"{name}_time.png", title=title)

    summary: Dict[str, Any] = {"graph": graph, "hidden": hidden, "targets": {}}
    rev = _ok(rows, "revgnn-112")
    lo, hi = _at(rev, 8), (rev[-1] if rev else None)
    if lo and hi:
        summary["targets"]["revgnn_peak_ratio_deepest_vs_8"] = {
            "deepest": hi["depth"],
            "peak_ratio": hi["peak_allocated_bytes"] / lo["peak_allocated_bytes"],
            "peak_minus_model_state_ratio": hi["peak_minus_model_state_bytes"] / lo["peak_minus_model_state_bytes"],
            "target": 1.2,
        }
    res = _ok(rows, "resgnn-112")
    if len(res) >= 3:
        # Linear growth: per-layer increments nearly constant once the fixed part is small.
        steps = [
            (b["peak_allocated_bytes"] - a["peak_allocated_bytes"]) / (b["depth"] - a["depth"])
            for a, b in zip(res, res[1:])
        ]
        summary["targets"]["resgnn_bytes_per_layer"] = steps
        summary["targets"]["resgnn_deepest_measured"] = res[-1]["depth"]
    summary["table"] = [
        {
            k: r.get(k)
            for k in (
                "model",
                "depth",
                "status",
                "parameters",
                "peak_allocated_bytes",
                "peak_minus_model_state_bytes",
                "peak_rss_bytes",
                "step_time_s",
                "message",
            )
        }
        for r in rows
    ]
    _write_summary(out, name, summary)
    print(
        markdown_table(
            rows,
            [
                "model",
                "depth",
                "status",
                "parameters",
                "peak_allocated_bytes",
                "peak_minus_model_state_bytes",
                "peak_rss_bytes",
                "step_time_s",
            ],
        )
    )
    return summary


# ----------------------------------------------------------------------------------- paper scale
def paper_scale(
    out: Path = RESULTS,
    deep_depths: str = "2,8,32",
    wide_depths: str = "2,8,16",
    resgnn_depths: str = "2,8,32,112",
    threads: int = 1,
    mem_cap_gb: float = 12.0,
    timeout: Optional[float] = None,
    name: str = "paper_scale",
) -> Dict[str, Any]:
    """One training step of RevGNN-Deep, RevGNN-Wide and ResGNN-112 on a paper-sized batch.

    Reduced depths of the reversible models (a full 1001-layer step takes most of an hour on
    one core; :func:`paper_scale_full` measures the full depths, one model per process), with
    what the peak is made of (``breakdown``) and one unprofiled timed step each. ResGNN-112 is
    measured up to its full depth. Ends with :func:`summarize_paper_scale`.
    """
    out = Path(out)
    rows, on_row = _collector(out, name)
    common = dict(
        warmup=0,
        repeats=1,
        threads=threads,
        mem_cap_bytes=int(mem_cap_gb * GiB),
        breakdown=True,
        timeout=timeout,
        on_row=on_row,
    )
    for model, depths in (("revgnn-deep", deep_depths), ("revgnn-wide", wide_depths), ("resgnn-112", resgnn_depths)):
        memory_sweep([model], parse_depths(depths), base=dict(PAPER_BATCH), **common)
    write_rows(rows, out, name)
    return summarize_paper_scale(out, name)


def paper_scale_full(
    model: str,
    out: Path = RESULTS,
    threads: int = 1,
    mem_cap_gb: float = 12.0,
    timeout: Optional[float] = None,
    name: str = "paper_scale",
) -> Dict[str, Any]:
    """One training step of ``model`` at its card's full depth on the paper-sized batch.

    Only the measured step runs: no breakdown pass and no unprofiled repeat, each of which
    would add most of another hour. Its ``step_time_s`` is therefore the measured step's time
    (``time_source='profiled'``; the profiler records memory events only, which costs little
    next to the step). Rows go to ``<name>_full_<model>.csv|json``,
    so the two models can be measured by two processes at once; the summary is then redone
    from all of ``<name>*.json``.
    """
    if model not in PAPER_GB:
        raise ValueError(f"unknown paper-scale model {model!r}; choose from {sorted(PAPER_GB)}")
    out = Path(out)
    file_name = f"{name}_full_{model}"
    _, on_row = _collector(out, file_name)
    depth = zoo.get_config(model)["arguments"]["num_layers"]
    for row in memory_sweep(
        [model],
        [depth],
        base=dict(PAPER_BATCH),
        warmup=0,
        repeats=0,
        breakdown=False,
        threads=threads,
        mem_cap_bytes=int(mem_cap_gb * GiB),
        timeout=timeout,
    ):
        row["time_source"] = "profiled"
        on_row(row)
    return summarize_paper_scale(out, name)


def _paper_rows(out: Path, name: str) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    for path in [out / f"{name}.json", *sorted(out.glob(f"{name}_full_*.json"))]:
        if path.exists():
            rows.extend(read_rows(path))
    return rows


def summarize_paper_scale(out: Path = RESULTS, name: str = "paper_scale") -> Dict[str, Any]:
    """Summary, plots and table of the paper-scale rows (reduced and full depths) in ``out``.

    For a reversible model without a full-depth row, the full-depth peak is extrapolated as
    (deepest measured peak minus parameters, gradients and Adam state: flat in depth) +
    (parameters, gradients and Adam state at full depth: exact from the parameter count); a
    measured full-depth row, where there is one, is set against that extrapolation.
    """
    out = Path(out)
    rows = _paper_rows(out, name)
    plot_memory(
        rows,
        out / f"{name}.png",
        title=(f"paper-scale batch ({PAPER_BATCH['nodes']:,} nodes, {PAPER_BATCH['edges']:,} edges), one step, CPU"),
    )
    summary: Dict[str, Any] = {"batch": PAPER_BATCH, "models": {}}
    for model in PAPER_GB:
        ok = _ok(rows, model)
        if not ok:
            continue
        card = zoo.get_config(model)
        L = card["arguments"]["num_layers"]
        entry: Dict[str, Any] = {
            "full_depth": L,
            "card_parameters": card.get("parameters"),
            "paper_gb": PAPER_GB.get(model),
            "measured_depths": [r["depth"] for r in ok],
        }
        full_row = _at(ok, L)
        if full_row is not None:
            entry["measured_full_depth_peak_bytes"] = full_row["peak_allocated_bytes"]
            entry["measured_full_depth_parameters"] = full_row["parameters"]
            entry["measured_full_depth_step_s"] = full_row["step_time_s"]
            entry["measured_full_depth_time_source"] = full_row.get("time_source", "unprofiled")
        # Extrapolate from the reduced depths only, so that a full-depth row checks it.
        reduced = [r for r in ok if r["depth"] != L]
        if len(reduced) >= 2:
            a, b = reduced[0], reduced[-1]
            # Parameters, gradients and Adam state are exactly linear in depth.
            per_layer = (b["model_state_bytes"] - a["model_state_bytes"]) / (b["depth"] - a["depth"])
            state_full = b["model_state_bytes"] + per_layer * (L - b["depth"])
            flat = [r["peak_minus_model_state_bytes"] for r in ok]
            entry.update(
                peak_minus_model_state_bytes={r["depth"]: r["peak_minus_model_state_bytes"] for r in ok},
                peak_minus_model_state_spread=max(flat) / min(flat),
                model_state_bytes_at_full_depth=state_full,
            )
            if model != "resgnn-112":
                entry["extrapolated_full_depth_peak_bytes"] = (
                    max(r["peak_minus_model_state_bytes"] for r in reduced) + state_full
                )
            else:
                slope = (b["peak_allocated_bytes"] - a["peak_allocated_bytes"]) / (b["depth"] - a["depth"])
                entry["extrapolated_full_depth_peak_bytes"] = b["peak_allocated_bytes"] + slope * (L - b["depth"])
            entry["seconds_per_layer"] = b["step_time_s"] / b["depth"]
        best = entry.get("measured_full_depth_peak_bytes", entry.get("extrapolated_full_depth_peak_bytes"))
        if best is not None and entry["paper_gb"]:
            entry["peak_gb"] = best / 1e9
            entry["peak_measured"] = "measured_full_depth_peak_bytes" in entry
            entry["below_paper"] = best < entry["paper_gb"] * 1e9
        with_breakdown = [r for r in ok if r.get("breakdown")]
        if with_breakdown:
            entry["breakdown_depth"] = with_breakdown[-1]["depth"]
            entry["breakdown_at_deepest"] = with_breakdown[-1]["breakdown"]
        summary["models"][model] = entry
    _write_summary(out, name, summary)
    plot_paper_comparison(summary, out / f"{name}_vs_paper.png", title=_PAPER_TITLE)
    print(
        markdown_table(
            rows,
            [
                "model",
                "depth",
                "status",
                "parameters",
                "peak_allocated_bytes",
                "state_bytes",
                "step_peak_delta_bytes",
                "peak_minus_model_state_bytes",
                "peak_rss_bytes",
                "step_time_s",
            ],
        )
    )
    return summary


# ---------------------------------------------------------------------------------- alternatives
def alternatives(
    out: Path = RESULTS,
    model: str = "revgnn-deep",
    configs: Sequence[Dict[str, Any]] = (
        {"graph": "sweep", "depths": [16]},
        {"graph": "paper", "depths": [4]},
    ),
    variants: Sequence[str] = ("ours", "disable", "dgl", "pyg"),
    repeats: int = 5,
    threads: int = 1,
    name: str = "alternatives",
) -> Dict[str, Any]:
    """Our block vs ``disable=True`` vs DGL's ``GroupRevRes`` vs PyG's ``GroupAddRev``.

    Same architecture (``model``'s, D=80, C=2), same weights, same graph, same depth: times
    interleaved in one process (:func:`run_speed`), then each variant's memory in its own
    fresh process.
    """
    out = Path(out)
    graphs = {"sweep": SWEEP_GRAPH, "paper": PAPER_BATCH}
    rows: List[Dict[str, Any]] = []

    def add(new: List[Dict[str, Any]], graph_name: str, kind: str, result: Callable[[Dict[str, Any]], str]) -> None:
        for r in new:
            r["graph"] = graph_name
            print(
                f"[{name}] {kind} {graph_name} depth {r['depth']} {r['variant']}: {r['status']} {result(r)}", flush=True
            )
        rows.extend(new)
        write_rows(rows, out, name)  # after each half, so a stopped run keeps what it measured

    for cfg in configs:
        graph = graphs[cfg["graph"]]
        add(
            run_speed({"model": model, **graph}, cfg["depths"], variants, warmup=1, repeats=repeats, threads=threads),
            cfg["graph"],
            "speed",
            lambda r: f"{r.get('step_time_s')} s, x{r.get('time_ratio_to_ours')}",
        )
        add(
            memory_sweep(
                [model],
                cfg["depths"],
                variants,
                base=dict(graph),
                warmup=0,
                repeats=0,
                threads=threads,
                mem_cap_bytes=12 * GiB,
            ),
            cfg["graph"],
            "memory",
            lambda r: f"{(r.get('peak_allocated_bytes') or 0) / MiB:,.1f} MiB",
        )

    table = []
    for cfg in configs:
        for depth in cfg["depths"]:
            for v in variants:
                sp = next(
                    (
                        r
                        for r in rows
                        if r["kind"] == "speed"
                        and r["graph"] == cfg["graph"]
                        and r["depth"] == depth
                        and r["variant"] == v
                    ),
                    {},
                )
                mem = next(
                    (
                        r
                        for r in rows
                        if r["kind"] == "memory"
                        and r["graph"] == cfg["graph"]
                        and r["depth"] == depth
                        and r["variant"] == v
                    ),
                    {},
                )
                table.append(
                    {
                        "graph": cfg["graph"],
                        "nodes": sp.get("nodes"),
                        "edges": sp.get("edges"),
                        "depth": depth,
                        "variant": v,
                        "status": sp.get("status"),
                        "step_time_s": sp.get("step_time_s"),
                        "time_ratio_to_ours": sp.get("time_ratio_to_ours"),
                        "first_loss": sp.get("first_loss"),
                        "peak_allocated_bytes": mem.get("peak_allocated_bytes"),
                        "peak_minus_model_state_bytes": mem.get("peak_minus_model_state_bytes"),
                        "peak_rss_bytes": mem.get("peak_rss_bytes"),
                    }
                )
    summary = {"model": model, "table": table}
    for t in table:
        if t["variant"] == "disable" and t["time_ratio_to_ours"]:
            summary.setdefault("ours_over_disable", {})[f"{t['graph']}@{t['depth']}"] = 1 / t["time_ratio_to_ours"]
    _write_summary(out, name, summary)
    print(
        markdown_table(
            table,
            [
                "graph",
                "depth",
                "variant",
                "step_time_s",
                "time_ratio_to_ours",
                "first_loss",
                "peak_allocated_bytes",
                "peak_minus_model_state_bytes",
            ],
        )
    )
    return summary


# ------------------------------------------------------------------------------------ glibc trap
def glibc_trap(
    out: Path = RESULTS,
    model: str = "revgnn-deep",
    depths: Sequence[int] = (4, 128),
    variants: Sequence[str] = ("dgl", "ours"),
    graph: Optional[Dict[str, Any]] = None,
    threads: int = 1,
    name: str = "glibc_trap",
) -> Dict[str, Any]:
    """Peak RSS with glibc's dynamic mmap threshold vs fixed ones, same runs otherwise.

    65536 (the default of :func:`revgnn_dgl.bench.profiling.run_in_subprocess`) stops the dynamic
    threshold from sending large blocks to the heap; 4096 also maps the small gradient tensors
    (12.8 KB at D=80) separately, which removes most of the remaining heap fragmentation.
    """
    out = Path(out)
    graph = dict(graph or SWEEP_GRAPH)
    rows: List[Dict[str, Any]] = []
    settings = (("dynamic (glibc default)", None), ("fixed 65536", 65536), ("fixed 4096", 4096))
    for label, threshold in settings:
        new = memory_sweep(
            [model],
            depths,
            variants,
            base=dict(graph),
            warmup=0,
            repeats=2,
            threads=threads,
            mem_cap_bytes=None,
            mmap_threshold=threshold,
        )
        for r in new:
            r["mmap_setting"] = label
            print(
                f"[{name}] {label} {r['variant']} depth {r['depth']}: rss {(r.get('peak_rss_bytes') or 0) / MiB:,.1f}"
                f" MiB, allocated {(r.get('peak_allocated_bytes') or 0) / MiB:,.1f} MiB",
                flush=True,
            )
        rows.extend(new)
        write_rows(rows, out, name)
    table = []
    for label, _ in settings:
        for v in variants:
            sel = sorted(
                (r for r in rows if r["mmap_setting"] == label and r["variant"] == v), key=lambda r: r["depth"]
            )
            if len(sel) >= 2 and all(r["status"] == "ok" for r in sel):
                lo, hi = sel[0], sel[-1]
                base_rss = lo["rss_before_call_bytes"] or 0  # interpreter and imports
                table.append(
                    {
                        "mmap_threshold": label,
                        "variant": v,
                        "depths": f"{lo['depth']} -> {hi['depth']}",
                        "peak_rss_lo_bytes": lo["peak_rss_bytes"],
                        "peak_rss_hi_bytes": hi["peak_rss_bytes"],
                        "rss_growth_above_imports": (hi["peak_rss_bytes"] - base_rss)
                        / max(1, lo["peak_rss_bytes"] - base_rss),
                        "peak_allocated_lo_bytes": lo["peak_allocated_bytes"],
                        "peak_allocated_hi_bytes": hi["peak_allocated_bytes"],
                    }
                )
    summary = {"graph": graph, "model": model, "table": table}
    _write_summary(out, name, summary)
    print(markdown_table(table, list(table[0]) if table else ["mmap_threshold"]))
    return summary


SUITES = ("memory_vs_depth", "paper_scale", "alternatives", "glibc_trap", "report")


def fresh_results_folder(suite: str) -> Path:
    """``runs/benchmarks/<suite>-<time>`` under the current folder: a reproduction's default, so
    that it never overwrites the committed ``benchmarks/results`` (pass ``--out benchmarks/results``
    to update those on purpose)."""
    return Path("runs") / "benchmarks" / f"{suite}-{time.strftime('%Y%m%d-%H%M%S')}"


def main(suite: str, argv: Optional[Sequence[str]] = None) -> None:
    """``python benchmarks/<suite>.py [options]``: ``main('memory_vs_depth', ['--out', DIR, ...])``."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; one of {', '.join(SUITES)}")
    measures = suite != "report"
    parser = argparse.ArgumentParser(
        prog=f"benchmarks/{suite}.py", description=f"The {suite} suite (see benchmarks/README.md)."
    )
    parser.add_argument("--out", type=Path, default=None,
                        help=("Results folder (default: a new runs/benchmarks/SUITE-TIME, never the committed "
                              "benchmarks/results; name that to update it)." if measures else
                              "Results folder to report on (default: the committed benchmarks/results)."))  # fmt: skip
    if suite != "report":
        parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared).")
    if suite == "paper_scale":
        parser.add_argument("--full-depth", metavar="MODEL", choices=sorted(PAPER_GB),
                            help="measure only MODEL at its full depth (most of an hour or more).")  # fmt: skip
        parser.add_argument("--timeout", type=float, default=None, help="seconds per configuration.")
    if suite == "memory_vs_depth":
        parser.add_argument("--only", action="append", metavar="MODEL",
                            help="measure only MODEL (repeatable), keeping the other rows in --out.")  # fmt: skip
    args = parser.parse_args(argv)
    args.suite = suite
    if args.out is None:
        args.out = fresh_results_folder(suite) if measures else RESULTS
    if measures:
        print(f"results go to {args.out}")
    if args.suite == "memory_vs_depth":
        memory_vs_depth(args.out, threads=args.threads, only=args.only)
    elif args.suite == "paper_scale":
        if args.full_depth:
            paper_scale_full(args.full_depth, args.out, threads=args.threads, timeout=args.timeout)
        else:
            paper_scale(args.out, threads=args.threads, timeout=args.timeout)
    elif args.suite == "alternatives":
        alternatives(args.out, threads=args.threads)
    elif args.suite == "glibc_trap":
        glibc_trap(args.out, threads=args.threads)
    else:
        replot(args.out)
        print(report(args.out))


# ---------------------------------------------------------------------------------------- report
def replot(out: Path = RESULTS) -> List[Path]:
    """Redraw the suites' plots from their JSON rows (no measuring)."""
    out = Path(out)
    made: List[Path] = []
    path = out / "memory_vs_depth.json"
    if path.exists():
        rows = read_rows(path)
        r0 = rows[0]
        title = (
            f"one training step, D={r0['hidden']}, C=2, {r0['nodes']:,} nodes, {r0['edges']:,} edges, "
            f"CPU ({r0.get('cpu_model')}), {r0.get('threads')} thread(s)"
        )
        made += [
            plot_memory(rows, out / "memory_vs_depth.png", title=title),
            plot_time(rows, out / "memory_vs_depth_time.png", title=title),
        ]
    paper_rows = _paper_rows(out, "paper_scale")
    if paper_rows:
        made.append(
            plot_memory(
                paper_rows,
                out / "paper_scale.png",
                title=(
                    f"paper-scale batch ({PAPER_BATCH['nodes']:,} nodes, {PAPER_BATCH['edges']:,} edges), one step, CPU"
                ),
            )
        )
    path = out / "paper_scale_summary.json"
    if path.exists():
        made.append(
            plot_paper_comparison(json.loads(path.read_text()), out / "paper_scale_vs_paper.png", title=_PAPER_TITLE)
        )
    return made


def _mib(b: Optional[float]) -> str:
    return "" if b is None else f"{b / MiB:,.1f}"


def report(out: Path = RESULTS) -> str:
    """Markdown tables of whatever suites have results in ``out`` (for ``benchmarks/README.md``)."""
    out = Path(out)
    parts: List[str] = []
    path = out / "memory_vs_depth.json"
    if path.exists():
        rows = read_rows(path)
        models = list(dict.fromkeys(r["model"] for r in rows))
        depths = sorted({r["depth"] for r in rows})
        head = (
            ["depth"]
            + [f"{m} peak (MiB)" for m in models]
            + ["revgnn-112 peak − model state (MiB)"]
            + [f"{m} step (s)" for m in models]
        )
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for d in depths:
            cells = [str(d)]
            by = {r["model"]: r for r in rows if r["depth"] == d}
            for m in models:
                r = by.get(m)
                cells.append(
                    "" if r is None else (_mib(r.get("peak_allocated_bytes")) if r["status"] == "ok" else r["status"])
                )
            r = by.get("revgnn-112")
            cells.append(_mib(r.get("peak_minus_model_state_bytes")) if r and r["status"] == "ok" else "")
            for m in models:
                r = by.get(m)
                t = r.get("step_time_s") if r else None
                cells.append("" if t is None else f"{t:.2f}")
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("### memory_vs_depth\n\n" + "\n".join(lines))
    rows = _paper_rows(out, "paper_scale")
    if rows:
        rows = sorted(
            rows, key=lambda r: (list(PAPER_GB).index(r["model"]) if r["model"] in PAPER_GB else 99, r["depth"])
        )
        for r in rows:
            r.setdefault("time_source", "unprofiled")
        parts.append(
            "### paper_scale\n\n"
            + markdown_table(
                rows,
                [
                    "model",
                    "depth",
                    "status",
                    "parameters",
                    "peak_allocated_bytes",
                    "state_bytes",
                    "step_peak_delta_bytes",
                    "peak_minus_model_state_bytes",
                    "peak_rss_bytes",
                    "step_time_s",
                    "time_source",
                ],
            )
        )
        spath = out / "paper_scale_summary.json"
        if spath.exists():
            summary = json.loads(spath.read_text())
            lines = [
                "| model | full depth | measured depths | peak − model state (MiB, per depth) | model state at full depth (MiB) "
                "| full-depth peak (GB) | how | paper (GB) | below paper |",
                "|" + "---|" * 9,
            ]
            for m, e in summary["models"].items():
                measured = e.get("measured_full_depth_peak_bytes")
                best = measured if measured is not None else e.get("extrapolated_full_depth_peak_bytes")
                flat = ", ".join(f"{d}: {_mib(v)}" for d, v in (e.get("peak_minus_model_state_bytes") or {}).items())
                lines.append(
                    f"| {m} | {e['full_depth']} | {e['measured_depths']} | {flat} | "
                    f"{_mib(e.get('model_state_bytes_at_full_depth'))} | "
                    f"{'' if best is None else f'{best / 1e9:.2f}'} | {'measured' if measured else 'extrapolated'} | "
                    f"{e.get('paper_gb')} | {e.get('below_paper')} |"
                )
            parts.append("\n".join(lines))
            for m, e in summary["models"].items():
                bd = e.get("breakdown_at_deepest")
                if not bd:
                    continue
                lines = [
                    f"What is live at the peak, {m} at depth {e.get('breakdown_depth')} "
                    f"(N={bd['sizes']['N']}, E={bd['sizes']['E']}, D={bd['sizes']['D']}, C={bd['sizes']['C']}):",
                    "",
                    "| part | blocks | MiB |",
                    "|---|---|---|",
                ]
                for k, v in bd["state"].items():
                    lines.append(f"| state: {k} | | {_mib(v)} |")
                for k, v in bd["step"].items():
                    lines.append(f"| step: {k} | {v['count']} | {_mib(v['bytes'])} |")
                parts.append("\n".join(lines))
    path = out / "alternatives_summary.json"
    if path.exists():
        table = json.loads(path.read_text())["table"]
        parts.append(
            "### alternatives\n\n"
            + markdown_table(
                table,
                [
                    "graph",
                    "nodes",
                    "edges",
                    "depth",
                    "variant",
                    "step_time_s",
                    "time_ratio_to_ours",
                    "first_loss",
                    "peak_allocated_bytes",
                    "peak_minus_model_state_bytes",
                ],
            )
        )
    path = out / "glibc_trap_summary.json"
    if path.exists():
        table = json.loads(path.read_text())["table"]
        parts.append(
            "### glibc_trap\n\n"
            + markdown_table(
                table,
                [
                    "mmap_threshold",
                    "variant",
                    "depths",
                    "peak_rss_lo_bytes",
                    "peak_rss_hi_bytes",
                    "rss_growth_above_imports",
                    "peak_allocated_lo_bytes",
                    "peak_allocated_hi_bytes",
                ],
            )
        )
    return "\n\n".join(parts)
