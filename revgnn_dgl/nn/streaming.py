"""Exact full-graph message passing in blocks of destination nodes, within a memory budget.

A layer's edge-wise work (gathered source features, the edge embedding, messages) is what grows
with the graph: for ogbn-proteins' 79M directed edges one ``E x 40`` float embedding alone is
12.6 GB. Every convolution supported here aggregates over a node's in-edges only (GENConv's
max, mean, sum, softmax, softmax_sum and power means, SAGE's mean, GAT's edge softmax), so
the destination nodes can be processed a block at a time: a block holds *all* in-edges of its
nodes, its result equals the full graph's rows exactly, and only one block's edges are live.

:func:`streamed_convs` swaps every supported convolution of a model for a
:class:`StreamedConv` for the duration of a ``with`` statement; the model's own ``forward``
then runs unchanged on the whole graph, holding per layer only its ``N x D`` node features.

>>> import dgl, torch
>>> from revgnn_dgl.nn import GENConv
>>> conv = GENConv(4, 4, aggregator="softmax").double().eval()
>>> g = dgl.rand_graph(30, 200)
>>> x = torch.randn(30, 4, dtype=torch.float64)
>>> whole = conv(g, x)
>>> with torch.no_grad(), streamed_convs(conv, [(0, 7), (7, 30)]) as wrapped:
...     blocked = wrapped(g, x)
>>> bool((whole - blocked).abs().max() < 1e-12)
True
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import dgl
import torch
from dgl.nn import GraphConv, SAGEConv
from torch import Tensor, nn

from ..errors import GraphInputError
from .gatconv import FULL_OUT_DEGREES, GATConv
from .gcnii import GCNIIConv
from .genconv import GENConv

#: Convolutions whose output row for a node depends only on that node, its in-edges and their sources.
STREAMABLE = (GENConv, GATConv, SAGEConv)

#: Convolutions that cannot be split by destination nodes, and why (said when a model holds one).
NOT_STREAMABLE = {
    GraphConv: "GraphConv's symmetric normalisation reads every source's out-degree, which a block of "
    "in-edges does not hold",
    GCNIIConv: "GCNIIConv's propagation is normalised by both ends' degrees over the whole graph",
}

#: A block: destination nodes ``first .. last - 1`` (consecutive ids).
Block = Tuple[int, int]


def in_edge_block(graph: dgl.DGLGraph, first: int, last: int) -> Tuple[dgl.DGLGraph, Tensor, Tensor]:
    """The block of destination nodes ``first .. last - 1`` with all their in-edges.

    Returns the DGL block (its first ``last - first`` source nodes are the destination nodes,
    DGL's convention), the global ids of its source nodes in that order, and the global ids of
    its edges.
    """
    device = graph.device
    dst_nodes = torch.arange(first, last, device=device, dtype=graph.idtype)
    src, dst, eid = graph.in_edges(dst_nodes, form="all")
    inside = (src >= first) & (src < last)
    others = torch.unique(src[~inside])
    local_src = torch.where(inside, src - first, torch.searchsorted(others, src) + (last - first))
    block = dgl.create_block((local_src, dst - first), num_src_nodes=(last - first) + others.numel(),
                             num_dst_nodes=last - first, idtype=graph.idtype, device=device)  # fmt: skip
    return block, torch.cat([dst_nodes, others]), eid


class StreamedConv(nn.Module):
    """A convolution applied to the whole graph one block of destination nodes at a time.

    Parameters
    ----------
    conv : nn.Module
        One of :data:`STREAMABLE`; its output rows are computed block by block.
    blocks : sequence of (int, int)
        Consecutive destination ranges covering ``0 .. N - 1`` in order.

    Per-edge keyword arguments (``edge_feat``) are sliced to each block's edges; other arguments
    pass unchanged (training-only ones such as GAT's edge permutation are not supported: this
    is for inference).
    """

    def __init__(self, conv: nn.Module, blocks: Sequence[Block], cache: Optional["BlockCache"] = None) -> None:
        super().__init__()
        self.conv, self.blocks, self.cache = conv, list(blocks), cache

    def forward(self, graph: dgl.DGLGraph, feat: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if graph.is_block or graph.num_nodes() != feat.shape[0]:
            raise GraphInputError("StreamedConv runs on the whole graph with one feature row per node.")
        if args or kwargs.get("perm") is not None or kwargs.get("edge_seed") is not None:
            raise GraphInputError("StreamedConv is for inference: no positional extras, no edge dropout.")
        if self.blocks == [(0, graph.num_nodes())]:
            return self.conv(graph, feat, **kwargs)  # one block is the whole graph: nothing to split
        edge_feat = kwargs.pop("edge_feat", None)
        symmetric = isinstance(self.conv, GATConv) and self.conv.use_symmetric_norm
        out_degrees = graph.out_degrees() if symmetric else None
        rows: List[Tensor] = []
        for first, last in self.blocks:
            block, sources, eids = (
                self.cache.get(graph, first, last) if self.cache else in_edge_block(graph, first, last)
            )
            if out_degrees is not None:
                block.srcdata[FULL_OUT_DEGREES] = out_degrees[sources]
            extra = dict(kwargs)
            if edge_feat is not None:
                extra["edge_feat"] = edge_feat.index_select(0, eids)  # 3x faster than edge_feat[eids] on CPU
            rows.append(self.conv(block, feat.index_select(0, sources), **extra))
        return torch.cat(rows, dim=0)


class BlockCache:
    """The blocks of one graph, built once and shared by every layer, while they fit in ``max_bytes``
    (then the rest are built again at each use: the same blocks, only slower).

    Every layer of a model sees the same graph and so the same blocks; building them (the in-edges,
    the source ids, DGL's index) is a large part of a layer's time on a sparse graph.
    """

    #: Bytes a cached block holds per edge: its COO pair and edge ids (int64), and DGL's in-edge index.
    BYTES_PER_EDGE = 48

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.used = max_bytes, 0
        self.graph: Optional[dgl.DGLGraph] = None
        self.blocks: dict = {}

    def get(self, graph: dgl.DGLGraph, first: int, last: int) -> Tuple[dgl.DGLGraph, Tensor, Tensor]:
        if graph is not self.graph:  # another graph: start again
            self.graph, self.blocks, self.used = graph, {}, 0
        found = self.blocks.get((first, last))
        if found is not None:
            return found
        built = in_edge_block(graph, first, last)
        cost = self.BYTES_PER_EDGE * built[2].numel() + 8 * built[1].numel()
        if self.used + cost <= self.max_bytes:
            self.blocks[(first, last)] = built
            self.used += cost
        return built


def check_streamable(model: nn.Module) -> None:
    """Raise :class:`GraphInputError`, naming the layer and the reason, when ``model`` holds a
    convolution that cannot be split by destination nodes."""
    for name, module in model.named_modules():
        for kind, why in NOT_STREAMABLE.items():
            if isinstance(module, kind):
                raise GraphInputError(f"full-graph inference in blocks does not support {type(module).__name__} "
                                      f"({name or 'the model'}): {why}. Evaluate it with partitions instead "
                                      "(drop --full-graph).")  # fmt: skip


@contextmanager
def streamed_convs(model: nn.Module, blocks: Sequence[Block], cache_bytes: int = 0) -> Iterator[nn.Module]:
    """Inside the block, every supported convolution of ``model`` runs as a :class:`StreamedConv`.

    Yields the model (itself, or its wrapper when ``model`` is a bare convolution). The original
    modules are put back on exit, also after an error. With ``cache_bytes``, the blocks built for
    one layer are kept for the next ones up to that many bytes (:class:`BlockCache`).
    """
    check_streamable(model)
    cache = BlockCache(cache_bytes) if cache_bytes > 0 else None
    if isinstance(model, STREAMABLE):
        yield StreamedConv(model, blocks, cache)
        return
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, STREAMABLE):
                swapped.append((parent, name, child))
                setattr(parent, name, StreamedConv(child, blocks, cache))
    try:
        yield model
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
