"""Every published training number is backed by a committed run, and the tables say what they hold."""
from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_tables", REPO / "results" / "tables.py")
tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tables)


def committed_weights(folder: Path) -> list:
    """The weight files of a run folder that are (or, outside a git checkout, would be) committed:
    a local training run leaves its ignored checkpoints beside the small files."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--", str(folder)], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = [str(p) for p in folder.rglob("*")]
    return [name for name in listed if name.endswith(".safetensors")]


def test_published_tables_equal_the_committed_runs() -> None:
    assert tables.main(["--check"]) == 0, "docs/results.md or README.md differ from results/runs: run python results/tables.py"


def test_every_indexed_run_is_complete_and_consistent() -> None:
    entries = tables.load_index()
    assert entries
    for entry in entries:
        folder = REPO / "results" / "runs" / entry["run"]
        summary, config = entry["summary"], entry["config"]
        assert not committed_weights(folder), f"{folder}: weights are not committed here"
        assert len(summary["runs"]) == config["runs"]
        # The summary's numbers are those of the best-validation epoch in each run's metrics.
        for i, run in enumerate(summary["runs"]):
            sub = folder if config["runs"] == 1 else folder / f"run-{i}"
            records = [json.loads(line) for line in (sub / "metrics.jsonl").read_text().splitlines() if line.strip()]
            best = max((r for r in records if r.get("val") is not None), key=lambda r: r["val"])
            assert (best["epoch"], best["val"], best["test"]) == (run["epoch"], run["val"], run["test"]), sub


def test_a_changed_number_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "results.md"
    entries = tables.load_index()
    section = entries[0]["section"]
    docs.write_text(f"<!-- results:{section} -->\n" + tables.table(section, entries, "") + "<!-- /results -->\n")
    monkeypatch.setattr(tables, "TARGETS", [docs])
    assert tables.main(["--check"]) == 0
    docs.write_text(docs.read_text().replace("**0.", "**1.", 1))  # one published test score edited
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
