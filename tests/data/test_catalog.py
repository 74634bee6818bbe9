"""The dataset catalogue: importable without DGL, and true to the loaded datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from revgnn_dgl.data import DatasetError
from revgnn_dgl.data.catalog import CATALOG, catalog_names, dataset_catalog, dataset_info
from revgnn_dgl.data.registry import LOADERS, dataset_names

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_catalog_imports_neither_dgl_nor_torch():
    code = (
        "import sys, json\n"
        "import revgnn_dgl.data.catalog as c\n"
        "rows = c.dataset_catalog()\n"
        "print(json.dumps({'dgl': 'dgl' in sys.modules, 'torch': 'torch' in sys.modules, 'rows': len(rows)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"dgl": False, "torch": False, "rows": len(CATALOG)}


def test_catalog_and_registry_name_the_same_datasets():
    assert catalog_names() == dataset_names() == list(LOADERS)


def test_rows_are_plain_data():
    rows = dataset_catalog()
    assert [row["name"] for row in rows] == catalog_names()
    json.dumps(rows)  # only plain values
    cora = rows[catalog_names().index("cora")]
    assert cora["split"] == "140 / 500 / 1000" and cora["outputs"] == 7 and cora["task"] == "multiclass"
    assert set(cora) >= {
        "nodes",
        "edges",
        "node_feats",
        "edge_feats",
        "metric",
        "location",
        "files",
        "source",
        "citation",
    }


def test_row_locations_follow_the_root(tmp_path, monkeypatch):
    (tmp_path / "cora").mkdir()
    rows = {row["name"]: row for row in dataset_catalog(tmp_path)}
    assert rows["cora"]["location"] == str(tmp_path / "cora") and rows["cora"]["available"] is False
    assert rows["ogbn-proteins"]["location"] == str(tmp_path / "ogbn_proteins")
    assert rows["synthetic-proteins"]["location"] == "" and rows["synthetic-proteins"]["available"] is True
    monkeypatch.setenv("REVGNN_DGL_DATA", str(tmp_path))
    assert {row["name"]: row for row in dataset_catalog()}["humloc"]["location"] == str(tmp_path / "humloc")


def test_real_data_marked_available(shared_data_dir):
    rows = {row["name"]: row for row in dataset_catalog(shared_data_dir)}
    for name in ("cora", "citeseer", "humloc", "amazon-computers", "coauthor-cs"):
        assert rows[name]["available"], name


def test_unknown_name():
    with pytest.raises(
        DatasetError,
        match="unknown dataset 'cor': valid names are synthetic-proteins, synthetic-family, ogbn-proteins, ogbn-arxiv, cora",
    ):
        dataset_info("cor")


def _check_facts(ds, name: str) -> None:
    info = CATALOG[name]
    g = ds.graph
    assert g.num_nodes() == info.nodes
    assert g.num_edges() == 2 * info.edges
    assert ds.num_node_feats == info.node_feats and ds.num_edge_feats == info.edge_feats
    assert ds.task == info.task and ds.metric_name == info.metric and ds.num_outputs == info.outputs
    assert (len(ds.train_idx), len(ds.val_idx), len(ds.test_idx)) == info.split


@pytest.mark.parametrize(
    "name, folder",
    [
        ("cora", "cora"),
        ("citeseer", "citeseer"),
        ("humloc", "humloc"),
        ("amazon-computers", "amazon_computers"),
        ("coauthor-cs", "coauthor_cs"),
    ],
)
def test_facts_match_the_loaded_real_dataset(real_dataset, name, folder):
    _check_facts(real_dataset(name, folder), name)


def test_facts_match_synthetic_defaults():
    from revgnn_dgl.data import load_dataset

    _check_facts(load_dataset("synthetic-proteins"), "synthetic-proteins")
    _check_facts(load_dataset("synthetic-family"), "synthetic-family")
