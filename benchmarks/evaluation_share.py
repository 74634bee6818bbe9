"""How much of an evaluating epoch is evaluation, on the 112-task ``synthetic-proteins`` graph.

Two recipes, each trained in a fresh process with ``--eval-every 2`` (odd epochs only train,
even ones train then evaluate): the README's quick start (the full graph, 8 layers x 32) and its
tune example (500 nodes, 4 layers x 16). The share of evaluation is the median over evaluating
epochs of ``eval_time / time`` from the run's own ``metrics.jsonl`` (``eval_time``: the
partitioned logits and the metric; ``time``: the whole epoch, training and files included), so a
busy machine slows both alike.

    python benchmarks/evaluation_share.py [--epochs 20] [--out DIR]

Prints one line per recipe with the load average before it, and writes ``evaluation_share.json``
to ``--out`` (default: a new folder under the system's temporary directory, so a reproduction
never overwrites the committed ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

RECIPES: Dict[str, List[str]] = {
    "quick-start": ["--model", "wide", "--num-layers", "8", "--hidden", "32", "--lr", "0.005"],
    "tune-example": [
        "--model",
        "revgnn-112",
        "--dataset-option",
        "num_nodes=500",
        "--num-layers",
        "4",
        "--hidden",
        "16",
        "--train-parts",
        "1",
    ],  # fmt: skip
}


def share(metrics: List[dict]) -> Dict[str, float]:
    """Medians over the evaluating epochs of their time, their evaluation's time (``eval_time``:
    partitioned logits and the metric) and its share; and the training-only epochs' time."""
    evaluating = [m for m in metrics if m.get("eval_time") is not None]
    training = [m["time"] for m in metrics if m.get("val") is None]
    return {
        "evaluating_epoch_s": statistics.median(m["time"] for m in evaluating),
        "evaluation_s": statistics.median(m["eval_time"] for m in evaluating),
        "training_epoch_s": statistics.median(training),
        "evaluation_share": statistics.median(m["eval_time"] / m["time"] for m in evaluating),
    }


def main(argv: List[str] | None = None) -> Dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for evaluation_share.json (default: a new temporary one)"
    )
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="revgnn-evaluation-share-"))
    out.mkdir(parents=True, exist_ok=True)
    results: Dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, recipe in RECIPES.items():
            load = os.getloadavg()[0]
            run = Path(tmp) / name
            subprocess.run([sys.executable, "-m", "revgnn_dgl", "train", "--dataset", "synthetic-proteins", *recipe,
                            "--epochs", str(args.epochs), "--eval-every", "2", "--threads", "1", "--out", str(run)],
                           check=True, capture_output=True, text=True)  # fmt: skip
            metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
            results[name] = {**share(metrics), "load_before": load, "epochs": args.epochs}
            r = results[name]
            print(f"{name:13s} evaluating epoch {r['evaluating_epoch_s']:.3f} s of which evaluation "
                  f"{r['evaluation_s']:.3f} s ({100 * r['evaluation_share']:.1f}%); training-only epoch "
                  f"{r['training_epoch_s']:.3f} s (load {load:.2f})")  # fmt: skip
    (out / "evaluation_share.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out / 'evaluation_share.json'}")
    return results


if __name__ == "__main__":
    main()
