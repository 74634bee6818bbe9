"""The architectures the zoo can build: name -> builder, with the keyword arguments each accepts.

This is the bottom of the zoo: it knows how to build a model from ``(architecture, arguments)``
and nothing about cards, checkpoints or files. The package's own architectures are imported
from :mod:`revgnn_dgl.models` on first use (the models know nothing of the zoo), so that
listing cards never imports torch or DGL.

>>> from revgnn_dgl.zoo.architectures import build_from_config, list_architectures
>>> "revgnn" in list_architectures()
True
>>> build_from_config("mlp", {"in_feats": 4, "out_feats": 2, "hidden": 8}).__class__.__name__
'MLP'
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from ..errors import ZooError
from ..limits import MAX_GROUPS, MAX_HEADS, MAX_LAYERS, MAX_MLP_LAYERS, MAX_WIDTH, check_count, check_memory

if TYPE_CHECKING:
    from torch import nn

ModelBuilder = Callable[..., "nn.Module"]

_ARCHITECTURES: Dict[str, ModelBuilder] = {}
_ARGUMENTS: Dict[str, Optional[frozenset]] = {}
_BUILTINS_LOADED = False


def register_architecture(name: str, arguments: Optional[set] = None) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering a builder ``fn(**arguments) -> nn.Module`` under ``name``.

    ``arguments`` lists the keyword arguments the builder accepts (used to reject typos in
    configurations); by default they are read from the builder's signature.
    """

    def decorator(fn: ModelBuilder) -> ModelBuilder:
        _ensure_builtins()
        _add(name, fn, arguments)
        return fn

    return decorator


def list_architectures() -> List[str]:
    """Names of the registered architectures."""
    _ensure_builtins()
    return sorted(_ARCHITECTURES)


def architecture_arguments(architecture: str) -> Optional[frozenset]:
    """The keyword arguments ``architecture``'s builder accepts; None when it takes ``**kwargs``."""
    _ensure_builtins()
    _check_known(architecture)
    return _ARGUMENTS[architecture]


#: Size arguments and their bounds (minimum, maximum), checked before any build (see :mod:`revgnn_dgl.limits`).
SIZE_ARGUMENTS: Dict[str, Tuple[int, int]] = {
    "num_layers": (1, MAX_LAYERS),
    "hidden": (1, MAX_WIDTH),
    "in_feats": (0, MAX_WIDTH),
    "out_feats": (1, MAX_WIDTH),
    "edge_feats": (0, MAX_WIDTH),
    "species_feats": (0, MAX_WIDTH),
    "groups": (1, MAX_GROUPS),
    "mlp_layers": (1, MAX_MLP_LAYERS),
    "heads": (1, MAX_HEADS),
}


def build_from_config(architecture: str, arguments: Dict[str, Any]) -> "nn.Module":
    """Build an architecture from its arguments, rejecting unknown arguments with a clear error.

    Sizes are bounded first (:data:`SIZE_ARGUMENTS`) and the weights' memory is estimated on the
    meta device from two shallow copies of the model, so that no argument (from a checkpoint
    header, a state or a flag) can start an unbounded build or allocation.
    """
    allowed = architecture_arguments(architecture)
    if allowed is not None:
        unknown = sorted(set(arguments) - allowed)
        if unknown:
            raise ZooError(
                f"unknown argument(s) {', '.join(unknown)} for architecture {architecture!r}; "
                f"valid: {', '.join(sorted(allowed))}."
            )
    check_sizes(architecture, arguments)
    try:
        check_memory(
            f"architecture {architecture!r} with {_size_summary(arguments)}",
            2 * estimate_state_bytes(architecture, arguments),  # the weights and the copy loaded into them
            error=ZooError,
        )
        return _ARCHITECTURES[architecture](**arguments)
    except (TypeError, ValueError) as err:
        if isinstance(err, ZooError):
            raise
        raise ZooError(f"cannot build {architecture!r} with {_short(arguments)}: {_short(err)}") from None


def check_sizes(architecture: str, arguments: Dict[str, Any]) -> None:
    """Refuse a size argument that is not an integer within its bound (:data:`SIZE_ARGUMENTS`)."""
    for key, (low, high) in SIZE_ARGUMENTS.items():
        if key in arguments:
            check_count(key, arguments[key], high, minimum=low, error=ZooError, where=f"architecture {architecture!r}")
    hidden, groups = arguments.get("hidden"), arguments.get("groups")
    if isinstance(hidden, int) and isinstance(groups, int) and groups > hidden:
        raise ZooError(f"groups={groups} is more than hidden={hidden} (architecture {architecture!r}).")


def estimate_state_bytes(architecture: str, arguments: Dict[str, Any]) -> int:
    """Bytes of the model's ``state_dict``, from builds on the meta device (no memory).

    A deep model is extrapolated from copies of 2 and 3 layers (its layers repeat), so the
    estimate costs the same for 3 and 4096 layers.
    """
    import torch

    _ensure_builtins()
    _check_known(architecture)
    builder = _ARCHITECTURES[architecture]

    def size(args: Dict[str, Any]) -> int:
        with torch.device("meta"):
            model = builder(**args)
        return sum(t.numel() * t.element_size() for t in model.state_dict().values())

    layers = arguments.get("num_layers")
    if isinstance(layers, int) and not isinstance(layers, bool) and layers > 3:
        two, three = size({**arguments, "num_layers": 2}), size({**arguments, "num_layers": 3})
        return two + (layers - 2) * max(three - two, 0)
    return size(arguments)


def _size_summary(arguments: Dict[str, Any]) -> str:
    sizes = [f"{k}={arguments[k]}" for k in SIZE_ARGUMENTS if k in arguments]
    return ", ".join(sizes) or "its arguments"


def _short(value: Any, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------ internals
def _check_known(architecture: str) -> None:
    if architecture not in _ARCHITECTURES:
        raise ZooError(f"unknown architecture {architecture!r}; known: {', '.join(sorted(_ARCHITECTURES))}.")


def _add(name: str, fn: ModelBuilder, arguments: Optional[set]) -> None:
    if name in _ARCHITECTURES:
        raise ZooError(f"architecture {name!r} is already registered.")
    _ARCHITECTURES[name] = fn
    _ARGUMENTS[name] = frozenset(arguments) if arguments is not None else _signature_arguments(fn)


def _signature_arguments(fn: Callable) -> Optional[frozenset]:
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _ensure_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    for name, (builder, arguments) in _builtin_architectures().items():
        _add(name, builder, arguments)


def _builtin_architectures() -> Dict[str, Any]:
    """The package's architectures, as ``name -> (builder, accepted arguments or None)``."""
    from ..models import DEEPGCN_ARGUMENTS, GCN, MLP, ResGNN, RevGAT, RevGNN, WTRevGNN, deq_gnn

    return {
        "revgnn": (RevGNN, DEEPGCN_ARGUMENTS - {"connection"}),
        "wt-revgnn": (WTRevGNN, DEEPGCN_ARGUMENTS - {"connection"}),
        "resgnn": (ResGNN, DEEPGCN_ARGUMENTS - {"connection", "groups", "reinit_groups", "disable"}),
        "deq-gnn": (deq_gnn, None),
        "mlp": (MLP, None),
        "gcn": (GCN, None),
        "revgat": (RevGAT, None),
    }
