"""Amazon and Coauthor graphs (Shchur et al.): real zips, generated zips, the split."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from revgnn_dgl.data import DatasetError, DatasetWarning, load_dataset
from revgnn_dgl.data.gnn_benchmark import per_class_split

# name -> (folder, nodes, undirected edges, node features, classes), from the data README.
REAL = {
    "amazon-computers": ("amazon_computers", 13752, 245861, 767, 10),
    "coauthor-cs": ("coauthor_cs", 18333, 81894, 6805, 15),
}


def _edge_set(graph) -> set:
    src, dst = graph.edges()
    return set(zip(src.tolist(), dst.tolist()))


def _check_split(ds, num_classes: int, train: int = 20, val: int = 30) -> None:
    n = ds.graph.num_nodes()
    assert torch.equal(
        torch.bincount(ds.labels[ds.train_idx], minlength=num_classes), torch.full((num_classes,), train)
    )
    assert torch.equal(torch.bincount(ds.labels[ds.val_idx], minlength=num_classes), torch.full((num_classes,), val))
    assert len(ds.test_idx) == n - num_classes * (train + val)
    every = torch.cat([ds.train_idx, ds.val_idx, ds.test_idx])
    assert torch.equal(torch.sort(every).values, torch.arange(n))  # a partition of the nodes
    for idx in (ds.train_idx, ds.val_idx, ds.test_idx):
        assert torch.equal(idx, torch.sort(idx).values)


@pytest.mark.parametrize("name", list(REAL))
def test_real_counts_graph_and_split(real_dataset, name):
    folder, nodes, edges, feats, classes = REAL[name]
    ds = real_dataset(name, folder)
    g = ds.graph
    assert (ds.name, ds.task, ds.metric_name) == (name, "multiclass", "accuracy")
    assert g.num_nodes() == nodes and g.num_edges() == 2 * edges
    assert ds.num_node_feats == feats and ds.num_edge_feats == 0 and ds.num_outputs == classes
    assert ds.graph.ndata["feat"].dtype == torch.float32 and ds.labels.dtype == torch.int64
    src, dst = g.edges()
    assert not bool((src == dst).any())  # no self-loops
    assert len(_edge_set(g)) == g.num_edges()  # no duplicates
    reverse = g.edge_ids(dst, src)  # raises if a reverse edge is missing: symmetric
    assert len(torch.unique(reverse)) == g.num_edges()
    _check_split(ds, classes)


def test_real_split_is_seeded(real_dataset, dataset_dir):
    ds = real_dataset("amazon-computers", "amazon_computers")
    root = dataset_dir("amazon_computers")  # the dataset's own folder is accepted as root
    again = load_dataset("amazon-computers", root=root, split_seed=0)
    for a, b in ((ds.train_idx, again.train_idx), (ds.val_idx, again.val_idx), (ds.test_idx, again.test_idx)):
        assert torch.equal(a, b)
    other = load_dataset("amazon-computers", root=root, split_seed=1)
    assert not torch.equal(ds.train_idx, other.train_idx) and not torch.equal(ds.val_idx, other.val_idx)
    _check_split(other, 10)
    torch.testing.assert_close(other.graph.ndata["feat"], ds.graph.ndata["feat"])


def test_real_features_match_the_npz(real_dataset, dataset_dir):
    ds = real_dataset("coauthor-cs", "coauthor_cs")
    with zipfile.ZipFile(dataset_dir("coauthor_cs") / "coauthor-cs.zip") as archive:
        npz = np.load(io.BytesIO(archive.read("ms_academic_cs.npz")), allow_pickle=False)
        attrs = sp.csr_matrix((npz["attr_data"], npz["attr_indices"], npz["attr_indptr"]), shape=npz["attr_shape"])
        labels = npz["labels"]
    rows = [0, 17, 18332]
    np.testing.assert_array_equal(ds.graph.ndata["feat"][rows].numpy(), attrs[rows].toarray())
    assert ds.graph.ndata["feat"].max() > 1  # keyword counts, not normalised
    np.testing.assert_array_equal(ds.labels.numpy(), labels)


# ------------------------------------------------------------------ generated zips
def write_gnn_benchmark_zip(
    path: Path,
    class_sizes: list[int],
    num_feats: int = 6,
    seed: int = 0,
    npz_name: str = "graph.npz",
    **overrides: np.ndarray,
) -> dict[str, np.ndarray]:
    """A zip holding one gnn-benchmark .npz: a one-way CSR adjacency with a
    self-loop, a pair stored both ways and a duplicate; return the arrays."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(class_sizes)), class_sizes)
    rng.shuffle(labels)
    n = len(labels)
    src = rng.integers(n, size=4 * n)
    dst = rng.integers(n, size=4 * n)
    src = np.concatenate([src, [0, 1, 2, 3]])
    dst = np.concatenate([dst, [0, 2, 1, 3]])  # self-loops 0-0, 3-3; pair 1-2 both ways
    adj = sp.csr_matrix((np.ones(len(src), np.float32), (src, dst)), shape=(n, n))
    adj.sum_duplicates()
    attrs = sp.csr_matrix(rng.integers(0, 3, size=(n, num_feats)).astype(np.float32))
    arrays = {
        "adj_data": adj.data,
        "adj_indices": adj.indices,
        "adj_indptr": adj.indptr,
        "adj_shape": np.array(adj.shape),
        "attr_data": attrs.data,
        "attr_indices": attrs.indices,
        "attr_indptr": attrs.indptr,
        "attr_shape": np.array(attrs.shape),
        "labels": labels,
        # As in the Coauthor files: an object array, which needs unpickling.
        "class_names": np.array([f"class {i}" for i in range(len(class_sizes))], dtype=object),
    }
    arrays.update(overrides)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(npz_name, buffer.getvalue())
    arrays["src"], arrays["dst"] = src, dst
    return arrays


@pytest.mark.parametrize(
    "name, folder, classes", [("amazon-photo", "amazon_photo", 8), ("coauthor-physics", "coauthor_physics", 5)]
)
def test_generated_zip(tmp_path, name, folder, classes):
    data = write_gnn_benchmark_zip(tmp_path / folder / f"{name}.zip", [60 + 7 * c for c in range(classes)])
    ds = load_dataset(name, root=tmp_path)
    n = len(data["labels"])
    assert ds.name == name and ds.graph.num_nodes() == n and ds.num_outputs == classes
    pairs = {(min(u, v), max(u, v)) for u, v in zip(data["src"].tolist(), data["dst"].tolist()) if u != v}
    expected = pairs | {(v, u) for u, v in pairs}
    assert _edge_set(ds.graph) == expected and ds.graph.num_edges() == len(expected)
    feats = sp.csr_matrix((data["attr_data"], data["attr_indices"], data["attr_indptr"]), shape=data["attr_shape"])
    np.testing.assert_array_equal(ds.graph.ndata["feat"].numpy(), feats.toarray())
    np.testing.assert_array_equal(ds.labels.numpy(), data["labels"])
    _check_split(ds, classes)
    # The dataset's own folder works as root too, with the same result.
    same = load_dataset(name, root=tmp_path / folder)
    assert torch.equal(same.train_idx, ds.train_idx) and torch.equal(same.test_idx, ds.test_idx)


def test_generated_split_options(tmp_path):
    write_gnn_benchmark_zip(tmp_path / "amazon_photo" / "amazon-photo.zip", [40, 40, 40])
    ds = load_dataset("amazon-photo", root=tmp_path, train_per_class="5", val_per_class=10, split_seed="3")
    _check_split(ds, 3, train=5, val=10)
    assert not torch.equal(ds.train_idx, load_dataset("amazon-photo", root=tmp_path, train_per_class=5).train_idx)


def test_small_classes_are_split_in_proportion_with_a_warning():
    labels = np.array([0] * 80 + [1] * 11 + [2] * 2 + [3] * 51 + [4] * 50)
    with pytest.warns(
        DatasetWarning, match=r"class\(es\) 1 \(11 nodes\), 2 \(2 nodes\), 4 \(50 nodes\) have at most 50"
    ):
        train, val, test = per_class_split(labels, seed=0, name="toy")
    count = lambda idx: np.bincount(labels[idx], minlength=5).tolist()  # noqa: E731
    assert count(train) == [20, 4, 1, 20, 20]
    assert count(val) == [30, 6, 0, 30, 29]
    assert count(test) == [30, 1, 1, 1, 1]
    assert np.array_equal(np.sort(np.concatenate([train, val, test])), np.arange(len(labels)))


def test_split_is_reproducible_and_seed_dependent():
    labels = np.repeat(np.arange(4), 100)
    a = per_class_split(labels, seed=5)
    b = per_class_split(labels, seed=5)
    c = per_class_split(labels, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_missing_zip_names_folder_and_cli_hint(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("coauthor-physics", root=tmp_path)
    message = str(err.value)
    assert f"coauthor-physics.zip not found in {tmp_path / 'coauthor_physics'}" in message
    assert "--root DIR" in message and "REVGNN_DGL_DATA=DIR" in message and "root=<" not in message


def test_not_a_zip(tmp_path):
    (tmp_path / "amazon_photo").mkdir()
    (tmp_path / "amazon_photo" / "amazon-photo.zip").write_bytes(b"not a zip at all")
    with pytest.raises(
        DatasetError, match=r"amazon-photo: cannot read .*amazon-photo.zip as a zip of a .npz \(BadZipFile"
    ):
        load_dataset("amazon-photo", root=tmp_path)


def test_pickled_array_is_refused(tmp_path):
    labels = np.array([0] * 60 + [1] * 60, dtype=object)  # needs unpickling to read
    write_gnn_benchmark_zip(tmp_path / "amazon_photo" / "amazon-photo.zip", [60, 60], labels=labels)
    with pytest.raises(DatasetError, match="Object arrays cannot be loaded when allow_pickle=False"):
        load_dataset("amazon-photo", root=tmp_path)


def test_missing_key_and_member_count(tmp_path):
    zpath = tmp_path / "amazon_photo" / "amazon-photo.zip"
    data = write_gnn_benchmark_zip(zpath, [60, 60])
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v for k, v in data.items() if k not in ("labels", "src", "dst", "class_names")})
    with zipfile.ZipFile(zpath, "w") as archive:
        archive.writestr("graph.npz", buffer.getvalue())
    with pytest.raises(DatasetError, match=r"graph.npz lacks labels$"):
        load_dataset("amazon-photo", root=tmp_path)
    with zipfile.ZipFile(zpath, "w") as archive:
        archive.writestr("readme.txt", "no npz here")
    with pytest.raises(DatasetError, match="must hold exactly one .npz file, it holds 0"):
        load_dataset("amazon-photo", root=tmp_path)


def test_inconsistent_sizes(tmp_path):
    write_gnn_benchmark_zip(tmp_path / "amazon_photo" / "amazon-photo.zip", [60, 60], labels=np.zeros(5, np.int64))
    with pytest.raises(DatasetError, match=r"120 nodes in the adjacency, 120 attribute rows, labels of shape \(5,\)"):
        load_dataset("amazon-photo", root=tmp_path)


def test_generated_self_loops_option(tmp_path):
    write_gnn_benchmark_zip(tmp_path / "amazon_photo" / "amazon-photo.zip", [40, 40, 40])
    plain = load_dataset("amazon-photo", root=tmp_path)
    looped = load_dataset("amazon-photo", root=tmp_path, self_loops="yes")
    n = plain.graph.num_nodes()
    assert _edge_set(looped.graph) == _edge_set(plain.graph) | {(v, v) for v in range(n)}
    assert looped.graph.num_edges() == plain.graph.num_edges() + n
    assert torch.equal(looped.graph.ndata["feat"], plain.graph.ndata["feat"])
    assert torch.equal(looped.train_idx, plain.train_idx) and torch.equal(looped.test_idx, plain.test_idx)
