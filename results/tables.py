"""The results tables of docs/results.md and the README, generated from the committed runs.

Every published training number comes from a run directory under ``results/runs/`` (its
``config.yaml``, ``metrics.jsonl`` and ``summary.json``: no weights), listed in
``results/index.yaml`` with the section and label it is shown under. This script writes the
tables between the ``<!-- results:SECTION -->`` and ``<!-- /results -->`` markers; with
``--check`` it writes nothing and fails when a published table differs from the runs.

    python results/tables.py            # rewrite the tables
    python results/tables.py --check    # what tests/test_results.py runs
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGETS = [REPO / "docs" / "results.md", REPO / "README.md"]
MARKER = re.compile(r"(<!-- results:(?P<section>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def load_index() -> List[Dict[str, Any]]:
    entries = yaml.safe_load((HERE / "index.yaml").read_text(encoding="utf-8")) or []
    for entry in entries:
        folder = HERE / "runs" / entry["run"]
        if not (folder / "summary.json").is_file():
            raise SystemExit(f"results/index.yaml lists {entry['run']}, but results/runs/{entry['run']} has no summary.json "
                             "(a run still training, or not committed)")  # fmt: skip
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        entry.update(summary=summary, config=config)
    return entries


def _stat(stats: Dict[str, float], runs: int) -> str:
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}" if runs > 1 else f"{stats['mean']:.4f}"


def row(entry: Dict[str, Any]) -> str:
    summary, config = entry["summary"], entry["config"]
    runs = summary["runs"]
    env = summary.get("environment", {})
    seeds = ", ".join(str(r["seed"]) for r in runs)
    epochs = "/".join(sorted({str(r.get("epochs", config["epochs"])) for r in runs}))
    # Runs from before the summary recorded its environment still have their thread count.
    machine = f"{env.get('cpu_model', 'CPU not recorded')}, {env.get('threads', config.get('threads', '?'))} thread(s)"
    command = summary.get("command") or f"revgnn-dgl train --config results/runs/{entry['run']}/config.yaml"
    return (
        f"| {entry['label']} | {summary['metric']} | {_stat(summary['val'], len(runs))} | **{_stat(summary['test'], len(runs))}** | "
        f"{seeds} | {epochs} | {machine} | [`{entry['run']}`](results/runs/{entry['run']}) | `{command}` |"
    )


def table(section: str, entries: List[Dict[str, Any]], link_prefix: str) -> str:
    chosen = [e for e in entries if section in ([e["section"]] + list(e.get("also", [])))]
    if not chosen:
        raise SystemExit(f"no run in results/index.yaml for section {section!r}")
    lines = [
        "| model | metric | val | test | seeds | epochs | machine | run | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ] + [row(e).replace("](results/", f"]({link_prefix}results/") for e in chosen]
    return "\n".join(lines) + "\n"


def render(text: str, entries: List[Dict[str, Any]], link_prefix: str) -> str:
    return MARKER.sub(lambda m: m.group(1) + table(m.group("section"), entries, link_prefix) + m.group(4), text)


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
