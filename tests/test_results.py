"""Every published training number is backed by a committed run, and the tables say what they hold."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_tables", REPO / "results" / "tables.py")
tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tables)


def test_published_tables_equal_the_committed_runs() -> None:
    assert tables.main(["--check"]) == 0, "docs/results.md or README.md differ from results/runs: run python results/tables.py"


def test_every_indexed_run_is_complete_and_consistent() -> None:
    entries = tables.load_index()
    assert entries
    for entry in entries:
        folder = REPO / "results" / "runs" / entry["run"]
        summary, config = entry["summary"], entry["config"]
        assert not list(folder.rglob("*.safetensors")), f"{folder}: weights are not committed here"
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
