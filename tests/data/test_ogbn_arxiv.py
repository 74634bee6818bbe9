"""ogbn-arxiv through OGB's own loader, on a miniature copy in OGB's raw format.

The miniature has OGB's on-disk layout (``<root>/ogbn_arxiv/raw/*.csv.gz``,
``split/time/*.csv.gz``, ``RELEASE_v1.txt``), so ``DglNodePropPredDataset`` parses and caches
it exactly as it would the real download; the loader then applies the released RevGAT
preprocessing (bidirected simple graph, one self-loop per node).
"""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from revgnn_dgl.data import DatasetError, load_dataset, load_ogbn_arxiv

NUM_NODES, NUM_FEATS, NUM_CLASSES = 30, 6, 5


def _write_csv(path: Path, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, header=False, index=False, compression="gzip")


def write_mini_arxiv(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a miniature ogbn-arxiv under ``root/ogbn_arxiv``; return its arrays."""
    rng = np.random.default_rng(seed)
    folder = root / "ogbn_arxiv"
    pairs = rng.choice(NUM_NODES * NUM_NODES, size=70, replace=False)
    src, dst = pairs // NUM_NODES, pairs % NUM_NODES
    edges = np.stack([src[src != dst], dst[src != dst]], 1)[:60]
    # Citations both ways between one pair, a duplicate row and a self-citation: the
    # preprocessing must merge the first two and replace the loop.
    edges = np.concatenate([edges, [[3, 4], [4, 3], [3, 4], [5, 5]]])
    data = {
        "edges": edges,
        "feat": np.round(rng.normal(size=(NUM_NODES, NUM_FEATS)), 6),
        "labels": rng.integers(0, NUM_CLASSES, size=(NUM_NODES, 1)),
        "year": rng.integers(2010, 2021, size=(NUM_NODES, 1)),
        "train": np.arange(0, 18),
        "valid": np.arange(18, 24),
        "test": np.arange(24, 30),
    }
    data["labels"][:NUM_CLASSES, 0] = np.arange(NUM_CLASSES)  # every class present
    raw = folder / "raw"
    _write_csv(raw / "edge.csv.gz", edges)
    _write_csv(raw / "node-feat.csv.gz", data["feat"])
    _write_csv(raw / "node-label.csv.gz", data["labels"])
    _write_csv(raw / "node_year.csv.gz", data["year"])
    _write_csv(raw / "num-node-list.csv.gz", np.array([[NUM_NODES]]))
    _write_csv(raw / "num-edge-list.csv.gz", np.array([[len(edges)]]))
    for part in ("train", "valid", "test"):
        _write_csv(folder / "split" / "time" / f"{part}.csv.gz", data[part].reshape(-1, 1))
    (folder / "RELEASE_v1.txt").write_text("miniature ogbn-arxiv for tests\n")
    return data


def _expected_edges(edges: np.ndarray, self_loops: bool) -> set[tuple[int, int]]:
    """Written independently of DGL: both directions of every non-loop pair, plus (v, v) for all v."""
    out = {(int(u), int(v)) for u, v in edges if u != v} | {(int(v), int(u)) for u, v in edges if u != v}
    if self_loops:
        out |= {(v, v) for v in range(NUM_NODES)}
    return out


@pytest.fixture(autouse=True)
def no_stdin(monkeypatch):
    """Any interactive prompt from OGB fails the test instead of blocking."""

    def refuse(*args):
        raise AssertionError(f"OGB prompted on stdin: {args}")

    monkeypatch.setattr(builtins, "input", refuse)


def _check(ds, data, self_loops: bool = True) -> None:
    g = ds.graph
    assert ds.name == "ogbn-arxiv" and ds.task == "multiclass" and ds.metric_name == "accuracy"
    assert g.num_nodes() == NUM_NODES and ds.num_node_feats == NUM_FEATS and ds.num_outputs == NUM_CLASSES
    expected = _expected_edges(data["edges"], self_loops)
    edges = list(zip(*(t.tolist() for t in g.edges())))
    assert len(edges) == len(set(edges)) == len(expected)  # no multi-edges
    assert set(edges) == expected
    if self_loops:
        assert torch.equal(g.in_degrees(), g.out_degrees()) and int(g.in_degrees().min()) >= 1
    assert g.ndata["feat"].dtype == torch.float32
    np.testing.assert_allclose(g.ndata["feat"].numpy(), data["feat"], rtol=1e-6)
    assert torch.equal(g.ndata["year"], torch.from_numpy(data["year"]))
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (NUM_NODES,)
    assert torch.equal(ds.labels, torch.from_numpy(data["labels"][:, 0]))
    for field, part in (("train_idx", "train"), ("val_idx", "valid"), ("test_idx", "test")):
        idx = getattr(ds, field)
        assert idx.dtype == torch.int64 and torch.equal(idx, torch.from_numpy(data[part]))


def test_reads_ogb_raw_format_then_cache(tmp_path):
    data = write_mini_arxiv(tmp_path)
    first = load_dataset("ogbn-arxiv", root=tmp_path)
    _check(first, data)
    pairs = {frozenset((int(u), int(v))) for u, v in data["edges"] if u != v}
    assert first.graph.num_edges() == 2 * len(pairs) + NUM_NODES
    # OGB cached its processed graph; the second load reads that file.
    assert (tmp_path / "ogbn_arxiv" / "processed" / "dgl_data_processed").is_file()
    _check(load_ogbn_arxiv(root=tmp_path), data)


def test_without_self_loops(tmp_path):
    data = write_mini_arxiv(tmp_path)
    ds = load_dataset("ogbn-arxiv", root=tmp_path, self_loops=False)
    _check(ds, data, self_loops=False)
    assert not ds.graph.has_edges_between(5, 5)


def test_download_false_never_touches_network(tmp_path, monkeypatch):
    import ogb.nodeproppred.dataset_dgl as ogb_dgl

    def no_network(url):
        raise AssertionError("network used")

    monkeypatch.setattr(ogb_dgl, "decide_download", no_network)
    with pytest.raises(DatasetError, match="the option download=false turns downloads off") as err:
        load_dataset("ogbn-arxiv", root=tmp_path, download=False)
    message = str(err.value)
    assert "arxiv.zip" in message and "ogbn_arxiv" in message
    # In the command line's terms, with the Python names beside them.
    assert "--dataset-option download=false" in message and "--root DIR" in message and "root=<" not in message


def test_both_ogb_loaders_download_by_default_and_say_so_alike(tmp_path, monkeypatch):
    import inspect
    import urllib.error

    import ogb.nodeproppred.dataset_dgl as ogb_dgl

    from revgnn_dgl.data.ogb_proteins import load_ogbn_proteins
    from revgnn_dgl.data.ogbn_arxiv import load_ogbn_arxiv

    for loader in (load_ogbn_arxiv, load_ogbn_proteins):
        assert inspect.signature(loader).parameters["download"].default is True

    def offline(url):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(ogb_dgl, "decide_download", offline)
    messages = []
    for name in ("ogbn-arxiv", "ogbn-proteins"):
        with pytest.raises(DatasetError) as err:
            load_dataset(name, root=tmp_path / "empty")
        messages.append(str(err.value).replace(name, "NAME").replace(name.replace("-", "_"), "FOLDER"))
    strip = [m.replace("arxiv", "X").replace("proteins", "X") for m in messages]
    assert strip[0] == strip[1], messages


def test_failed_download_fails_clearly(tmp_path, monkeypatch):
    import urllib.error

    import ogb.nodeproppred.dataset_dgl as ogb_dgl

    def offline(url):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    # Simulate no network at OGB's first network call; the rest is OGB's real path.
    monkeypatch.setattr(ogb_dgl, "decide_download", offline)
    with pytest.raises(DatasetError, match="download failed: URLError"):
        load_dataset("ogbn-arxiv", root=tmp_path / "empty")


def test_outdated_folder_raises_instead_of_prompting(tmp_path):
    write_mini_arxiv(tmp_path)
    (tmp_path / "ogbn_arxiv" / "RELEASE_v1.txt").unlink()
    with pytest.raises(DatasetError, match="RELEASE_v1.txt"):
        load_dataset("ogbn-arxiv", root=tmp_path)


def test_damaged_files_raise(tmp_path):
    write_mini_arxiv(tmp_path)
    (tmp_path / "ogbn_arxiv" / "raw" / "num-node-list.csv.gz").unlink()
    with pytest.raises(DatasetError, match="damaged"):
        load_dataset("ogbn-arxiv", root=tmp_path)
