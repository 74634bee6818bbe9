"""Layers: GENConv, GATConv, the grouped reversible block, shared dropout and the residual baseline."""
from .blocks import PreActivationBlock, ResBlock
from .dropout import SharedDropout
from .gatconv import GATConv
from ..errors import GraphInputError
from .genconv import AGGREGATORS, GENConv, MessageNorm
from .grouprevres import GroupRevRes
from .norm import make_norm

__all__ = [
    "AGGREGATORS",
    "GATConv",
    "GENConv",
    "GraphInputError",
    "GroupRevRes",
    "MessageNorm",
    "PreActivationBlock",
    "ResBlock",
    "SharedDropout",
    "make_norm",
]
