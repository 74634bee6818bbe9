"""What training a zoo model needs in memory, estimated from its card's arguments before anything is built.

The trainer asks :func:`training_bytes` and checks the answer against the machine's memory; what
each architecture's activations cost lives here, beside the architectures, so that a new
architecture is described here (:func:`register_constant_memory`) and never in the trainer.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

from .architectures import check_sizes, estimate_state_bytes

#: Architectures whose activations do not grow with depth (reversible or implicit).
_CONSTANT_MEMORY = {"revgnn", "wt-revgnn", "revgat", "deq-gnn"}


def register_constant_memory(architecture: str) -> None:
    """Declare that ``architecture`` keeps one layer's activations whatever its depth (reversible, implicit)."""
    _CONSTANT_MEMORY.add(architecture)


def constant_memory(architecture: str) -> bool:
    """Whether ``architecture``'s activations do not grow with its depth."""
    return architecture in _CONSTANT_MEMORY


def training_bytes(
    architecture: str, arguments: Dict[str, Any], nodes: int, edges: float
) -> Optional[Tuple[int, float]]:
    """Bytes of the weights (four copies: weights, gradients, Adam's two moments) and a lower bound of
    the activations of one part of ``nodes`` nodes and ``edges`` edges (a float per channel per node
    and per edge, per layer unless the activations are constant in depth).

    None when the arguments cannot be built (the build that follows names what is wrong);
    :class:`~revgnn_dgl.errors.ConfigError` when a size is beyond the package's limits.
    """
    check_sizes(architecture, arguments)
    try:
        weights = 4 * estimate_state_bytes(architecture, arguments)
    except (TypeError, ValueError, RuntimeError):
        return None
    hidden, layers = arguments.get("hidden"), arguments.get("num_layers")
    hidden = hidden if isinstance(hidden, int) else 0
    kept = 1 if constant_memory(architecture) or not isinstance(layers, int) else layers
    return weights, 4 * hidden * (nodes + edges) * kept


def part_size(num_nodes: int, num_edges: int, parts: int) -> Tuple[int, float]:
    """Nodes and edges of one of ``parts`` random parts: about 1/parts of the nodes, and of each node's edges."""
    return math.ceil(num_nodes / parts), num_edges / (parts * parts)
