"""Layers: GENConv, GATConv, the grouped reversible block, shared dropout and the residual baseline.

The names are imported on first use (PEP 562), so that the reversible engine
(:mod:`.grouprevres`, :mod:`.dropout`, :mod:`.solvers`, and the checks of
:mod:`revgnn_dgl.testing.engine_checks`), which needs torch
only, imports where DGL is not installed (a GPU machine running ``tests/cuda``).
"""

# The errors module imports nothing: re-exported at once (GraphInputError has always been here).
from ..errors import FreedOutputError as FreedOutputError
from ..errors import GraphInputError as GraphInputError
from ..lazy import lazy_exports

# name -> the submodule that defines it.
_EXPORTS = {
    "AGGREGATORS": "genconv",
    "GATConv": "gatconv",
    "GENConv": "genconv",
    "GroupRevRes": "grouprevres",
    "MessageNorm": "genconv",
    "PreActivationBlock": "blocks",
    "ResBlock": "blocks",
    "SharedDropout": "dropout",
    "keep_outputs": "grouprevres",
    "make_input_norm": "norm",
    "make_norm": "norm",
}

__all__ = sorted([*_EXPORTS, "FreedOutputError", "GraphInputError"])


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
