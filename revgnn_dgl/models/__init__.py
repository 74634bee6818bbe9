"""Models: RevGNN, WT-RevGNN, ResGNN (one deep GNN, three connections), DEQ-GNN, RevGAT and an MLP."""

import inspect
from typing import Any, Optional, Set

from .deepgcn import CONNECTIONS, CONVS, DeepGCN, ResGNN, RevGNN, WTRevGNN
from .deepgcn_blocks import GEN_OPTIONS, BlockSpec, GCNBlock, GCNIIBlock, GENBlock, SAGEBlock, block_from_arguments
from .deq import DEQGNN
from .gcn import GCN
from .mlp import MLP
from .revgat import RevGAT

__all__ = [
    "CONNECTIONS",
    "CONVS",
    "BlockSpec",
    "GCNBlock",
    "GCNIIBlock",
    "GENBlock",
    "SAGEBlock",
    "block_from_arguments",
    "DEEPGCN_ARGUMENTS",
    "DEQGNN",
    "GCN",
    "MLP",
    "DeepGCN",
    "ResGNN",
    "RevGAT",
    "RevGNN",
    "WTRevGNN",
    "deq_gnn",
]


def _named(fn: Any) -> Set[str]:
    return {n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD}


#: The keyword arguments a DeepGCN accepts in a card: its own, and the flat names of its block
#: (:func:`~.deepgcn_blocks.block_from_arguments`, with the GENConv options it forwards).
DEEPGCN_ARGUMENTS = frozenset(
    (_named(DeepGCN.__init__) - {"self", "block"}) | _named(block_from_arguments) | GEN_OPTIONS
)


def deq_gnn(
    in_feats: int,
    out_feats: int,
    hidden: int = 64,
    edge_feats: int = 0,
    species_feats: int = 0,
    dropout: float = 0.0,
    conv: str = "gen",
    aggregator: str = "softmax",
    solver: str = "anderson",
    tol: float = 1e-4,
    max_iter: int = 50,
    backward_max_iter: Optional[int] = None,
    backward_tol: Optional[float] = None,
    learn_t: bool = False,
) -> DEQGNN:
    """DEQ-GNN under the zoo's argument names (``in_feats``, ``hidden``, ``edge_feats``...)."""
    return DEQGNN(
        in_feats,
        hidden,
        out_feats,
        edge_channels=edge_feats,
        species_feats=species_feats,
        dropout=dropout,
        conv=conv,
        aggregator=aggregator,
        solver=solver,
        tol=tol,
        max_iter=max_iter,
        backward_max_iter=backward_max_iter,
        backward_tol=backward_tol,
        conv_kwargs={"learn_t": True} if learn_t else None,
    )
