"""Datasets from a DGL graph file: round trips and every bad-input error."""

from __future__ import annotations

import warnings
from pathlib import Path

import dgl
import numpy as np
import pytest
import torch

from revgnn_dgl.data import DatasetError, DatasetWarning, load_dataset
from revgnn_dgl.data.graph_file import dgl_error_line

N = 12


def _graph(label: torch.Tensor) -> dgl.DGLGraph:
    src = torch.arange(N)
    g = dgl.graph((torch.cat([src, (src + 1) % N]), torch.cat([(src + 1) % N, src])), num_nodes=N)
    g.ndata["feat"] = torch.randn(N, 5, dtype=torch.float64)
    g.ndata["label"] = label
    g.ndata["train_mask"] = torch.arange(N) < 6
    g.ndata["val_mask"] = (torch.arange(N) >= 6) & (torch.arange(N) < 9)
    g.ndata["test_mask"] = torch.arange(N) >= 9
    return g


def _save(tmp_path: Path, g: dgl.DGLGraph, name: str = "graph.bin") -> str:
    path = str(tmp_path / name)
    dgl.save_graphs(path, [g])
    return path


def test_multiclass_round_trip(tmp_path):
    g = _graph(torch.randint(0, 4, (N,)))
    g.ndata["label"][0] = 3
    g.edata["feat"] = torch.rand(g.num_edges(), 2)
    ds = load_dataset(_save(tmp_path, g))
    assert ds.name == "graph.bin" and ds.task == "multiclass" and ds.metric_name == "accuracy"
    assert ds.labels.dtype == torch.int64 and torch.equal(ds.labels, g.ndata["label"])
    assert ds.num_outputs == 4 and ds.num_node_feats == 5 and ds.num_edge_feats == 2
    assert ds.graph.ndata["feat"].dtype == torch.float32
    torch.testing.assert_close(ds.graph.ndata["feat"], g.ndata["feat"].float())
    torch.testing.assert_close(ds.graph.edata["feat"], g.edata["feat"])
    assert torch.equal(torch.stack(ds.graph.edges()), torch.stack(g.edges()))
    assert torch.equal(ds.train_idx, torch.arange(6))
    assert torch.equal(ds.val_idx, torch.arange(6, 9))
    assert torch.equal(ds.test_idx, torch.arange(9, N))
    # Labels and masks live in the dataset, not in the graph given to models.
    assert set(ds.graph.ndata) == {"feat"} and not ds.has_species


def test_multilabel_round_trip_without_bin_suffix(tmp_path):
    g = _graph(torch.randint(0, 2, (N, 3)))
    g.ndata["species"] = torch.eye(2)[torch.arange(N) % 2]
    ds = load_dataset(_save(tmp_path, g, "my_graph.dgl"))
    assert ds.task == "multilabel" and ds.metric_name == "rocauc" and ds.num_outputs == 3
    assert ds.labels.dtype == torch.float32 and torch.equal(ds.labels, g.ndata["label"].float())
    assert ds.num_edge_feats == 0 and ds.has_species


def test_missing_file(tmp_path):
    path = tmp_path / "nothing.bin"
    with pytest.raises(DatasetError) as err:
        load_dataset(str(path))
    assert str(err.value) == f"file not found: {path}"


@pytest.mark.parametrize("name", ["runs/graph", "graph.dgl", "graph.bin", "./no_such_file"])
def test_path_like_names_are_files_not_unknown_datasets(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError) as err:
        load_dataset(name)
    assert str(err.value) == f"file not found: {Path(name)}"


def test_plain_unknown_name_is_still_an_unknown_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match="^unknown dataset 'corra': valid names are"):
        load_dataset("corra")


def test_directory_given_for_a_file(tmp_path, monkeypatch):
    folder = tmp_path / "graphs.bin"
    folder.mkdir()
    with pytest.raises(DatasetError) as err:
        load_dataset(str(folder))
    assert str(err.value) == (
        f"{folder} is a directory, not a DGL graph file: give the path of a file written by "
        "dgl.save_graphs(path, [graph])"
    )
    # An existing folder without a suffix or separator is read as a path too.
    (tmp_path / "mygraphs").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match="^mygraphs is a directory, not a DGL graph file"):
        load_dataset("mygraphs")


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and "Stack trace" not in message and "[bt]" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained DGL traceback
    return message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with pytest.raises(DatasetError) as err:
        load_dataset(str(path))
    assert (
        str(err.value)
        == f"{path} is an empty file, not a DGL graph file: write one with dgl.save_graphs(path, [graph])"
    )
    assert "\n" not in str(err.value)


def test_random_bytes_file(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    with pytest.raises(DatasetError) as err:
        load_dataset(str(path))
    assert str(err.value) == (
        f"{path} is not a DGL graph file (it lacks DGL's file signature): write one with dgl.save_graphs(path, [graph])"
    )


@pytest.mark.parametrize("keep", [60, 500])
def test_damaged_dgl_file_gives_one_line_without_backtrace(tmp_path, keep):
    """A file with DGL's signature but cut short reaches DGL, whose C++ error is stripped."""
    good = Path(_save(tmp_path, _graph(torch.zeros(N, dtype=torch.int64))))
    path = tmp_path / "cut.bin"
    path.write_bytes(good.read_bytes()[:keep])
    with pytest.raises(DatasetError) as err:
        load_dataset(str(path))
    message = _one_line(err)
    assert message.startswith(f"{path} is a damaged or truncated DGL graph file (dgl.load_graphs: ")
    assert message.endswith("write it again with dgl.save_graphs(path, [graph])")
    assert ".cc:" not in message and "libdgl" not in message


def test_dgl_error_line_strips_log_prefix_and_backtrace():
    raw = (
        "[08:20:23] /opt/dgl/src/graph/serialize/graph_serialize.cc:128: Check failed: magicNum == "
        "kDGLSerializeMagic : Invalid DGL files\nStack trace:\n  [bt] (0) libdgl.so(+0x74) [0x7f]\n"
    )
    assert dgl_error_line(RuntimeError(raw)) == "Check failed: magicNum == kDGLSerializeMagic : Invalid DGL files"
    assert dgl_error_line(RuntimeError("Invalid DGL Version Number.")) == "Invalid DGL Version Number."
    assert dgl_error_line(RuntimeError("")) == "RuntimeError"


def test_unused_node_and_edge_keys_are_named_in_a_warning(tmp_path):
    g = _graph(torch.zeros(N, dtype=torch.int64))
    g.ndata["year"] = torch.arange(N)
    g.ndata["degree"] = torch.ones(N)
    g.edata["weight"] = torch.rand(g.num_edges(), 1)
    path = _save(tmp_path, g)
    with pytest.warns(DatasetWarning) as record:
        ds = load_dataset(path)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith(f"{path}: ignoring ndata 'degree', 'year'; edata 'weight'. The loader reads ndata ")
    assert "'feat', 'label', 'train_mask', 'val_mask', 'test_mask', 'species' and edata 'feat'" in message
    assert "to use 'weight' as edge features, store them as edata['feat']" in message
    assert ds.num_edge_feats == 0 and set(ds.graph.ndata) == {"feat"}


def test_unused_edge_key_beside_feat_has_no_edge_feature_hint(tmp_path):
    g = _graph(torch.zeros(N, dtype=torch.int64))
    g.edata["feat"] = torch.rand(g.num_edges(), 2)
    g.edata["weight"] = torch.rand(g.num_edges())
    with pytest.warns(DatasetWarning, match=r"ignoring edata 'weight'\. The loader reads") as record:
        ds = load_dataset(_save(tmp_path, g))
    assert "store them as" not in str(record[0].message) and ds.num_edge_feats == 2


def test_graph_labels_are_named_in_the_warning(tmp_path):
    g = _graph(torch.zeros(N, dtype=torch.int64))
    path = str(tmp_path / "with_labels.bin")
    dgl.save_graphs(path, [g], {"glabel": torch.tensor([1])})
    with pytest.warns(DatasetWarning, match="ignoring graph labels 'glabel'"):
        load_dataset(path)


def test_no_warning_when_every_key_is_read(tmp_path):
    g = _graph(torch.zeros(N, dtype=torch.int64))
    g.ndata["species"] = torch.eye(2)[torch.arange(N) % 2]
    g.edata["feat"] = torch.rand(g.num_edges(), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        load_dataset(_save(tmp_path, g))


@pytest.mark.parametrize("key", ["label", "feat", "train_mask", "val_mask", "test_mask"])
def test_missing_key_is_named(tmp_path, key):
    g = _graph(torch.zeros(N, dtype=torch.int64))
    del g.ndata[key]
    with pytest.raises(DatasetError, match=rf"no ndata\['{key}'\]"):
        load_dataset(_save(tmp_path, g))


def test_mask_of_wrong_shape(tmp_path):
    # DGL itself refuses ndata whose first dimension is not N, so a wrong
    # mask length shows up as a wrong shape.
    g = _graph(torch.zeros(N, dtype=torch.int64))
    g.ndata["val_mask"] = torch.ones(N, 2, dtype=torch.bool)
    with pytest.raises(DatasetError, match=r"val_mask'\] must be a 1-D mask of length 12"):
        load_dataset(_save(tmp_path, g))


def test_mask_not_boolean(tmp_path):
    g = _graph(torch.zeros(N, dtype=torch.int64))
    g.ndata["test_mask"] = torch.full((N,), 2)
    with pytest.raises(DatasetError, match="boolean or 0/1"):
        load_dataset(_save(tmp_path, g))


@pytest.mark.parametrize("key", ["train_mask", "val_mask", "test_mask"])
def test_empty_mask(tmp_path, key):
    g = _graph(torch.zeros(N, dtype=torch.int64))
    g.ndata[key] = torch.zeros(N, dtype=torch.bool)
    path = _save(tmp_path, g)
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    assert str(err.value) == f"{path}: ndata[{key!r}] selects no node; every split needs at least one node"


@pytest.mark.parametrize(
    "label, match",
    [
        (torch.rand(N), "integer class ids"),
        (torch.full((N,), -1), "negative"),
        (torch.full((N, 2), 3), "only 0 and 1"),
        (torch.zeros(N, 2, 2), "1-D .* or 2-D"),
    ],
)
def test_bad_labels(tmp_path, label, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset(_save(tmp_path, _graph(label)))


def test_several_graphs(tmp_path):
    g = _graph(torch.zeros(N, dtype=torch.int64))
    path = str(tmp_path / "two.bin")
    dgl.save_graphs(path, [g, g])
    with pytest.raises(DatasetError, match="holds 2 graphs"):
        load_dataset(path)


def test_file_takes_no_options(tmp_path):
    path = _save(tmp_path, _graph(torch.zeros(N, dtype=torch.int64)))
    with pytest.raises(DatasetError, match="does not take option"):
        load_dataset(path, seed=1)


def test_a_dataset_saved_with_to_graph_reads_back_as_itself(tmp_path):
    """NodeDataset.to_graph() is the graph-file layout: ndata['label'] and the masks, as DGL's datasets."""
    import dgl
    import torch

    ds = load_dataset("synthetic-proteins", num_nodes=150)
    graph = ds.to_graph()
    assert "label" not in ds.graph.ndata  # the dataset's own graph is left as it was
    dgl.save_graphs(str(tmp_path / "g.bin"), [graph])
    back = load_dataset(str(tmp_path / "g.bin"))
    assert torch.equal(back.labels, ds.labels) and back.task == ds.task
    for split in ("train_idx", "val_idx", "test_idx"):
        assert torch.equal(getattr(back, split), torch.sort(getattr(ds, split)).values), split
    assert torch.equal(back.graph.ndata["feat"], ds.graph.ndata["feat"])


def test_integer_features_and_masks_are_converted_with_one_note(tmp_path):
    g = _graph(torch.randint(0, 4, (N,)))
    g.ndata["feat"] = torch.randint(0, 3, (N, 5))
    g.ndata["train_mask"] = (torch.arange(N) < 6).long()
    with pytest.warns(DatasetWarning) as said:
        ds = load_dataset(_save(tmp_path, g))
    notes = [str(w.message) for w in said if "converted" in str(w.message)]
    assert notes == ["graph.bin: converted ndata['feat'] torch.int64 -> float32, ndata['train_mask'] torch.int64 -> bool "
                     "(the format's dtypes; save them so to silence this note)"]  # fmt: skip
    assert ds.graph.ndata["feat"].dtype == torch.float32 and torch.equal(
        ds.graph.ndata["feat"], g.ndata["feat"].float()
    )
    assert torch.equal(ds.train_idx, torch.arange(6))


def test_the_formats_dtypes_load_without_a_note(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        load_dataset(_save(tmp_path, _graph(torch.randint(0, 4, (N,)))))
