"""Fit ``--recipe auto``'s cell -> recipe table by leave-one-graph-out, and score it (issue 39).

Every graph (the local real graphs and the generated families) has a cell (edge features,
feature kind, homophily, degree; :func:`revgnn_dgl.train.auto_recipe.cell_of`, from its measured
statistics) and, for each candidate recipe of :data:`~revgnn_dgl.train.auto_recipe.RECIPES`
measured on it, the test score of a 16-layer model trained with that recipe (seed 0 of a
committed run, :data:`RUNS`). The fit, on a set of graphs, gives each cell seen in the set the
recipe with the best mean *relative* score over that cell's graphs (score divided by the
graph's best candidate score, so graphs of different metrics and difficulty weigh alike) over
the cell's graphs with at least two candidates measured (one alone compares nothing); a recipe
must be measured on every such graph of the cell to be chosen. A cell not seen takes the nearest fitted cell's recipe
(:func:`~revgnn_dgl.train.auto_recipe.recipe_for_cell`).

The degree threshold of the cell (``high-degree`` from it) is fitted with the table: each
geometric midpoint between two neighbouring mean degrees of the fitted graphs is tried, the
one whose fitted table scores the fitted graphs best (sum of relative scores) wins, ties going
to the midpoint of the widest gap in log degree (the largest margin).

Leave-one-graph-out: for every graph G, the threshold and table fitted without G, their choice
for G's cell, and G's score under that choice (or "not measured"). The threshold and table
fitted on all graphs are :data:`~revgnn_dgl.train.auto_recipe.DENSE_DEGREE` (up to rounding: the
same cells) and :data:`~revgnn_dgl.train.auto_recipe.RECIPE_BY_CELL` (checked by ``--check``).

    python benchmarks/auto_recipe_logo.py            # print the markdown tables (docs/deep_recipe.md)
    python benchmarks/auto_recipe_logo.py --check    # exit 1 when RECIPE_BY_CELL is not the full fit
    python benchmarks/auto_recipe_logo.py --commands # the train commands of the candidate runs
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from revgnn_dgl.train.auto_recipe import (  # noqa: E402
    CELL_KEYS,
    DENSE_DEGREE,
    RECIPE_BY_CELL,
    RECIPES,
    cell_of,
    choose,
    measure,
    recipe_for_cell,
)

#: graph -> (dataset, dataset options, run-name prefix).
GRAPHS: Dict[str, Tuple[str, Dict[str, Any], str]] = {
    "Cora": ("cora", {}, "cora"),
    "CiteSeer": ("citeseer", {}, "citeseer"),
    "HumLoc": ("humloc", {}, "humloc"),
    "Amazon Computers": ("amazon-computers", {}, "amazon-computers"),
    "Coauthor CS": ("coauthor-cs", {}, "coauthor-cs"),
    "family citation": ("synthetic-family", {"family": "citation", "num_nodes": 1000}, "synthetic-family-citation"),
    "family protein": ("synthetic-family", {"family": "protein", "num_nodes": 1000}, "synthetic-family-protein"),
    "family protein-edges": (
        "synthetic-family",
        {"family": "protein-edges", "num_nodes": 1000},
        "synthetic-family-protein-edges",
    ),
    "family heterophilous": (
        "synthetic-family",
        {"family": "heterophilous", "num_nodes": 1000},
        "synthetic-family-heterophilous",
    ),
    "family copurchase": (
        "synthetic-family",
        {"family": "copurchase", "num_nodes": 1000},
        "synthetic-family-copurchase",
    ),
}

#: (graph, recipe) -> the committed run (results/runs/NAME) whose seed 0 scores that recipe at 16 layers.
RUNS: Dict[Tuple[str, str], str] = {
    ("Cora", "citation"): "cora-revgnn-gcnii-16x64-step04",
    ("CiteSeer", "citation"): "citeseer-revgnn-gcnii-16x64-step04",
    ("HumLoc", "proteins"): "humloc-revgnn-16x64",
    ("HumLoc", "citation"): "humloc-revgnn-gcnii-16x64-step04",
    ("Amazon Computers", "copurchase"): "amazon-computers-revgnn-gcn-16x64",
    ("Amazon Computers", "citation"): "amazon-computers-revgnn-gcnii-16x64-step04",
    ("Coauthor CS", "copurchase"): "coauthor-cs-revgnn-gcn-16x64",
    ("Coauthor CS", "citation"): "coauthor-cs-revgnn-gcnii-16x64-probe-citation",
}
SHAPE = {"citation": "gcnii", "dense": "gcnii", "copurchase": "gcn", "proteins": "gen"}


def candidate_run(graph: str, recipe: str, auto: str) -> str:
    """The run folder of ``recipe`` on ``graph``: committed (:data:`RUNS`), the auto run, or a probe."""
    if (graph, recipe) in RUNS:
        return RUNS[(graph, recipe)]
    prefix = GRAPHS[graph][2]
    name = f"{prefix}-revgnn-{SHAPE[recipe]}-16x64"
    probe = f"{name}-probe-{recipe}"
    if recipe != auto or (ROOT / "results" / "runs" / probe / "summary.json").is_file():
        return probe  # a seed-0 probe (or a 3-seed run of a recipe auto chose before the fit)
    return f"{name}-auto"


def stats_of(graph: str) -> Any:
    from revgnn_dgl.data import load_dataset

    dataset, options, _ = GRAPHS[graph]
    return measure(load_dataset(dataset, **options))


def load_stats(path: Path) -> Dict[str, Any]:
    """The graphs' statistics from ``path`` (JSON), measured and written there when it is absent."""
    from revgnn_dgl.train.auto_recipe import GraphStats

    if path.is_file():
        fields = set(GraphStats.__dataclass_fields__)
        raw = json.loads(path.read_text())
        return {g: GraphStats(**{k: v for k, v in raw[g].items() if k in fields}) for g in GRAPHS}
    stats = {g: stats_of(g) for g in GRAPHS}
    path.write_text(json.dumps({g: s.to_dict() for g, s in stats.items()}, indent=1))
    return stats


def seed0_test(run: str) -> Optional[float]:
    path = ROOT / "results" / "runs" / run / "summary.json"
    if not path.is_file():
        return None
    return float(json.loads(path.read_text())["runs"][0]["test"])


def fit(graphs: List[str], cells: Dict[str, str], scores: Dict[str, Dict[str, Optional[float]]]) -> Dict[str, str]:
    """cell -> the recipe of best mean relative score over the cell's graphs among ``graphs``."""
    table: Dict[str, str] = {}
    # A graph with one candidate measured says nothing about which recipe is better: left out.
    graphs = [g for g in graphs if sum(v is not None for v in scores[g].values()) >= 2]
    for cell in sorted({cells[g] for g in graphs}):
        members = [g for g in graphs if cells[g] == cell]
        best, best_score = None, -1.0
        for recipe in RECIPES:
            rel = []
            for g in members:
                s, top = scores[g].get(recipe), max(v for v in scores[g].values() if v is not None)
                if s is None:
                    break
                rel.append(s / top)
            else:
                mean = sum(rel) / len(rel)
                if mean > best_score:
                    best, best_score = recipe, mean
        if best is not None:
            table[cell] = best
    return table


def cell_at(stats: Any, threshold: float) -> Dict[str, str]:
    """The graph's cell with ``threshold`` as the degree threshold (:data:`DENSE_DEGREE` in auto)."""
    cell = dict(cell_of(stats))
    cell["degree"] = "high-degree" if stats.mean_degree >= threshold else "low-degree"
    return cell


def key_of(cell: Dict[str, str]) -> str:
    return "/".join(cell[k] for k in CELL_KEYS)


def relative(scores: Dict[str, Optional[float]], recipe: str) -> float:
    """The score of ``recipe`` over the graph's best candidate (0 when not measured)."""
    s, known = scores.get(recipe), [v for v in scores.values() if v is not None]
    return s / max(known) if s is not None and known else 0.0


def fit_threshold(
    graphs: List[str], stats: Dict[str, Any], scores: Dict[str, Dict[str, Optional[float]]]
) -> Tuple[float, Dict[str, str]]:
    """The degree threshold and cell -> recipe table fitted together on ``graphs``.

    Candidates are the geometric midpoints between neighbouring mean degrees of the graphs with
    two or more candidates measured; the winner is the one whose fitted table gives those graphs
    the highest sum of relative scores, ties to the widest gap in log degree.
    """
    fitted = [g for g in graphs if sum(v is not None for v in scores[g].values()) >= 2]
    degrees = sorted({stats[g].mean_degree for g in fitted})
    best: Optional[Tuple[Tuple[float, float], float, Dict[str, str]]] = None
    for low, high in zip(degrees, degrees[1:]):
        threshold = math.sqrt(low * high) if low > 0 else high / 2
        cells = {g: key_of(cell_at(stats[g], threshold)) for g in graphs}
        table = fit(graphs, cells, scores)
        if not table:
            continue
        total = sum(relative(scores[g], recipe_for_cell(cell_at(stats[g], threshold), table)[0]) for g in fitted)
        rank = (round(total, 9), math.log(high / max(low, 1e-9)))
        if best is None or rank > best[0]:
            best = (rank, threshold, table)
    if best is None:  # one degree only: the committed threshold
        cells = {g: key_of(cell_at(stats[g], DENSE_DEGREE)) for g in graphs}
        return DENSE_DEGREE, fit(graphs, cells, scores)
    return best[1], best[2]


def command(graph: str, recipe: str, depth: int, stats: Any, out: str, runs: int = 1) -> str:
    """The train command of ``recipe`` on ``graph`` at ``depth`` (auto's other choices kept)."""
    dataset, options, _ = GRAPHS[graph]
    key = "/".join(cell_of(stats)[k] for k in CELL_KEYS)
    settings = choose(stats, depth=depth, table={key: recipe}).settings
    args = ["revgnn-dgl", "train", "--model", settings.pop("model"), "--dataset", dataset]
    for k, v in options.items():
        args += ["--dataset-option", f"{k}={v}"]
    if recipe == "proteins":
        pass
    elif stats.edge_feats:
        args += ["--dataset-option", "edge_feats=false"]
    for k, v in settings.pop("model_args").items():
        args += ["--set", f"{k}={v}"]
    for k, v in settings.items():
        if v is None:
            continue
        args += [f"--{k.replace('_', '-')}", str(v)]
    args += ["--runs", str(runs), "--threads", "1", "--device", "cpu", "--out", f"results/runs/{out}"]
    return " ".join(shlex.quote(a) for a in args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--commands", action="store_true")
    parser.add_argument("--stats", help="a JSON file of measured statistics to reuse (written when absent)")
    args = parser.parse_args()
    stats = load_stats(Path(args.stats)) if args.stats else {g: stats_of(g) for g in GRAPHS}
    cells = {g: "/".join(cell_of(s)[k] for k in CELL_KEYS) for g, s in stats.items()}
    auto = {g: recipe_for_cell(cell_of(s))[0] for g, s in stats.items()}
    if args.commands:
        for g in GRAPHS:
            for recipe in RECIPES:
                if recipe == "proteins" and not stats[g].edge_feats:
                    continue
                run = candidate_run(g, recipe, auto[g])
                if not (ROOT / "results" / "runs" / run).exists():
                    print(run, command(g, recipe, 16, stats[g], run, runs=3 if recipe == auto[g] else 1))
        return 0
    scores = {g: {r: seed0_test(candidate_run(g, r, auto[g])) for r in RECIPES} for g in GRAPHS}
    measured = [g for g in GRAPHS if any(v is not None for v in scores[g].values())]
    threshold, full = fit_threshold(measured, stats, scores)
    if args.check:
        same_cells = all(cell_at(s, threshold) == cell_of(s) for s in stats.values())
        ok = same_cells and all(RECIPE_BY_CELL.get(c) == r for c, r in full.items())
        print(
            "RECIPE_BY_CELL and DENSE_DEGREE are the fit on all graphs"
            if ok
            else f"the committed table differs from the fit: degree threshold {threshold:.3f} "
            f"(DENSE_DEGREE {DENSE_DEGREE:g} gives {'the same' if same_cells else 'other'} cells), {full}"
        )
        return 0 if ok else 1
    print("| graph | cell | mean degree | " + " | ".join(RECIPES) + " |")
    print("|---|---|---|" + "---|" * len(RECIPES))
    for g in GRAPHS:
        row = [f"{scores[g][r]:.3f}" if scores[g][r] is not None else "-" for r in RECIPES]
        print(f"| {g} | {cells[g]} | {stats[g].mean_degree:.1f} | " + " | ".join(row) + " |")
    print()
    print(f"Fitted on all graphs (degree threshold {threshold:.2f}; auto's `DENSE_DEGREE` {DENSE_DEGREE:g}):")
    for cell, recipe in sorted(full.items()):
        print(f"- `{cell}`: {recipe}")
    print()
    print(
        "| held-out graph | degree threshold fitted without it | rule fitted without it picks | score of that pick "
        "| best candidate (score) | auto recipe (all graphs) |"
    )
    print("|---|---|---|---|---|---|")
    for g in GRAPHS:
        others = [h for h in measured if h != g]
        t, table = fit_threshold(others, stats, scores)
        pick, where = recipe_for_cell(cell_at(stats[g], t), table) if table else ("-", "")
        s = scores[g].get(pick)
        known = {r: v for r, v in scores[g].items() if v is not None}
        best = max(known, key=known.get) if known else None
        best_text = f"{best} ({known[best]:.3f})" if best else "-"
        nearest = " (nearest cell)" if "nearest" in where else ""
        print(
            f"| {g} | {t:.2f} | {pick}{nearest} | {f'{s:.3f}' if s is not None else 'not measured'} | {best_text} "
            f"| {auto[g]} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
