"""The model zoo: named configurations (the cards in ``zoo/``) and the architectures that build them.

>>> import revgnn_dgl
>>> "revgnn-deep" in revgnn_dgl.list_models()
True
>>> revgnn_dgl.get_config("deep")["arguments"]["num_layers"]
1001
"""
from __future__ import annotations

import copy
import fnmatch
import inspect
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union

import yaml

if TYPE_CHECKING:  # torch is imported by the models, on first use: keeps `revgnn-dgl --help` fast
    from torch import nn

ModelBuilder = Callable[..., "nn.Module"]

_ARCHITECTURES: Dict[str, ModelBuilder] = {}
_ARCH_ARGUMENTS: Dict[str, Optional[set]] = {}
_CONFIGS: Dict[str, Dict[str, Any]] = {}
_ALIASES: Dict[str, str] = {}
_CARDS_LOADED = False


class ZooError(ValueError):
    """An unknown model, a bad configuration or an unusable checkpoint; the message says what to do."""


def register_architecture(name: str, arguments: Optional[set] = None) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering a builder ``fn(**arguments) -> nn.Module`` under ``name``.

    ``arguments`` lists the keyword arguments the builder accepts (used to reject typos in
    configurations); by default they are read from the builder's signature.
    """

    def decorator(fn: ModelBuilder) -> ModelBuilder:
        if name in _ARCHITECTURES:
            raise ZooError(f"architecture {name!r} is already registered.")
        _ARCHITECTURES[name] = fn
        _ARCH_ARGUMENTS[name] = arguments if arguments is not None else _signature_arguments(fn)
        return fn

    return decorator


def register_model(card: Dict[str, Any]) -> None:
    """Register a named configuration (a model card as a dict: at least ``name``, ``architecture``
    and ``arguments``). Names and aliases must be new."""
    _ensure_cards()
    _add_card(card, source="register_model")


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Names of the registered models, optionally filtered by a shell-style pattern (``"revgnn-*"``)."""
    _ensure_cards()
    names = sorted(_CONFIGS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def list_architectures() -> List[str]:
    _ensure_cards()
    return sorted(_ARCHITECTURES)


def resolve_name(name: str) -> str:
    """The canonical model name for a name or an alias (``deep`` -> ``revgnn-deep``)."""
    _ensure_cards()
    key = name.strip().lower()
    if key in _CONFIGS:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    close = fnmatch.filter(sorted(_CONFIGS) + sorted(_ALIASES), f"*{key}*")
    hint = f" Did you mean {', '.join(close[:5])}?" if close else ""
    raise ZooError(f"unknown model {name!r}.{hint} Known models: {', '.join(sorted(_CONFIGS))}.")


def get_config(name: str) -> Dict[str, Any]:
    """A copy of the model card (architecture, arguments, metrics, checkpoint) for ``name`` or an alias."""
    return copy.deepcopy(_CONFIGS[resolve_name(name)])


def build_from_config(architecture: str, arguments: Dict[str, Any]) -> "nn.Module":
    """Build an architecture from its arguments, rejecting unknown arguments with a clear error."""
    _ensure_cards()
    if architecture not in _ARCHITECTURES:
        raise ZooError(f"unknown architecture {architecture!r}; known: {', '.join(sorted(_ARCHITECTURES))}.")
    allowed = _ARCH_ARGUMENTS[architecture]
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


def create_model(name: str, pretrained: Union[bool, str, Path] = False, **overrides: Any) -> "nn.Module":
    """Build a registered model, optionally with weights.

    Parameters
    ----------
    name : str
        A model name or alias (see :func:`list_models`).
    pretrained : bool or path
        ``True``: the card's checkpoint, from the cache (downloaded and verified if the card has a
        URL). A path: a local checkpoint file in this package's format.
    **overrides
        Architecture arguments replacing the card's (e.g. ``num_layers=8`` for a quick test).
        Overrides that change the architecture cannot be combined with ``pretrained``.

    Examples
    --------
    >>> model = create_model("revgnn-deep", num_layers=2)
    >>> sum(p.numel() for p in model.parameters())
    51384
    """
    config = get_config(name)
    arguments = {**config["arguments"], **overrides}
    model = build_from_config(config["architecture"], arguments)
    model.zoo_config = {"name": config["name"], "architecture": config["architecture"], "arguments": arguments}
    if pretrained is not False and pretrained is not None:
        from .checkpoint import load_weights  # lazy: keeps `import revgnn_dgl` light
        from .hub import pretrained_path

        path = pretrained_path(config) if pretrained is True else Path(pretrained)
        load_weights(model, path, expected_architecture=config["architecture"], expected_arguments=arguments)
    return model


# ------------------------------------------------------------------ cards
def card_paths() -> List[Path]:
    """The YAML model cards shipped with the package (the top-level ``zoo/`` folder)."""
    try:  # installed (wheel or editable): zoo/ is the package revgnn_dgl._zoo
        folder = Path(str(resources.files("revgnn_dgl._zoo")))
    except ModuleNotFoundError:  # a source checkout on sys.path without installation
        folder = Path(__file__).resolve().parent.parent / "zoo"
    return sorted(folder.glob("*.yaml"))


REQUIRED_CARD_FIELDS = ("name", "architecture", "arguments", "dataset", "parameters", "citation", "checkpoint")


def _add_card(card: Dict[str, Any], source: str) -> None:
    missing = [f for f in ("name", "architecture", "arguments") if f not in card]
    if missing:
        raise ZooError(f"model card {source} lacks {', '.join(missing)}.")
    name = str(card["name"]).lower()
    aliases = [str(a).lower() for a in card.get("aliases", [])]
    for key in [name] + aliases:
        if key in _CONFIGS or key in _ALIASES:
            raise ZooError(f"model name {key!r} (from {source}) is already registered.")
    _CONFIGS[name] = copy.deepcopy(card)
    for alias in aliases:
        _ALIASES[alias] = name


def _ensure_cards() -> None:
    global _CARDS_LOADED
    if _CARDS_LOADED:
        return
    _CARDS_LOADED = True
    from . import models  # noqa: F401  (registers the architectures)

    for path in card_paths():
        with open(path, encoding="utf-8") as fh:
            _add_card(yaml.safe_load(fh), source=str(path))


def _signature_arguments(fn: Callable) -> Optional[set]:
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
