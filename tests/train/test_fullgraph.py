"""Full-graph inference in blocks: every zoo architecture it supports equals its own whole-graph
forward to 1e-12 in float64; the others are refused with the reason; budgets are honoured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import revgnn_dgl
from revgnn_dgl.cli import cli
from revgnn_dgl.data import load_dataset
from revgnn_dgl.errors import ConfigError, GraphInputError
from revgnn_dgl.train.data import DeviceData, forward
from revgnn_dgl.train.fullgraph import full_graph_logits, parse_memory_budget, plan_blocks, plan_for

SUPPORTED = {
    "revgnn-112": {"num_layers": 3, "hidden": 8},
    "resgnn-112": {"num_layers": 3, "hidden": 8},
    "wt-revgnn-80": {"num_layers": 3, "hidden": 8},
    "deq-gnn-64": {"hidden": 8},
    "mlp": {},
}


@pytest.fixture(scope="module")
def data() -> DeviceData:
    ds = load_dataset("synthetic-proteins", num_nodes=120)
    ds.graph.ndata["feat"] = ds.graph.ndata["feat"].double()
    ds.graph.edata["feat"] = ds.graph.edata["feat"].double()
    if "species" in ds.graph.ndata:
        ds.graph.ndata["species"] = ds.graph.ndata["species"].double()
    return DeviceData.on(ds, torch.device("cpu"))


def _model(name: str, data: DeviceData, **overrides):
    ds = data.dataset
    args = {"in_feats": ds.graph.ndata["feat"].shape[1], "out_feats": ds.num_outputs, **overrides}
    config = revgnn_dgl.get_config(name)["arguments"]
    args = {k: v for k, v in args.items() if k in config or k in ("in_feats", "out_feats")}
    if "edge_feats" in config:
        args["edge_feats"] = ds.graph.edata["feat"].shape[1]
    if "species_feats" in config:
        args["species_feats"] = ds.graph.ndata["species"].shape[1]
    return revgnn_dgl.create_model(name, **args).double().eval()


@pytest.mark.parametrize("name", sorted(SUPPORTED))
@pytest.mark.parametrize("block_nodes", [1, 17, None])
def test_every_supported_zoo_model_equals_its_whole_graph_forward(data: DeviceData, name: str, block_nodes) -> None:
    torch.manual_seed(0)
    model = _model(name, data, **SUPPORTED[name])
    with torch.no_grad():
        whole = forward(model, data.graph)
    plan = plan_for(model, data, block_nodes=block_nodes)
    got = full_graph_logits(model, data, plan=plan)
    assert got.dtype == torch.float32
    from revgnn_dgl.nn.streaming import STREAMABLE, StreamedConv

    with torch.no_grad():
        from revgnn_dgl.nn.streaming import streamed_convs

        with streamed_convs(model, plan.blocks):
            exact = forward(model, data.graph)
            assert any(isinstance(m, StreamedConv) for m in model.modules()) or not any(
                isinstance(m, STREAMABLE) for m in model.modules()
            )
    assert (exact - whole).abs().max() <= 1e-12, name
    assert not any(isinstance(m, StreamedConv) for m in model.modules())  # put back


def test_revgat_with_its_symmetric_norm_equals_its_whole_graph_forward() -> None:
    """RevGAT (GAT layers, reversible GAT blocks, the degree normalisation of the whole graph)."""
    import dgl

    from revgnn_dgl.models.revgat import RevGAT
    from revgnn_dgl.nn.streaming import streamed_convs

    torch.manual_seed(2)
    g = dgl.add_self_loop(dgl.to_bidirected(dgl.rand_graph(90, 300)))
    model = RevGAT(6, 3, hidden=8, num_layers=4, heads=2, groups=2, use_symmetric_norm=True).double().eval()
    x = torch.randn(90, 6, dtype=torch.float64)
    with torch.no_grad():
        whole = model(g, x)
        for blocks in ([(i, i + 1) for i in range(90)], [(0, 13), (13, 50), (50, 90)]):
            with streamed_convs(model, blocks):
                assert (model(g, x) - whole).abs().max() <= 1e-12


@pytest.mark.parametrize("aggregator", ["softmax", "softmax_sum", "power", "max", "mean", "sum"])
def test_revgnn_with_every_aggregator(data: DeviceData, aggregator: str) -> None:
    from revgnn_dgl.nn.streaming import streamed_convs

    torch.manual_seed(1)
    model = _model("revgnn-112", data, num_layers=2, hidden=8, aggregator=aggregator)
    plan = plan_for(model, data, block_nodes=7)
    with torch.no_grad():
        whole = forward(model, data.graph)
        with streamed_convs(model, plan.blocks):
            assert (forward(model, data.graph) - whole).abs().max() <= 1e-12


def test_gcn_models_are_refused_with_the_reason(data: DeviceData) -> None:
    model = _model("gcn-2", data)
    with pytest.raises(GraphInputError, match="GraphConv.*out-degree.*drop --full-graph"):
        plan_for(model, data)


def test_a_budget_too_small_for_one_node_is_one_line_with_the_figure() -> None:
    degrees = torch.tensor([1, 5, 300, 2])
    with pytest.raises(ConfigError, match=r"too small .* most in-edges \(300\) .* give at least"):
        plan_blocks(degrees, hidden=64, in_feats=8, edge_feats=8, budget=50_000)


def test_blocks_cover_every_node_in_order_within_the_budget() -> None:
    gen = torch.Generator().manual_seed(0)
    degrees = torch.randint(0, 50, (1000,), generator=gen)
    plan = plan_blocks(degrees, hidden=16, in_feats=8, edge_feats=8, budget=2_000_000)
    assert plan.blocks[0][0] == 0 and plan.blocks[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(plan.blocks, plan.blocks[1:]))
    assert len(plan.blocks) > 1 and plan.peak_bytes <= plan.budget
    roomy = plan_blocks(degrees, hidden=16, in_feats=8, edge_feats=8, budget=10**10)
    assert roomy.blocks == [(0, 1000)]


def test_memory_budget_sizes() -> None:
    assert parse_memory_budget("4GB") == 4 * 10**9 and parse_memory_budget("2 GiB") == 2 * 2**30
    for bad in ("lots", "-1GB", "4XB", "0"):
        with pytest.raises(ConfigError, match="memory-budget"):
            parse_memory_budget(bad)


@pytest.mark.slow
def test_evaluate_full_graph_reports_both_protocols(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--model", "wide", "--dataset", "synthetic-proteins", "--dataset-option",
                                      "num_nodes=300", "--num-layers", "2", "--hidden", "8", "--epochs", "2",
                                      "--threads", "1", "--out", str(run)])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        cli, ["evaluate", "--run", str(run), "--full-graph", "--memory-budget", "64MB", "--json"]
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output.strip().splitlines()[-1])
    whole = scores["full_graph"]
    assert {"val", "test", "blocks"} <= set(whole) and 0.0 <= whole["val"] <= 1.0
    assert whole["estimated_peak_bytes"] <= 64 * 10**6
    text = CliRunner().invoke(cli, ["evaluate", "--run", str(run), "--full-graph"]).output
    assert "full graph:" in text and "val rocauc" in text
    refused = CliRunner().invoke(cli, ["evaluate", "--run", str(run), "--full-graph", "--memory-budget", "1KB"])
    assert (
        refused.exit_code != 0
        and refused.output.startswith("Error: --memory-budget")
        and len(refused.output.strip().splitlines()) == 1
    )
    refused = CliRunner().invoke(cli, ["evaluate", "--run", str(run), "--memory-budget", "1GB"])
    assert refused.exit_code == 2 and "add --full-graph" in refused.output
