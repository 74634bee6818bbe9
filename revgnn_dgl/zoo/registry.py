"""The model cards: named configurations (the YAML files in ``revgnn_dgl/zoo/cards/``).

A card names an architecture, its arguments, the dataset, the paper's metrics and where the
weights come from. Reading cards needs neither torch nor DGL.

>>> import revgnn_dgl
>>> "revgnn-deep" in revgnn_dgl.list_models()
True
>>> revgnn_dgl.get_config("deep")["arguments"]["num_layers"]
1001
"""
from __future__ import annotations

import copy
import fnmatch
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from ..errors import ZooError

#: The folder of the YAML cards (and, under ``weights/``, the bundled checkpoints).
CARDS_DIR = Path(__file__).resolve().parent / "cards"

_CONFIGS: Dict[str, Dict[str, Any]] = {}
_ALIASES: Dict[str, str] = {}
_CARDS_LOADED = False


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


# ------------------------------------------------------------------ cards
def card_paths() -> List[Path]:
    """The YAML model cards shipped with the package."""
    return sorted(CARDS_DIR.glob("*.yaml"))


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
    for path in card_paths():
        with open(path, encoding="utf-8") as fh:
            _add_card(yaml.safe_load(fh), source=str(path))

