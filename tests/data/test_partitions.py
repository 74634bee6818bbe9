"""`revgnn-dgl partition` keeps every node's features, labels and split and every edge's features."""

from __future__ import annotations

import json
from pathlib import Path

import dgl
import pytest
import torch
from click.testing import CliRunner

from revgnn_dgl.cli import cli
from revgnn_dgl.data import load_dataset
from revgnn_dgl.data.partitions import META_FILE, PartitionedDataset, partition_dataset
from revgnn_dgl.errors import DatasetError

OPTIONS = {"num_nodes": 400}


@pytest.mark.parametrize("method, parts", [("metis", 2), ("random", 3)])
def test_partitions_keep_every_node_and_edge(tmp_path: Path, method: str, parts: int) -> None:
    ds = load_dataset("synthetic-proteins", **OPTIONS)
    summary = partition_dataset(ds, parts, tmp_path / "p", method=method, dataset_options=OPTIONS)
    described = PartitionedDataset(summary["config"])
    ids = described.original_ids()
    orig_nids, orig_eids = torch.from_numpy(ids["nodes"]), torch.from_numpy(ids["edges"])
    assert sorted(orig_nids.tolist()) == list(range(ds.graph.num_nodes()))
    assert sorted(orig_eids.tolist()) == list(range(ds.graph.num_edges()))
    conf = json.loads(Path(summary["config"]).read_text())
    split = {s: torch.zeros(ds.graph.num_nodes(), dtype=torch.bool).index_fill_(0, getattr(ds, f"{s}_idx"), True)
             for s in ("train", "val", "test")}  # fmt: skip
    src, dst = ds.graph.edges()
    seen_nodes = seen_edges = 0
    for p in range(parts):
        graph, node_feats, edge_feats = dgl.distributed.load_partition(summary["config"], p)[:3]
        lo, hi = conf["node_map"]["_N"][p]
        orig = orig_nids[lo:hi]
        assert torch.equal(node_feats["_N/feat"], ds.graph.ndata["feat"][orig])
        assert torch.equal(node_feats["_N/species"], ds.graph.ndata["species"][orig])
        assert torch.equal(node_feats["_N/label"], ds.labels[orig])
        for s in split:
            assert torch.equal(node_feats[f"_N/{s}_mask"].bool(), split[s][orig])
        elo, ehi = conf["edge_map"]["_N:_E:_N"][p]
        eorig = orig_eids[elo:ehi]
        assert torch.equal(edge_feats["_N:_E:_N/feat"], ds.graph.edata["feat"][eorig])
        # The partition's own edges join the same nodes as in the source graph.
        inner = graph.edata["inner_edge"].bool()
        local_src, local_dst = graph.edges()
        new_src, new_dst = graph.ndata[dgl.NID][local_src[inner]], graph.ndata[dgl.NID][local_dst[inner]]
        order = torch.argsort(graph.edata[dgl.EID][inner])
        assert torch.equal(graph.edata[dgl.EID][inner][order], torch.arange(elo, ehi))
        assert torch.equal(orig_nids[new_src[order]], src[eorig])
        assert torch.equal(orig_nids[new_dst[order]], dst[eorig])
        assert summary["partitions"][p]["nodes"] == hi - lo and summary["partitions"][p]["edges"] == ehi - elo
        seen_nodes, seen_edges = seen_nodes + hi - lo, seen_edges + ehi - elo
    assert (seen_nodes, seen_edges) == (ds.graph.num_nodes(), ds.graph.num_edges())
    # The edge cut counted by the summary: edges whose ends lie in different partitions.
    part_of = torch.empty(ds.graph.num_nodes(), dtype=torch.long)
    for p in range(parts):
        lo, hi = conf["node_map"]["_N"][p]
        part_of[orig_nids[lo:hi]] = p
    assert sum(q["cut"] for q in summary["partitions"]) == int((part_of[src] != part_of[dst]).sum())
    assert described.num_nodes == ds.graph.num_nodes() and described.num_outputs == ds.num_outputs
    assert described.meta["dataset_options"] == OPTIONS and described.chance_level == 0.5


def test_partition_command_prints_one_summary_line(tmp_path: Path) -> None:
    out = tmp_path / "parts"
    result = CliRunner().invoke(cli, ["partition", "synthetic-proteins", "--dataset-option", "num_nodes=300",
                                      "--parts", "2", "--method", "random", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "300 nodes" in lines[0] and "cut" in lines[0], result.output
    assert (out / META_FILE).is_file() and (out / "synthetic_proteins.json").is_file()
    again = CliRunner().invoke(cli, ["partition", "synthetic-proteins", "--parts", "2", "--out", str(out)])
    assert again.exit_code == 1 and again.output.startswith("Error: ") and "not empty" in again.output
    # The description beside it is not what --partitions takes: the line names the file that is.
    with pytest.raises(DatasetError) as err:
        PartitionedDataset(out / META_FILE)
    assert f"takes the partition config that `revgnn-dgl partition` printed, {out / 'synthetic_proteins.json'}" in str(
        err.value
    )
    assert str(out / "synthetic_proteins.json") in lines[0]  # which `partition` printed


def test_bad_partition_inputs_are_one_line(tmp_path: Path) -> None:
    ds = load_dataset("synthetic-proteins", num_nodes=50)
    with pytest.raises(DatasetError, match="between 1 and"):
        partition_dataset(ds, 51, tmp_path / "a")
    with pytest.raises(DatasetError, match="method"):
        partition_dataset(ds, 1, tmp_path / "b", method="spectral")
    with pytest.raises(DatasetError, match="no such file"):
        PartitionedDataset(tmp_path / "missing.json")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "g.json").write_text("{}")
    with pytest.raises(DatasetError, match="is missing beside it"):
        PartitionedDataset(tmp_path / "c" / "g.json")
    (tmp_path / "c" / META_FILE).write_text("[1, 2]")
    with pytest.raises(DatasetError, match="not a revgnn-dgl partition"):
        PartitionedDataset(tmp_path / "c" / "g.json")
