"""``benchmark memory`` and ``benchmark speed``: the click group the main CLI adds.

    revgnn-dgl benchmark memory --model revgnn-112 --model resgnn-112 --hidden 80 --depths 2,4,8,...,1001
    revgnn-dgl benchmark speed --model revgnn-112 --depths 8,32 --variants ours,disable

The same commands run as ``python -m revgnn_dgl.bench ...``. ``--variants`` takes the package's
``ours`` and ``disable`` and any variant registered in this process
(:func:`~revgnn_dgl.bench.workload.register_variant`); the comparison with DGL's and PyG's
reversible blocks is ``python benchmarks/alternatives.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import click

from .memory import GiB, memory_sweep
from .profiling import DEFAULT_MMAP_THRESHOLD
from .results import markdown_table, write_rows
from .workload import VARIANTS, variant_names

__all__ = ["benchmark", "parse_depths"]


def _check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise click.BadParameter(f"expected auto, cpu, cuda or cuda:N, got {value!r}.", ctx=ctx, param=param)
    return value


def parse_depths(text: str) -> List[int]:
    """``"2,4,8"`` -> [2, 4, 8]; ``"2,4,...,1001"`` doubles from the last value before ``...``
    while below the value after it: [2, 4, 8, ..., 512, 1001]."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    out: List[int] = []
    i = 0
    while i < len(parts):
        if parts[i] == "...":
            if not out or i + 1 >= len(parts):
                raise click.BadParameter(f"'...' needs a value before and after it: {text!r}")
            stop = int(parts[i + 1])
            d = out[-1] * 2
            while d < stop:
                out.append(d)
                d *= 2
        else:
            out.append(int(parts[i]))
        i += 1
    if not out or any(d < 1 for d in out):
        raise click.BadParameter(f"depths must be positive integers: {text!r}")
    return sorted(set(out))


def _split(text: str) -> List[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _variants(text: str) -> List[str]:
    """``--variants``: known names only (the package's and those registered in this process)."""
    names = _split(text)
    unknown = [v for v in names if v not in variant_names()]
    if unknown or not names:
        hint = (
            " (DGL's and PyG's blocks are compared by python benchmarks/alternatives.py)"
            if ({"dgl", "pyg"} & set(unknown))
            else ""
        )
        raise click.BadParameter(
            f"unknown variant(s) {', '.join(unknown) or text!r}; choose from {', '.join(variant_names())}{hint}",
            param_hint="--variants",
        )
    return names


def _common(fn: Callable) -> Callable:
    options = [
        click.option("--model", "models", multiple=True, help="Zoo model (revgnn-deep, resgnn-112, ...); repeatable."),
        click.option(
            "--arch",
            "archs",
            multiple=True,
            help="Architecture (revgnn, resgnn, wt-revgnn, deq-gnn): its first model card; repeatable.",
        ),
        click.option(
            "--depths",
            default="2,4,8",
            show_default=True,
            help="Comma-separated depths; '2,4,...,1001' doubles up to 1001.",
        ),
        click.option("--hidden", type=int, default=None, help="Width D (default: the card's)."),
        click.option("--groups", type=int, default=None, help="Groups C of reversible models (default: the card's)."),
        click.option("--nodes", type=int, default=2000, show_default=True, help="Nodes of the generated graph."),
        click.option(
            "--edges", type=int, default=20000, show_default=True, help="Directed edges of the generated graph."
        ),
        click.option("--edge-feats", type=int, default=8, show_default=True),
        click.option("--species", type=int, default=8, show_default=True, help="Species one-hot width (0: none)."),
        click.option("--tasks", type=int, default=112, show_default=True),
        click.option(
            "--variants",
            default="ours",
            show_default=True,
            help=f"Comma-separated, of {', '.join(VARIANTS)} (or a variant registered with "
            "revgnn_dgl.bench.register_variant); DGL's and PyG's blocks: python benchmarks/alternatives.py.",
        ),
        click.option(
            "--device", default="auto", show_default=True, callback=_check_device, help="auto, cpu, cuda or cuda:N."
        ),
        click.option("--warmup", type=int, default=1, show_default=True, help="Untimed steps first."),
        click.option("--repeats", type=int, default=3, show_default=True, help="Timed steps (median reported)."),
        click.option(
            "--threads",
            type=int,
            default=None,
            callback=_checked_threads,
            help="torch threads, at most the cores (default: torch's).",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--set",
            "sets",
            multiple=True,
            metavar="KEY=VALUE",
            help="Further architecture argument for every model, e.g. --set tol=0 (value read as YAML).",
        ),
        click.option(
            "--out", "out_dir", type=click.Path(file_okay=False), default="benchmark-results", show_default=True
        ),
        click.option("--name", default=None, help="Base name of the result files (default: the command's)."),
        click.option("--plot/--no-plot", default=True, show_default=True, help="Write PNG plots next to the results."),
        click.option("--timeout", type=float, default=None, help="Seconds per child process."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _checked_threads(ctx: click.Context, param: click.Parameter, value: Optional[int]) -> Optional[int]:
    from ..limits import check_threads

    return check_threads(value)


def _extra(sets: Sequence[str]) -> Dict[str, Any]:
    from ..train.config import load_yaml

    out: Dict[str, Any] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        out[key.strip()] = load_yaml(value, f"--set {key.strip()}")
    return out


def _base(opts: Dict[str, Any]) -> Dict[str, Any]:
    return dict(
        hidden=opts["hidden"],
        groups=opts["groups"],
        nodes=opts["nodes"],
        edges=opts["edges"],
        edge_feats=opts["edge_feats"],
        species=opts["species"],
        tasks=opts["tasks"],
        device=opts["device"],
        seed=opts["seed"],
        extra=_extra(opts["sets"]),
    )


def _models(opts: Dict[str, Any]) -> List[str]:
    models = list(opts["models"]) + list(opts["archs"])
    if not models:
        raise click.UsageError("give at least one --model or --arch")
    return models


def _echo_row(row: Dict[str, Any]) -> None:
    mib = lambda b: "-" if b is None else f"{b / 2**20:,.1f} MiB"  # noqa: E731
    t = row.get("step_time_s")
    click.echo(
        f"{row.get('model')} [{row.get('variant')}] depth {row.get('depth')}: {row.get('status')}"
        f"  peak {mib(row.get('peak_allocated_bytes'))}  rss {mib(row.get('peak_rss_bytes'))}"
        f"  step {'-' if t is None else f'{t:.3f} s'}"
        + (f"  ({row['message'][:160]})" if row.get("message") and row.get("status") != "ok" else "")
    )


@click.group()
def benchmark() -> None:
    """Peak memory and time of one training step against depth, width and graph size."""


@benchmark.command()
@_common
@click.option(
    "--mem-cap-gb",
    type=float,
    default=8.0,
    show_default=True,
    help="Memory cap per configuration (0: none); larger ones give 'oom'/'skipped' rows.",
)
@click.option(
    "--mmap-threshold",
    default=str(DEFAULT_MMAP_THRESHOLD),
    show_default=True,
    help="glibc's MALLOC_MMAP_THRESHOLD_=BYTES for the children ('dynamic' keeps glibc's default).",
)
@click.option("--breakdown", is_flag=True, help="Also list what is live at the peak (CPU).")
@click.option(
    "--time-budget",
    type=float,
    default=None,
    help="Stop timing a configuration after this many seconds of timed steps (at least one).",
)
def memory(**opts: Any) -> None:
    """Peak memory (allocator and RSS) and time of one step, each configuration in a fresh process."""
    name = opts["name"] or "memory"
    out_dir = Path(opts["out_dir"])
    rows: List[Dict[str, Any]] = []

    def on_row(row: Dict[str, Any]) -> None:
        rows.append(row)
        _echo_row(row)
        write_rows(rows, out_dir, name)  # after every row: a long sweep keeps what it has

    threshold = None if opts["mmap_threshold"] == "dynamic" else int(opts["mmap_threshold"])
    memory_sweep(
        _models(opts),
        parse_depths(opts["depths"]),
        _variants(opts["variants"]),
        base=_base(opts),
        warmup=opts["warmup"],
        repeats=opts["repeats"],
        threads=opts["threads"],
        mem_cap_bytes=int(opts["mem_cap_gb"] * GiB) if opts["mem_cap_gb"] else None,
        timeout=opts["timeout"],
        mmap_threshold=threshold,
        breakdown=opts["breakdown"],
        time_budget_s=opts["time_budget"],
        on_row=on_row,
    )
    paths = write_rows(rows, out_dir, name)
    click.echo(
        markdown_table(
            rows,
            [
                "model",
                "variant",
                "depth",
                "status",
                "parameters",
                "peak_allocated_bytes",
                "peak_rss_bytes",
                "step_time_s",
            ],
        )
    )
    click.echo(f"wrote {paths['csv']} and {paths['json']}")
    if opts["plot"]:
        from .plots import plot_memory, plot_time

        click.echo(
            f"wrote {plot_memory(rows, out_dir / f'{name}.png')} and {plot_time(rows, out_dir / f'{name}_time.png')}"
        )


@benchmark.command()
@_common
@click.option("--profile", is_flag=True, help="Also record the top operators of one step per variant.")
@click.option("--in-process", is_flag=True, help="Run in this process instead of one fresh child.")
def speed(**opts: Any) -> None:
    """Time per step of execution variants side by side (one process, interleaved rounds)."""
    from .speed import run_speed, speed_compare

    name = opts["name"] or "speed"
    out_dir = Path(opts["out_dir"])
    rows: List[Dict[str, Any]] = []
    for model in _models(opts):
        kwargs = dict(
            base={**_base(opts), "model": model},
            depths=parse_depths(opts["depths"]),
            variants=_variants(opts["variants"]),
            warmup=opts["warmup"],
            repeats=opts["repeats"],
            threads=opts["threads"],
            profile=opts["profile"],
        )
        new = speed_compare(**kwargs) if opts["in_process"] else run_speed(**kwargs, timeout=opts["timeout"])
        for row in new:
            _echo_row(row)
        rows.extend(new)
        write_rows(rows, out_dir, name)
    paths = write_rows(rows, out_dir, name)
    click.echo(
        markdown_table(rows, ["model", "variant", "depth", "status", "step_time_s", "time_ratio_to_ours", "first_loss"])
    )
    click.echo(f"wrote {paths['csv']} and {paths['json']}")
    if opts["plot"]:
        from .plots import plot_time

        click.echo(f"wrote {plot_time(rows, out_dir / f'{name}_time.png')}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m revgnn_dgl.bench``."""
    benchmark.main(args=list(argv) if argv is not None else None, prog_name="python -m revgnn_dgl.bench")
