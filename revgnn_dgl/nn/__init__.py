"""Layers: GENConv, GATConv, the grouped reversible block, shared dropout and the residual baseline.

The names are imported on first use (PEP 562), so that the reversible engine
(:mod:`.grouprevres`, :mod:`.dropout`, :mod:`.solvers`, :mod:`.engine_checks`), which needs torch
only, imports where DGL is not installed (a GPU machine running ``tests/cuda``).
"""
import importlib
from typing import Any

# The errors module imports nothing: re-exported at once (GraphInputError has always been here).
from ..errors import FreedOutputError, GraphInputError

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
    "make_norm": "norm",
}

__all__ = sorted([*_EXPORTS, "FreedOutputError", "GraphInputError"])


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(list(globals()) + __all__)
