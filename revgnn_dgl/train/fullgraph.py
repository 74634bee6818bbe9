"""The model's exact answer on the whole graph, within a memory budget.

The training runs' evaluation averages logits over random partitions (the paper's protocol),
which drops every edge the partition cuts. Here the model runs once on the whole graph, layer
by layer as its own ``forward`` does, with every convolution applied to blocks of destination
nodes (:mod:`revgnn_dgl.nn.streaming`): the block sizes come from the graph's in-degrees and
the budget, the peak is estimated before anything runs, and a budget that cannot hold even one
node's in-edges is refused with the figure.

>>> parse_memory_budget("1.5GB"), parse_memory_budget("512MiB")
(1500000000, 536870912)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..limits import format_bytes, memory_budget
from ..nn.streaming import STREAMABLE, Block, check_streamable, streamed_convs
from .config import TrainConfig
from .data import DeviceData
from .inputs import predict

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip

#: Without ``--memory-budget``: this share of the memory the process may use, at most 4 GiB.
DEFAULT_SHARE = 0.25


def parse_memory_budget(text: str) -> int:
    """``"4GB"``, ``"512MiB"``, ``"2e9"`` -> bytes; one line naming the value when it is not one."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([KMGT]?I?B?)\s*", str(text), re.IGNORECASE)
    if not match or match.group(2).upper() not in _UNITS:
        raise ConfigError(f"--memory-budget {text!r} is not a size: write e.g. 4GB, 512MB or 2GiB.")
    value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if not 1 <= value < 2**62:
        raise ConfigError(f"--memory-budget {text!r} is out of range: give a positive size such as 4GB.")
    return int(value)


@dataclass(frozen=True)
class BlockPlan:
    """Destination blocks and the peak they were sized for."""

    blocks: List[Block]
    fixed_bytes: int  # the node features a layer holds, whatever the blocks
    block_bytes: int  # the largest block's estimated working set
    budget: int

    @property
    def peak_bytes(self) -> int:
        return self.fixed_bytes + self.block_bytes


def _widths(model: nn.Module) -> Tuple[int, int]:
    """The widest node feature of a layer (the model's hidden size, or its convolutions' output
    times their heads) and the width of the raw edge features."""
    hidden = int(getattr(model, "hidden", 0) or 0)
    for module in model.modules():
        if isinstance(module, STREAMABLE):
            out = getattr(module, "out_feats", None) or getattr(module, "_out_feats", 1)
            hidden = max(hidden, int(out or 1) * int(getattr(module, "num_heads", 1) or 1))
    edge = int(getattr(model, "edge_feats", 0) or 0)
    return max(hidden, 1), edge


def plan_blocks(
    in_degrees: Tensor, *, hidden: int, in_feats: int, edge_feats: int, budget: int, element_bytes: int = 4
) -> BlockPlan:
    """Consecutive destination blocks whose edges fit ``budget`` beside the layer's node features.

    Per edge a block holds its source and destination ids and edge id (and DGL's formats of them),
    the raw edge features, the edge embedding and up to two messages; per node, the gathered source
    row and the output row. The fixed part is a handful of ``N x hidden`` layer features.
    """
    n = int(in_degrees.numel())
    per_edge = 8 * 8 + element_bytes * (edge_feats + 3 * hidden)
    per_node = 8 * 2 + element_bytes * (in_feats + 3 * hidden)
    fixed = n * element_bytes * (in_feats + 8 * hidden)
    room = budget - fixed
    cost = in_degrees.to(torch.int64).cpu() * per_edge + per_node
    worst = int(cost.max()) if n else 0
    if room < worst:
        raise ConfigError(
            f"--memory-budget {format_bytes(budget)} is too small for full-graph inference: the layer's node features "
            f"take {format_bytes(fixed)} and the node with most in-edges ({int(in_degrees.max())}) needs "
            f"{format_bytes(worst)} more; give at least {format_bytes(fixed + worst)}."
        )
    cumulative = torch.cumsum(cost, 0)
    blocks: List[Block] = []
    first, largest = 0, 0
    while first < n:
        before = int(cumulative[first - 1]) if first else 0
        last = int(torch.searchsorted(cumulative, torch.tensor(before + room), right=True))
        last = max(last, first + 1)
        blocks.append((first, last))
        largest = max(largest, int(cumulative[last - 1]) - before)
        first = last
    return BlockPlan(blocks, fixed, largest, budget)


def plan_for(model: nn.Module, data: DeviceData, memory_budget_bytes: Optional[int] = None,
             block_nodes: Optional[int] = None) -> BlockPlan:  # fmt: skip
    """The plan of ``model`` on ``data``'s graph: sized from the budget (default: a quarter of the
    memory this process may use, at most 4 GiB), or ``block_nodes`` nodes a block (tests)."""
    check_streamable(model)
    graph = data.graph
    hidden, edge_feats = _widths(model)
    in_feats = int(graph.ndata["feat"].shape[1]) if "feat" in graph.ndata else hidden
    element = torch.finfo(next(model.parameters()).dtype).bits // 8 if any(True for _ in model.parameters()) else 4
    budget = memory_budget_bytes or int(min(DEFAULT_SHARE * memory_budget(), 4 * 2**30))
    plan = plan_blocks(graph.in_degrees(), hidden=hidden, in_feats=in_feats, edge_feats=edge_feats, budget=budget,
                       element_bytes=element)  # fmt: skip
    if block_nodes:
        n = graph.num_nodes()
        plan = BlockPlan([(a, min(a + block_nodes, n)) for a in range(0, n, block_nodes)], plan.fixed_bytes,
                         plan.block_bytes, budget)  # fmt: skip
    return plan


@torch.no_grad()
def full_graph_logits(model: nn.Module, data: DeviceData, config: Optional[TrainConfig] = None, *,
                      plan: Optional[BlockPlan] = None, memory_budget_bytes: Optional[int] = None) -> Tensor:  # fmt: skip
    """``(N, outputs)`` float32 logits of ``model`` on the whole graph of ``data``, block by block.

    Equal to ``model(graph, ...)`` on the whole graph (tested to 1e-12 in float64 for every
    aggregator and for GAT's edge softmax), with at most one block's edges live at a time.
    """
    model.eval()
    plan = plan or plan_for(model, data, memory_budget_bytes)
    # What the budget leaves beside the planned peak keeps the blocks from one layer to the next.
    with streamed_convs(model, plan.blocks, cache_bytes=max(0, plan.budget - plan.peak_bytes)):
        logits, _ = predict(model, data.graph, data.labels, data.train_mask, config, data.dataset.num_outputs,
                            training=False)  # fmt: skip
    return logits.float()
