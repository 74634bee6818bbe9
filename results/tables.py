"""The results tables of docs/results.md, docs/revgat_results.md and docs/results-overview.md, generated from the committed runs.

Every published training number comes from a run directory under ``results/runs/`` (its
``config.yaml``, ``metrics.jsonl`` and ``summary.json``: no weights; results/README.md has the
rules), listed in ``results/index.yaml`` with the section and label it is shown under (an entry
whose ``run`` is a list pools the seeds of several runs into one row). This script writes the
tables between the ``<!-- results:SECTION -->`` and ``<!-- /results -->`` markers (indented
like the opening marker); with ``--check`` it writes nothing and fails when a published table
differs from the runs. Most sections are the full table (``row``); those in ``FORMATS`` have
their own columns.

    python results/tables.py            # rewrite the tables
    python results/tables.py --check    # what tests/test_results.py runs
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGETS = [REPO / "docs" / "results.md", REPO / "docs" / "revgat_results.md", REPO / "docs" / "results-overview.md"]
MARKER = re.compile(
    r"^(?P<indent>[ \t]*)(?P<open><!-- results:(?P<section>[\w-]+) -->\n)(?P<body>.*?)^(?P=indent)(?P<close><!-- /results -->)",
    re.S | re.M,
)
DATASETS = {"cora": "Cora", "citeseer": "CiteSeer", "coauthor-cs": "Coauthor CS"}


def load_run(name: str) -> Dict[str, Any]:
    folder = HERE / "runs" / name
    if not (folder / "summary.json").is_file():
        raise SystemExit(f"results/index.yaml lists {name}, but results/runs/{name} has no summary.json "
                         "(a run still training, or not committed)")  # fmt: skip
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    return {"run": name, "folder": folder, "summary": summary, "config": config}


def seed_folders(folder: Path, config: Dict[str, Any]) -> List[Path]:
    """The folder holding each seed's metrics.jsonl: the run's own with one seed, run-K with several."""
    return [folder] if config["runs"] == 1 else [folder / f"run-{i}" for i in range(config["runs"])]


def pooled(parts: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One summary over the seeds of several runs of one recipe (mean and sample std, as summary.json)."""
    runs = [r for part in parts for r in part["summary"]["runs"]]
    metrics = {part["summary"]["metric"] for part in parts}
    seeds = [r["seed"] for r in runs]
    recipes = {json.dumps({k: v for k, v in p["config"].items() if k not in ("seed", "runs", "out")}, sort_keys=True) for p in parts}
    if len(metrics) != 1 or len(recipes) != 1 or len(set(seeds)) != len(seeds):
        raise SystemExit(f"results/index.yaml pools {[p['run'] for p in parts]}: they must share a recipe, not a seed")

    def stats(key: str) -> Dict[str, float]:
        values = [r[key] for r in runs]
        return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    return {"metric": metrics.pop(), "runs": runs, "val": stats("val"), "test": stats("test")}


def load_index() -> List[Dict[str, Any]]:
    entries = yaml.safe_load((HERE / "index.yaml").read_text(encoding="utf-8")) or []
    for entry in entries:
        names = entry["run"] if isinstance(entry["run"], list) else [entry["run"]]
        parts = [load_run(name) for name in names]
        summary = parts[0]["summary"] if len(parts) == 1 else pooled(parts)
        entry.update(names=names, parts=parts, summary=summary, config=parts[0]["config"])
    return entries


def _stat(stats: Dict[str, float], runs: int) -> str:
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}" if runs > 1 else f"{stats['mean']:.4f}"


def links(entry: Dict[str, Any]) -> str:
    return ", ".join(f"[`{name}`](results/runs/{name})" for name in entry["names"])


def runnable(command: str) -> str:
    """The command as a reader runs it in a fresh clone: into ``runs/NAME``, not over the committed
    ``results/runs/NAME`` (which holds the run already, so train would refuse it)."""
    return re.sub(r"--out results/runs/(\S+)", r"--out runs/\1", command)


def row(entry: Dict[str, Any]) -> str:
    summary, config = entry["summary"], entry["config"]
    runs = summary["runs"]
    env = summary.get("environment", {})
    seeds = ", ".join(str(r["seed"]) for r in runs)
    epochs = "/".join(sorted({str(r.get("epochs", config["epochs"])) for r in runs}))
    # Runs from before the summary recorded its environment still have their thread count.
    machine = f"{env.get('cpu_model', 'CPU not recorded')}, {env.get('threads', config.get('threads', '?'))} thread(s)"
    commands = [runnable(p["summary"].get("command") or f"revgnn-dgl train --config results/runs/{p['run']}/config.yaml")
                for p in entry["parts"]]  # fmt: skip
    command = "; ".join(f"`{c}`" for c in commands)
    return (
        f"| {entry['label']} | {summary['metric']} | {_stat(summary['val'], len(runs))} | **{_stat(summary['test'], len(runs))}** | "
        f"{seeds} | {epochs} | {machine} | {links(entry)} | {command} |"
    )


def seconds_per_epoch(entry: Dict[str, Any]) -> str:
    """The mean ``time`` of every epoch of every seed (one training step plus its evaluation)."""
    times = []
    for part in entry["parts"]:
        for sub in seed_folders(part["folder"], part["config"]):
            records = [json.loads(line) for line in (sub / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
            times += [r["time"] for r in records if "time" in r]
    mean = statistics.mean(times)
    return f"{mean:.2f}" if mean < 10 else f"{mean:.1f}"


def revgat_row(entry: Dict[str, Any]) -> str:
    """docs/revgat_results.md's table: dataset, shape (and parameter count), epochs run and s/epoch."""
    summary, config = entry["summary"], entry["config"]
    runs = summary["runs"]
    shape = f"{config['num_layers']} x {config['hidden']} x {config['model_args']['heads']}"
    if "parameters" in entry:
        shape += f" ({entry['parameters']:,} par.)"
    epochs = ", ".join(str(r["epochs"]) for r in runs) + " (" + ", ".join(str(r["epoch"]) for r in runs) + ")"
    return (
        f"| {DATASETS.get(config['dataset'], config['dataset'])} | {entry['label']} | {shape} | {_stat(summary['val'], len(runs))} | "
        f"**{_stat(summary['test'], len(runs))}** | {epochs} | {seconds_per_epoch(entry)} | {links(entry)} |"
    )


def probe_row(entry: Dict[str, Any]) -> str:
    """A one-seed probe: what it changed, and its best-validation epoch's scores to 3 decimals."""
    (run,) = entry["summary"]["runs"]
    return f"| {links(entry)} | {entry['label']} | {run['val']:.3f} | {run['test']:.3f} |"


FORMATS = {  # section -> (header lines, row)
    "revgat": (["| dataset | model | layers x hidden x heads | val | test | epochs run (best) | s/epoch | run |",
                "|---|---|---|---|---|---|---|---|"], revgat_row),  # fmt: skip
    "revgat-probes": (["| probe | change from the Cora recipe above | val | test |", "|---|---|---|---|"], probe_row),
}
FULL = (
    ["| model | metric | val | test | seeds | epochs | machine | run | command |", "|---|---|---|---|---|---|---|---|---|"],
    row,
)


def table(section: str, entries: List[Dict[str, Any]], link_prefix: str, indent: str = "") -> str:
    chosen = [e for e in entries if section in ([e["section"]] + list(e.get("also", [])))]
    if not chosen:
        raise SystemExit(f"no run in results/index.yaml for section {section!r}")
    header, make_row = FORMATS.get(section, FULL)
    lines = header + [make_row(e).replace("](results/", f"]({link_prefix}results/") for e in chosen]
    return "".join(f"{indent}{line}\n" for line in lines)


def render(text: str, entries: List[Dict[str, Any]], link_prefix: str) -> str:
    def fill(m: "re.Match[str]") -> str:
        indent = m.group("indent")
        return indent + m.group("open") + table(m.group("section"), entries, link_prefix, indent) + indent + m.group("close")

    return MARKER.sub(fill, text)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a published table differs from the runs")
    args = parser.parse_args(argv)
    entries = load_index()
    stale = []
    for target in TARGETS:
        text = target.read_text(encoding="utf-8")
        prefix = "../" if target.parent.name == "docs" else ""
        new = render(text, entries, prefix)
        if new != text:
            stale.append(target)
            if not args.check:
                target.write_text(new, encoding="utf-8")
    if args.check and stale:
        print("published results differ from the committed runs in: " + ", ".join(str(p) for p in stale)
              + "; run python results/tables.py", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
