"""Convolutions in blocks of destination nodes equal the whole graph's, to 1e-12 in float64."""

from __future__ import annotations

import dgl
import pytest
import torch
from dgl.nn import GraphConv, SAGEConv

from revgnn_dgl.errors import GraphInputError
from revgnn_dgl.nn import GENConv
from revgnn_dgl.nn.gatconv import GATConv
from revgnn_dgl.nn.streaming import StreamedConv, in_edge_block, streamed_convs


def awkward_graph(n: int = 60, seed: int = 0) -> dgl.DGLGraph:
    """Isolated nodes, a hub with many in-edges, self-loops and repeated edges."""
    gen = torch.Generator().manual_seed(seed)
    src, dst = torch.randint(0, n - 10, (2, 5 * n), generator=gen)  # the last 10 nodes: no in-edges
    hub = torch.full((40,), 3)
    src = torch.cat([src, torch.randint(0, n, (40,), generator=gen), torch.arange(5), src[:7]])
    dst = torch.cat([dst, hub, torch.arange(5), dst[:7]])
    return dgl.graph((src, dst), num_nodes=n)


def blockings(n: int):
    return {"one node a block": [(i, i + 1) for i in range(n)], "uneven": [(0, 3), (3, 4), (4, 37), (37, n)],
            "whole": [(0, n)]}  # fmt: skip


@pytest.mark.parametrize("aggregator", ["softmax", "softmax_sum", "power", "max", "mean", "sum"])
@pytest.mark.parametrize("edge_feats", [None, 3])
def test_genconv_in_blocks_equals_the_whole_graph(aggregator: str, edge_feats) -> None:
    torch.manual_seed(0)
    g = awkward_graph()
    kwargs = {"learn_t": True, "learn_p": True, "learn_y": True} if aggregator.startswith(("softmax", "power")) else {}
    conv = GENConv(6, 6, aggregator=aggregator, edge_feats=edge_feats, msg_norm=True, **kwargs).double().eval()
    x = torch.rand(g.num_nodes(), 6, dtype=torch.float64)  # positive: the power mean's domain
    extra = {"edge_feat": torch.randn(g.num_edges(), edge_feats, dtype=torch.float64)} if edge_feats else {}
    with torch.no_grad():
        whole = conv(g, x, **extra)
        for name, blocks in blockings(g.num_nodes()).items():
            got = StreamedConv(conv, blocks)(g, x, **extra)
            assert (got - whole).abs().max() <= 1e-12, name


@pytest.mark.parametrize("symmetric", [False, True])
def test_gat_edge_softmax_in_blocks_equals_the_whole_graph(symmetric: bool) -> None:
    torch.manual_seed(1)
    g = awkward_graph()
    conv = GATConv(5, 4, num_heads=3, residual=True, use_symmetric_norm=symmetric).double().eval()
    x = torch.randn(g.num_nodes(), 5, dtype=torch.float64)
    with torch.no_grad():
        whole = conv(g, x)
        for name, blocks in blockings(g.num_nodes()).items():
            assert (StreamedConv(conv, blocks)(g, x) - whole).abs().max() <= 1e-12, name


def test_sage_mean_in_blocks_equals_the_whole_graph() -> None:
    g = awkward_graph()
    conv = SAGEConv(4, 4, "mean").double().eval()
    x = torch.randn(g.num_nodes(), 4, dtype=torch.float64)
    with torch.no_grad():
        assert (StreamedConv(conv, blockings(60)["uneven"])(g, x) - conv(g, x)).abs().max() <= 1e-12


def test_a_block_holds_every_in_edge_of_its_nodes_and_its_nodes_first() -> None:
    g = awkward_graph()
    block, sources, eids = in_edge_block(g, 2, 9)
    assert block.num_dst_nodes() == 7 and torch.equal(sources[:7], torch.arange(2, 9))
    assert sorted(eids.tolist()) == sorted(g.in_edges(torch.arange(2, 9), form="eid").tolist())
    src, dst = block.edges()
    gsrc, gdst = g.find_edges(eids)
    assert torch.equal(sources[src], gsrc) and torch.equal(dst + 2, gdst)


def test_unsupported_convolutions_are_named_with_the_reason() -> None:
    model = torch.nn.Sequential(GraphConv(4, 4))
    with pytest.raises(GraphInputError, match="GraphConv.*out-degree"):
        with streamed_convs(model, [(0, 1)]):
            pass


def test_the_model_gets_its_convolutions_back_even_after_an_error() -> None:
    conv = GENConv(4, 4)
    model = torch.nn.Sequential(torch.nn.Identity())
    model.add_module("conv", conv)
    with pytest.raises(RuntimeError):
        with streamed_convs(model, [(0, 1)]):
            assert isinstance(model.conv, StreamedConv)
            raise RuntimeError("boom")
    assert model.conv is conv


def test_cached_blocks_give_the_same_rows_and_the_cache_keeps_to_its_size() -> None:
    from revgnn_dgl.nn.streaming import BlockCache

    g = awkward_graph()
    conv = GENConv(6, 6, aggregator="softmax").double().eval()
    x = torch.randn(g.num_nodes(), 6, dtype=torch.float64)
    blocks = blockings(g.num_nodes())["uneven"]
    with torch.no_grad():
        plain = StreamedConv(conv, blocks)(g, x)
        cache = BlockCache(max_bytes=10**9)
        cached = StreamedConv(conv, blocks, cache)
        assert torch.equal(cached(g, x), plain) and torch.equal(cached(g, x), plain)  # built, then reused
    assert len(cache.blocks) == len(blocks) and 0 < cache.used <= cache.max_bytes
    small = BlockCache(max_bytes=1)
    with torch.no_grad():
        assert torch.equal(StreamedConv(conv, blocks, small)(g, x), plain)
    assert not small.blocks and small.used == 0
