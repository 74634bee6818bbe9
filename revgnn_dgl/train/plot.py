"""Training curves of one or more runs: the loss and every metric per epoch, runs overlaid."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Union

from .config import ConfigError
from .metrics_log import METRICS_FILE, read_metrics

PathLike = Union[str, Path]


def run_folders(paths: Sequence[PathLike]) -> List[Path]:
    """Each path's run directories: itself, or its ``run-*`` subfolders for a multi-seed run."""
    folders: List[Path] = []
    for path in map(Path, paths):
        if (path / METRICS_FILE).is_file():
            folders.append(path)
        elif sorted(path.glob(f"run-*/{METRICS_FILE}")):
            folders.extend(p.parent for p in sorted(path.glob(f"run-*/{METRICS_FILE}")))
        else:
            raise ConfigError(f"{path} holds no {METRICS_FILE}: it is not an output directory of `revgnn-dgl train`.")
    return folders


def plot_runs(paths: Sequence[PathLike], out: PathLike) -> Path:
    """Draw the training loss and the validation and test metric of every run into one PNG.

    Returns the written file. ``matplotlib`` (a dependency of the package) draws off-screen.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folders = run_folders(paths)
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4.2))
    metric = "metric"
    for folder in folders:
        records = read_metrics(folder)
        if not records:
            raise ConfigError(f"{folder / METRICS_FILE} holds no epoch yet.")
        label = folder.name if folder.name.startswith("run-") is False else f"{folder.parent.name}/{folder.name}"
        epochs = [r["epoch"] for r in records]
        (line,) = ax_loss.plot(epochs, [r["loss"] for r in records], label=label)
        scored = [r for r in records if r.get("val") is not None]
        ax_metric.plot([r["epoch"] for r in scored], [r["val"] for r in scored], color=line.get_color(),
                       label=f"{label} val")  # fmt: skip
        ax_metric.plot([r["epoch"] for r in scored], [r["test"] for r in scored], color=line.get_color(),
                       linestyle="--", label=f"{label} test")  # fmt: skip
        metric = _metric_name(folder) or metric
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_metric.set(xlabel="epoch", ylabel=metric, title=f"validation (solid) and test (dashed) {metric}")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110)
        tmp.replace(out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out


def _metric_name(folder: Path) -> str:
    import json

    for candidate in (folder / "summary.json", folder.parent / "summary.json"):
        if candidate.is_file():
            try:
                return str(json.loads(candidate.read_text(encoding="utf-8")).get("metric", ""))
            except ValueError:
                return ""
    return ""
