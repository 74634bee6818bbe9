"""The study's outputs: the table of the best trials, ``best.yaml``, ``trials.csv`` and the PNG plots."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Dict, List, Sequence, cast

from ...errors import ConfigError
from ...log import get_logger
from ..config import TrainConfig
from .settings import BEST_CONFIG, TRIALS_CSV, TuneSettings, _optuna
from .space import SearchSpace
from .store import _shown_url
from .workers import _short

log = get_logger(__name__)


def _finish(study: Any, base: TrainConfig, space: SearchSpace, settings: TuneSettings, seconds: float) -> Dict[str, Any]:  # fmt: skip
    """The table of the best trials, best.yaml, trials.csv and the plots; returns the summary."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    names = {state.COMPLETE: "complete", state.PRUNED: "pruned", state.FAIL: "failed", state.RUNNING: "running"}
    counts = {name: sum(t.state == s for t in trials) for s, name in names.items()}
    done = sorted((t for t in trials if t.state == state.COMPLETE), key=lambda t: -t.value)
    out = Path(settings.out)
    summary: Dict[str, Any] = {"study": settings.study_name, "storage": _shown_url(settings), "trials": counts,
                               "seconds": seconds, "best": None}  # fmt: skip
    states = "".join(f", {n} {k}" for k, n in counts.items() if n)
    log.info(f"{len(trials)} trial(s){states}; this run took {seconds:.1f} s")
    if not done:
        log.info("no trial has finished yet: no best config.")
        return summary
    _check_attributes(done, settings)
    metric = done[0].user_attrs.get("metric", "val")
    rows = [("trial", f"val {metric}", "test", *study.best_trial.params.keys(), "run")]
    for t in done[: settings.top]:
        rows.append((str(t.number), f"{t.value:.4f}", f"{t.user_attrs.get('test', float('nan')):.4f}",
                     *(_short(t.params.get(k)) for k in rows[0][3:-1]), _relative(t.user_attrs["run_dir"])))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    log.info(f"best {len(rows) - 1} trial(s) by validation {metric}:")
    for row in rows:
        log.info("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    best = done[0]
    from ...files import write_whole as write_atomic
    from ...files import write_yaml
    from ..rundir import CONFIG_FILE

    saved = Path(best.user_attrs["run_dir"]) / CONFIG_FILE
    # The trial's own config.yaml (its thread count included), unless it ran on another machine.
    config = (
        TrainConfig.from_file(saved) if saved.is_file() else space.apply(base, best.params, "the best trial")
    ).to_dict()
    config.pop("out")  # train --config BEST gives the new run its own folder
    write_yaml(out / BEST_CONFIG, config)
    summary["best"] = {"trial": best.number, "val": best.value, "test": best.user_attrs.get("test"),
                       "params": best.params, "run_dir": best.user_attrs["run_dir"], "config": str(out / BEST_CONFIG)}  # fmt: skip
    frame = study.trials_dataframe()
    for column in ("user_attrs_run_dir", "user_attrs_lock"):  # the storage keeps absolute paths; the table is shared
        if column in frame:
            frame[column] = [_relative(p) if isinstance(p, str) else p for p in frame[column]]
    write_atomic(out / TRIALS_CSV, frame.to_csv(index=False))  # whole, and never through a link
    summary["plots"] = _plots(study, out)
    shown = ", ".join(f"{k}={_short(v)}" for k, v in best.params.items())
    log.info(
        f"best config (trial {best.number}): {shown} (val {metric} {best.value:.4f}); written to {out / BEST_CONFIG}"
    )
    retrain = f"revgnn-dgl train --config {out / BEST_CONFIG} --runs 3 --out {_retrain_dir(out)}"
    summary["retrain"] = retrain
    log.info(f"train it for 3 seeds: {retrain}")
    return summary


def _check_attributes(done: Sequence[Any], settings: TuneSettings) -> None:
    """Refuse, in one line, finished trials whose recorded attributes are not what the tuner writes (an
    edited database): a run directory as text, a finite test score, a metric name."""
    for t in done:
        attrs = t.user_attrs
        test = attrs.get("test", 0.0)
        if (
            not isinstance(attrs.get("run_dir"), str)
            or not isinstance(attrs.get("metric", "val"), str)
            or isinstance(test, bool)
            or not isinstance(test, (int, float))
            or not math.isfinite(test)
        ):
            raise ConfigError(f"study {settings.study_name!r} in {_shown_url(settings)}: trial {t.number}'s recorded "
                              "run_dir, test or metric is not what revgnn-dgl writes (an edited database); start "
                              "another study with --out DIR or --study-name NAME.")  # fmt: skip


def _retrain_dir(out: Path) -> str:
    """Where the printed 3-seed command trains the best config: beside the study folder."""
    return str(out.parent / f"{out.name}-best")


def _relative(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


LEGEND_ROWS = 15


def _fit_legend(axes: Any) -> None:
    """Optuna's one-legend-row-per-trial column runs off the figure past a dozen trials: fold it
    into columns of at most LEGEND_ROWS small entries."""
    legend = getattr(axes, "get_legend", lambda: None)()
    if legend is None or len(legend.get_texts()) <= LEGEND_ROWS:
        return
    handles, labels = axes.get_legend_handles_labels()
    columns = -(-len(labels) // LEGEND_ROWS)
    axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=columns,
                fontsize="x-small", borderaxespad=0.0)  # fmt: skip


def _plots(study: Any, out: Path) -> List[str]:
    """Optuna's optimization history, parameter importances and intermediate values, as PNGs."""
    import io

    import matplotlib

    from ...files import write_whole as write_atomic

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    written = []
    for name, plot in (("optimization_history", vis.plot_optimization_history),
                       ("param_importances", vis.plot_param_importances),
                       ("intermediate_values", vis.plot_intermediate_values)):  # fmt: skip
        path = out / f"{name}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental API; "too few trials for importances" (said below)
                axes = plot(study)
            figure = getattr(axes, "figure", None) or cast(Any, axes).flat[0].figure  # one axes, or an array of them
            _fit_legend(axes)
            figure.tight_layout()
            image = io.BytesIO()
            figure.savefig(image, format="png", dpi=100, bbox_inches="tight")  # the legend sits outside the axes
            write_atomic(path, image.getvalue())  # whole, and never through a link
            plt.close(figure)
            written.append(str(path))
        except (ValueError, RuntimeError) as err:  # e.g. importances of fewer than two finished trials
            log.info(f"note: no {name} plot: {' '.join(str(err).split())}")
    return written
