"""Every published training number is backed by a committed run, the tables say what they hold,
and results/ keeps its rules (results/README.md): names, no temporary paths, only the small files."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "results" / "runs"
spec = importlib.util.spec_from_file_location("results_tables", REPO / "results" / "tables.py")
tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tables)

def committed(folder: Path) -> List[str]:
    """The files under ``folder`` that are (or, outside a git checkout, would be) committed, as
    repository paths: a local training run leaves its ignored checkpoints and locks beside them."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--", str(folder)], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = [p.relative_to(REPO).as_posix() for p in folder.rglob("*") if p.is_file()]
        listed = [name for name in listed if not name.endswith((".safetensors", ".lock"))]
    return listed


def committed_weights(folder: Path) -> list:
    return [name for name in committed(folder) if name.endswith(".safetensors")]


def test_published_tables_equal_the_committed_runs() -> None:
    assert tables.main(["--check"]) == 0, "a published table differs from results/runs: run python results/tables.py"


def test_revgat_results_are_generated() -> None:
    """docs/revgat_results.md's tables are written by tables.py (and so checked above), not by hand."""
    assert REPO / "docs" / "revgat_results.md" in tables.TARGETS
    text = (REPO / "docs" / "revgat_results.md").read_text(encoding="utf-8")
    sections = [m.group("section") for m in tables.MARKER.finditer(text)]
    assert sections == ["revgat", "revgat-probes"]
    outside = tables.MARKER.sub("", text)
    assert not re.search(r"^\s*\|.*\| \*\*0\.\d+", outside, re.M), "a results row outside the generated tables"


def test_every_indexed_run_is_complete_and_consistent() -> None:
    entries = tables.load_index()
    assert entries
    for entry in entries:
        for part in entry["parts"]:
            folder, summary, config = part["folder"], part["summary"], part["config"]
            assert not committed_weights(folder), f"{folder}: weights are not committed here"
            assert len(summary["runs"]) == config["runs"]
            # The summary's numbers are those of the best-validation epoch in each run's metrics.
            for run, sub in zip(summary["runs"], tables.seed_folders(folder, config)):
                records = [json.loads(line) for line in (sub / "metrics.jsonl").read_text().splitlines() if line.strip()]
                best = max((r for r in records if r.get("val") is not None), key=lambda r: r["val"])
                assert (best["epoch"], best["val"], best["test"]) == (run["epoch"], run["val"], run["test"]), sub


def test_a_pooled_row_is_the_mean_and_sample_std_of_its_seeds() -> None:
    (entry,) = [e for e in tables.load_index() if e["names"] == ["cora-revgat-3x32-noselfloops", "cora-revgat-3x32-noselfloops-seeds12"]]
    assert [r["seed"] for r in entry["summary"]["runs"]] == [0, 1, 2]
    assert tables._stat(entry["summary"]["val"], 3) == "0.7940 ± 0.0072"
    assert tables._stat(entry["summary"]["test"], 3) == "0.8053 ± 0.0068"


def test_indexed_parameter_counts_are_the_models() -> None:
    """The parameter counts published with docs/revgat_results.md's rows are those of the configs."""
    from revgnn_dgl.models.revgat import RevGAT

    dims = {"cora": (1433, 7), "citeseer": (3703, 6), "coauthor-cs": (6805, 15)}  # features, classes
    counted = 0
    for entry in tables.load_index():
        if "parameters" not in entry:
            continue
        config = entry["config"]
        assert config["model"] == "revgat", entry["run"]
        model = RevGAT(*dims[config["dataset"]], hidden=config["hidden"], num_layers=config["num_layers"],
                       groups=config["groups"], dropout=config["dropout"], **config["model_args"])  # fmt: skip
        assert sum(p.numel() for p in model.parameters()) == entry["parameters"], entry["run"]
        counted += 1
    assert counted


@pytest.mark.parametrize("section, indent", [(None, ""), ("revgat", ""), ("revgat-probes", "  ")])
def test_a_changed_number_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, section, indent) -> None:
    docs = tmp_path / "results.md"
    entries = tables.load_index()
    section = section or entries[0]["section"]
    docs.write_text(f"- a list item:\n\n{indent}<!-- results:{section} -->\n{indent}<!-- /results -->\n")
    monkeypatch.setattr(tables, "TARGETS", [docs])
    assert tables.main(["--check"]) == 1  # an empty table is stale
    assert tables.main([]) == 0 and tables.main(["--check"]) == 0
    assert all(line.startswith(indent) for line in docs.read_text().splitlines()[2:])
    text = docs.read_text()
    edited = re.sub(r"\| (\*\*)?0\.(\d)", lambda m: f"| {m.group(1) or ''}1.{m.group(2)}", text, count=1)  # one score edited
    assert edited != text
    docs.write_text(edited)
    assert tables.main(["--check"]) == 1


def test_bundled_cards_from_runs_match_their_run() -> None:
    """A card made from a committed run (results/make_card.py) publishes that seed's numbers."""
    from revgnn_dgl import get_config, list_models

    checked = 0
    for name in list_models():
        card = get_config(name)
        training = card.get("training") or {}
        if (card.get("checkpoint") or {}).get("source") != "bundled" or "run" not in training:
            continue
        summary = json.loads((REPO / training["run"] / "summary.json").read_text())
        (run,) = [r for r in summary["runs"] if r["seed"] == training["seed"]]
        metrics = card["metrics"]
        assert (metrics["best_epoch"], metrics["val"], metrics["test"]) == (
            run["epoch"], pytest.approx(run["val"], abs=1e-7), pytest.approx(run["test"], abs=1e-7)
        ), name  # fmt: skip
        checked += 1
    assert checked, "no bundled card names the committed run it was made from"
