"""PNG plots of benchmark rows: peak memory against depth, step time against depth."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["plot_memory", "plot_time", "plot_paper_comparison", "series_label"]

_MiB = 2**20
_MARKERS = ("o", "s", "^", "D", "v", "P")
_DASHES = ("-", "--", "-.", ":")


def series_label(row: Dict[str, Any]) -> str:
    """``model`` plus the variant when it is not ``ours``, plus the width."""
    label = str(row.get("model"))
    if row.get("variant") not in (None, "ours"):
        label += f" [{row['variant']}]"
    if row.get("hidden"):
        label += f", D={row['hidden']}"
    return label


def _series(rows: Sequence[Dict[str, Any]]) -> "OrderedDict[str, List[Dict[str, Any]]]":
    out: "OrderedDict[str, List[Dict[str, Any]]]" = OrderedDict()
    for row in rows:
        out.setdefault(series_label(row), []).append(row)
    for key in out:
        out[key].sort(key=lambda r: r["depth"])
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _depth_axis(ax: Any, depths: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted(set(depths))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(d) for d in ticks], rotation=45 if len(ticks) > 8 else 0)
    ax.minorticks_off()
    ax.set_xlabel("depth (layers; log scale)")
    ax.grid(True, which="major", alpha=0.3)


def _save(plt: Any, fig: Any, path: Union[str, Path]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_memory(
    rows: Sequence[Dict[str, Any]],
    path: Union[str, Path],
    title: Optional[str] = None,
    metrics: Sequence[Tuple[str, str]] = (
        ("peak_allocated_bytes", "peak allocated by torch (MiB)"),
        ("peak_minus_model_state_bytes", "peak minus params, grads, Adam (MiB)"),
        ("peak_rss_bytes", "peak RSS of the process (MiB)"),
    ),
) -> Path:
    """Peak memory against depth, one line per model/variant, one panel per metric.

    Configurations that did not fit are drawn as crosses at the memory cap (``oom``) or at
    their projected peak (``skipped``), and listed in the legend, rather than left out.
    """
    plt = _pyplot()
    rows = [r for r in rows if r.get("kind", "memory") == "memory"]
    series = _series(rows)
    metrics = [m for m in metrics if any(r.get(m[0]) is not None for r in rows)] or list(metrics[:1])
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.0 * len(metrics), 4.8), squeeze=False)
    depths = [r["depth"] for r in rows]
    for ax, (metric, ylabel) in zip(axes[0], metrics):
        for i, (label, srows) in enumerate(series.items()):
            color = f"C{i % 10}"
            ok = [r for r in srows if r.get("status") == "ok" and r.get(metric) is not None]
            # Distinct markers and dashes: flat series often lie on top of each other.
            ax.plot(
                [r["depth"] for r in ok],
                [r[metric] / _MiB for r in ok],
                color=color,
                label=label,
                marker=_MARKERS[i % len(_MARKERS)],
                ls=_DASHES[i % len(_DASHES)],
                ms=7 - i % 3,
                mfc="none" if i % 2 else color,
            )
            bad = [r for r in srows if r.get("status") in ("oom", "skipped")]
            if metric == "peak_minus_model_state_bytes":
                bad = []  # projections and caps are of the whole peak
            xs, ys = [], []
            for r in bad:
                y = r.get("projected_peak_bytes") or r.get("mem_cap_bytes")
                if y:
                    xs.append(r["depth"])
                    ys.append(y / _MiB)
            if xs:
                what = {"skipped": "projected past the cap, not run", "oom": "out of memory under the cap"}
                ax.plot(
                    xs,
                    ys,
                    "x",
                    color=color,
                    markersize=9,
                    mew=2,
                    label=f"{label}: " + "; ".join(what[s] for s in sorted({r["status"] for r in bad})),
                )
        caps = {int(r["mem_cap_bytes"]) for r in rows if r.get("mem_cap_bytes")}
        if metric == "peak_minus_model_state_bytes":
            caps = set()
        for cap in caps:
            ax.axhline(cap / _MiB, color="grey", ls=":", lw=1)
            ax.annotate(
                f"memory cap {cap / 2**30:.1f} GiB",
                (max(depths), cap / _MiB),
                fontsize=8,
                color="grey",
                va="top",
                ha="right",
            )
        _depth_axis(ax, depths)
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(4, len(labels)), frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    rows_of_legend = -(-len(labels) // min(4, max(1, len(labels))))
    # Leave the top strip to the title, or tight_layout moves the panels' labels under it.
    fig.tight_layout(rect=(0, 0.04 + 0.035 * rows_of_legend, 1, 0.95 if title else 1))
    return _save(plt, fig, path)


def plot_time(rows: Sequence[Dict[str, Any]], path: Union[str, Path], title: Optional[str] = None) -> Path:
    """Median time of one training step against depth (log-log), one line per model/variant."""
    plt = _pyplot()
    rows = [r for r in rows if r.get("status") == "ok" and r.get("step_time_s") is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for i, (label, srows) in enumerate(_series(rows).items()):
        ax.plot(
            [r["depth"] for r in srows],
            [r["step_time_s"] for r in srows],
            color=f"C{i % 10}",
            label=label,
            marker=_MARKERS[i % len(_MARKERS)],
            ls=_DASHES[i % len(_DASHES)],
            ms=7 - i % 3,
            mfc="none" if i % 2 else f"C{i % 10}",
        )
    _depth_axis(ax, [r["depth"] for r in rows] or [1])
    ax.set_yscale("log")
    ax.set_ylabel("time of one training step (s; median)")
    ax.legend(fontsize=7, loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_paper_comparison(summary: Dict[str, Any], path: Union[str, Path], title: Optional[str] = None) -> Path:
    """Bars: each model's full-depth peak (measured or extrapolated, hatched) next to the paper's.

    ``summary`` is the ``paper_scale`` suite's summary (``{"models": {name: entry}}``).
    """
    plt = _pyplot()
    models = [m for m, e in summary["models"].items() if e.get("peak_gb") is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = range(len(models))
    ours = [summary["models"][m]["peak_gb"] for m in models]
    paper = [summary["models"][m].get("paper_gb") or 0 for m in models]
    extrap = ["measured_full_depth_peak_bytes" not in summary["models"][m] for m in models]
    bars = ax.bar([x - 0.2 for x in xs], ours, 0.4, color="C0", label="this implementation, CPU allocator peak")
    for bar, e in zip(bars, extrap):
        if e:
            bar.set_hatch("//")
    ax.bar([x + 0.2 for x in xs], paper, 0.4, color="C7", label="paper (GPU, unchecked)")
    for x, v, p in zip(xs, ours, paper):
        ax.annotate(f"{v:.2f}", (x - 0.2, v), ha="center", va="bottom", fontsize=8)
        ax.annotate(f"{p:.2f}", (x + 0.2, p), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{m}\n(L={summary['models'][m]['full_depth']})" for m in models])
    ax.set_ylabel("peak memory of one training step (GB)")
    ax.legend(
        fontsize=8,
        title="hatched: extrapolated from reduced depth" if any(extrap) else "all measured at full depth",
        title_fontsize=7,
    )
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(plt, fig, path)
