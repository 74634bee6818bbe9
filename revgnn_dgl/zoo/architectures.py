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
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from ..errors import ZooError

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


def build_from_config(architecture: str, arguments: Dict[str, Any]) -> "nn.Module":
    """Build an architecture from its arguments, rejecting unknown arguments with a clear error."""
    allowed = architecture_arguments(architecture)
    if allowed is not None:
        unknown = sorted(set(arguments) - allowed)
        if unknown:
            raise ZooError(
                f"unknown argument(s) {', '.join(unknown)} for architecture {architecture!r}; "
                f"valid: {', '.join(sorted(allowed))}."
            )
    try:
        return _ARCHITECTURES[architecture](**arguments)
    except (TypeError, ValueError) as err:
        raise ZooError(f"cannot build {architecture!r} with {arguments}: {err}") from None


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
