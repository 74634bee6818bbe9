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

NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
KEPT = {"config.yaml", "metrics.jsonl", "summary.json"}  # a run's own files
KEPT_PER_SEED = {"config.yaml", "metrics.jsonl"}  # run-K/


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


def run_folders() -> Dict[str, List[str]]:
    """Each committed run folder's name -> its files, relative to the folder."""
    folders: Dict[str, List[str]] = {}
    for path in committed(RUNS):
        name, _, rest = path[len("results/runs/") :].partition("/")
        folders.setdefault(name, []).append(rest)
    return folders


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
            # The summary's numbers are those of the best-validation epoch in each run's metrics: the
            # highest score, or with select val_loss the lowest validation loss (the first on a tie).
            select = config.get("select", "val")
            assert summary.get("select", "val") == select, folder
            for run, sub in zip(summary["runs"], tables.seed_folders(folder, config)):
                records = [
                    json.loads(line) for line in (sub / "metrics.jsonl").read_text().splitlines() if line.strip()
                ]
                evaluated = [r for r in records if r.get("val") is not None]
                if select == "val_loss":
                    best = min(evaluated, key=lambda r: r["val_loss"])
                else:
                    best = max(evaluated, key=lambda r: r["val"])
                assert (best["epoch"], best["val"], best["test"]) == (run["epoch"], run["val"], run["test"]), sub


def test_a_pooled_row_is_the_mean_and_sample_std_of_its_seeds() -> None:
    (entry,) = [
        e
        for e in tables.load_index()
        if e["names"] == ["cora-revgat-3x32-noselfloops", "cora-revgat-3x32-noselfloops-seeds12"]
    ]
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
    edited = re.sub(
        r"\| (\*\*)?0\.(\d)", lambda m: f"| {m.group(1) or ''}1.{m.group(2)}", text, count=1
    )  # one score edited
    assert edited != text
    docs.write_text(edited)
    assert tables.main(["--check"]) == 1


def test_committed_configs_write_to_their_own_repository_path() -> None:
    """A committed config's out: (and its summary's --out) is its folder's path, never a temporary folder."""
    checked = 0
    for name, files in run_folders().items():
        for rel in files:
            if rel.endswith("config.yaml"):
                folder = f"results/runs/{name}/{rel}".rsplit("/", 1)[0]
                config = yaml.safe_load((REPO / folder / "config.yaml").read_text(encoding="utf-8"))
                assert config["out"] == folder, f"{folder}/config.yaml: out: {config['out']}"
                checked += 1
        summary = json.loads((RUNS / name / "summary.json").read_text(encoding="utf-8"))
        if summary.get("command"):
            assert re.search(r"--out (\S+)", summary["command"]).group(1) == f"results/runs/{name}", name
    assert checked
    for path in committed(REPO / "results"):
        if path.endswith((".yaml", ".json", ".jsonl", ".md")):
            assert "/tmp/" not in (REPO / path).read_text(encoding="utf-8"), path


def test_run_folders_keep_only_their_small_files() -> None:
    folders = run_folders()
    assert folders
    for name, files in folders.items():
        config = yaml.safe_load((RUNS / name / "config.yaml").read_text(encoding="utf-8"))
        seeds = {f"run-{i}" for i in range(config["runs"])} if config["runs"] > 1 else set()
        expected = {"config.yaml", "summary.json"} | ({"metrics.jsonl"} if not seeds else set())
        expected |= {f"{seed}/{f}" for seed in seeds for f in KEPT_PER_SEED}
        assert set(files) == expected, (
            f"results/runs/{name} commits {sorted(set(files) - expected)}, lacks {sorted(expected - set(files))}"
        )


STUDY_FILES = {
    "best.yaml",
    "trials.csv",
    "STUDY.md",
    "optimization_history.png",
    "param_importances.png",
    "intermediate_values.png",
}


def test_study_folders_keep_only_their_summary() -> None:
    """A committed tune study (results/studies/NAME) keeps its summary: no study.db, no trial runs."""
    studies = REPO / "results" / "studies"
    for path in committed(studies) if studies.is_dir() else []:
        name, _, rest = path[len("results/studies/") :].partition("/")
        assert NAME.fullmatch(name), f"results/studies/{name}: lowercase words joined by hyphens"
        assert rest in STUDY_FILES, f"results/studies/{name} commits {rest}, only {sorted(STUDY_FILES)}"
        if rest.endswith(".png"):
            assert (REPO / path).stat().st_size < 200_000, f"{path}: over 200 KB"
        if rest == "best.yaml":
            assert "out" not in yaml.safe_load((REPO / path).read_text(encoding="utf-8")), path


def test_run_folder_names_follow_the_policy() -> None:
    """DATASET-MODEL-SHAPE[-VARIANT]: lowercase words joined by hyphens, starting with the dataset."""
    for name in run_folders():
        assert NAME.fullmatch(name), f"results/runs/{name}: lowercase words joined by hyphens"
        dataset = yaml.safe_load((RUNS / name / "config.yaml").read_text(encoding="utf-8"))["dataset"]
        assert name.startswith((dataset + "-", dataset.split("-")[0] + "-")), (
            f"results/runs/{name}: starts with its dataset {dataset}"
        )


def test_every_run_folder_is_published() -> None:
    """Each committed run is in results/index.yaml or cited from the documentation."""
    indexed = {name for entry in tables.load_index() for name in entry["names"]}
    docs = "\n".join(p.read_text(encoding="utf-8") for p in [REPO / "README.md", *(REPO / "docs").glob("*.md")])
    for name in run_folders():
        assert name in indexed or f"results/runs/{name}" in docs or f"`{name}`" in docs, (
            f"results/runs/{name} is cited nowhere"
        )


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
