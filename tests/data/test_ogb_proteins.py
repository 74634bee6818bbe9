"""ogbn-proteins through OGB's own loader, on a miniature copy in OGB's raw format.

The miniature has OGB's on-disk layout (``<root>/ogbn_proteins/raw/*.csv.gz``,
``split/species/*.csv.gz``, ``RELEASE_v1.txt``), so ``DglNodePropPredDataset``
parses and caches it exactly as it would the real download.
"""

from __future__ import annotations

import builtins
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from revgnn_dgl.data import DatasetError, load_dataset

NUM_NODES = 40
NUM_RAW_EDGES = 90
# NCBI taxonomy ids of ogbn-proteins's 8 species, deliberately unsorted.
TAXA = np.array([9606, 3702, 511145, 4932, 10090, 6239, 7227, 7955])


def _write_csv(path: Path, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, header=False, index=False, compression="gzip")


def write_mini_proteins(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a miniature ogbn-proteins under ``root/ogbn_proteins``; return its arrays."""
    rng = np.random.default_rng(seed)
    folder = root / "ogbn_proteins"
    pairs = rng.choice(NUM_NODES * NUM_NODES, size=3 * NUM_RAW_EDGES, replace=False)
    src, dst = pairs // NUM_NODES, pairs % NUM_NODES
    keep = src < dst  # one row per undirected pair, as OGB stores them
    edges = np.stack([src[keep], dst[keep]], 1)[:NUM_RAW_EDGES]
    data = {
        "edges": edges,
        "edge_feat": rng.integers(1, 1000, size=(len(edges), 8)) / 1000.0,
        "labels": rng.integers(0, 2, size=(NUM_NODES, 112)),
        "species": TAXA[rng.integers(0, 8, size=NUM_NODES)].reshape(-1, 1),
        "train": np.arange(0, 24),
        "valid": np.arange(24, 32),
        "test": np.arange(32, 40),
    }
    data["species"][:8, 0] = TAXA  # every species present
    raw = folder / "raw"
    _write_csv(raw / "edge.csv.gz", edges)
    _write_csv(raw / "edge-feat.csv.gz", data["edge_feat"])
    _write_csv(raw / "node-label.csv.gz", data["labels"])
    _write_csv(raw / "node_species.csv.gz", data["species"])
    _write_csv(raw / "num-node-list.csv.gz", np.array([[NUM_NODES]]))
    _write_csv(raw / "num-edge-list.csv.gz", np.array([[len(edges)]]))
    for part in ("train", "valid", "test"):
        _write_csv(folder / "split" / "species" / f"{part}.csv.gz", data[part].reshape(-1, 1))
    (folder / "RELEASE_v1.txt").write_text("miniature ogbn-proteins for tests\n")
    return data


@pytest.fixture(autouse=True)
def no_stdin(monkeypatch):
    """Any interactive prompt from OGB fails the test instead of blocking."""

    def refuse(*args):
        raise AssertionError(f"OGB prompted on stdin: {args}")

    monkeypatch.setattr(builtins, "input", refuse)


def _check(ds, data) -> None:
    g = ds.graph
    edges = data["edges"]
    assert ds.name == "ogbn-proteins" and ds.task == "multilabel" and ds.metric_name == "rocauc"
    assert g.num_nodes() == NUM_NODES
    assert g.num_edges() == 2 * len(edges)  # OGB adds the reverse edges
    assert ds.num_edge_feats == 8 and ds.num_node_feats == 8 and ds.num_outputs == 112
    feat = np.zeros((NUM_NODES, 8))
    np.add.at(feat, edges[:, 0], data["edge_feat"])
    np.add.at(feat, edges[:, 1], data["edge_feat"])
    assert g.ndata["feat"].dtype == torch.float32
    np.testing.assert_allclose(g.ndata["feat"].numpy(), feat, rtol=1e-5)
    assert ds.has_species and g.ndata["species"].shape == (NUM_NODES, 8)
    expected_species = np.searchsorted(np.sort(TAXA), data["species"][:, 0])
    assert torch.equal(g.ndata["species"].argmax(1), torch.from_numpy(expected_species))
    assert ds.labels.dtype == torch.float32
    assert torch.equal(ds.labels, torch.from_numpy(data["labels"]).float())
    for field, part in (("train_idx", "train"), ("val_idx", "valid"), ("test_idx", "test")):
        idx = getattr(ds, field)
        assert idx.dtype == torch.int64 and torch.equal(idx, torch.from_numpy(data[part]))


def test_reads_ogb_raw_format_then_cache(tmp_path):
    data = write_mini_proteins(tmp_path)
    first = load_dataset("ogbn-proteins", root=tmp_path)
    _check(first, data)
    # OGB cached its processed graph; the second load reads that file.
    assert (tmp_path / "ogbn_proteins" / "processed" / "dgl_data_processed").is_file()
    _check(load_dataset("ogbn-proteins", root=tmp_path, download=False), data)


def test_offline_without_data_fails_fast_and_clearly(tmp_path, monkeypatch):
    import ogb.nodeproppred.dataset_dgl as ogb_dgl

    def offline(url):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    # Simulate no network at OGB's first network call; the rest is OGB's real path.
    monkeypatch.setattr(ogb_dgl, "decide_download", offline)
    with pytest.raises(DatasetError) as err:
        load_dataset("ogbn-proteins", root=tmp_path / "empty")
    message = str(err.value)
    assert "download failed" in message and "proteins.zip" in message
    assert "synthetic-proteins" in message and "DGL graph file" in message


def test_download_false_never_touches_network(tmp_path, monkeypatch):
    import ogb.nodeproppred.dataset_dgl as ogb_dgl

    def no_network(url):
        raise AssertionError("network used")

    monkeypatch.setattr(ogb_dgl, "decide_download", no_network)
    with pytest.raises(DatasetError, match="download=false"):
        load_dataset("ogbn-proteins", root=tmp_path, download=False)


def test_outdated_folder_raises_instead_of_prompting(tmp_path):
    write_mini_proteins(tmp_path)
    (tmp_path / "ogbn_proteins" / "RELEASE_v1.txt").unlink()
    with pytest.raises(DatasetError, match="RELEASE_v1.txt"):
        load_dataset("ogbn-proteins", root=tmp_path)


def test_damaged_files_raise(tmp_path):
    write_mini_proteins(tmp_path)
    (tmp_path / "ogbn_proteins" / "raw" / "num-node-list.csv.gz").unlink()
    with pytest.raises(DatasetError, match="damaged"):
        load_dataset("ogbn-proteins", root=tmp_path)
