"""The model cards: named configurations (``zoo/NAME/card.yaml`` in the repository).

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
import difflib
import fnmatch
import importlib.util
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from ..errors import ZooError

#: The data package holding the cards: the repository's top-level ``zoo/``, installed by setup.py.
CARDS_PACKAGE = "revgnn_dgl.zoo.cards"


def _cards_dir() -> Path:
    spec = importlib.util.find_spec(CARDS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ZooError(
            f"the model cards ({CARDS_PACKAGE}, the repository's zoo/ folder) are not installed: "
            "install the package (pip install -e . in a checkout) rather than putting its folder on PYTHONPATH."
        )
    if spec.origin is None:  # a namespace package: some folder named like it, without zoo/__init__.py
        where = ", ".join(map(str, spec.submodule_search_locations))
        raise ZooError(f"{CARDS_PACKAGE} resolves to {where}, not the zoo/ folder: remove that stale folder.")
    return Path(spec.origin).resolve().parent


#: The folder of the model cards: one folder per model, ``NAME/card.yaml`` (and bundled weights).
CARDS_DIR = _cards_dir()

_CONFIGS: Dict[str, Dict[str, Any]] = {}
_ALIASES: Dict[str, str] = {}
_CARDS_LOADED = False


def register_model(card: Dict[str, Any]) -> None:
    """Register a named configuration (a model card as a dict: at least ``name``, ``architecture``
    and ``arguments``). Names and aliases must be new."""
    _ensure_cards()
    _add_card(card, source="register_model")


def unregister_model(name: str) -> None:
    """Remove a model registered with :func:`register_model` (a name or an alias), and its aliases."""
    canonical = resolve_name(name)
    del _CONFIGS[canonical]
    for alias in [a for a, target in _ALIASES.items() if target == canonical]:
        del _ALIASES[alias]


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
    known = sorted(_CONFIGS) + sorted(_ALIASES)
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6) or fnmatch.filter(known, f"*{key}*")[:5]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ZooError(f"unknown model {name!r}.{hint} Known models: {', '.join(sorted(_CONFIGS))}.")


def get_config(name: str) -> Dict[str, Any]:
    """A copy of the model card (architecture, arguments, metrics, checkpoint) for ``name`` or an alias."""
    return copy.deepcopy(_CONFIGS[resolve_name(name)])


# ------------------------------------------------------------------ cards
def card_paths() -> List[Path]:
    """The YAML model cards shipped with the package (``zoo/NAME/card.yaml``)."""
    return sorted(CARDS_DIR.glob("*/card.yaml"))


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


# ------------------------------------------------------------------ the zoo's index
def paper_score(card: Dict[str, Any]) -> str:
    """The card's published test score with its metric's name (``rocauc 87.74 ± 0.13``), or ``-``."""
    paper = card.get("paper") or {}
    for key, value in paper.items():
        if key.startswith("test_") and key.count("_") == 1:  # test_rocauc, test_accuracy (not variants)
            return f"{key[len('test_') :]} {value}"
    return "-"


def measured_score(card: Dict[str, Any]) -> str:
    """The bundled weights' own val / test score as the card records it (``accuracy 0.774 / 0.772``), or ``-``."""
    metrics = card.get("metrics") or {}
    if "val" not in metrics or "test" not in metrics:
        return "-"
    return f"{metrics.get('metric', '?')} {float(metrics['val']):.3f} / {float(metrics['test']):.3f}"


def card_rows() -> List[Dict[str, str]]:
    """One row per registered model: what ``revgnn-dgl zoo list`` and ``zoo/README.md`` show."""
    rows = []
    for name in list_models():
        card = get_config(name)
        args = card["arguments"]
        size = " x ".join(str(args[k]) for k in ("num_layers", "hidden") if k in args)
        rows.append({
            "name": name,
            "aliases": ",".join(card.get("aliases", [])) or "-",
            "architecture": card["architecture"] + (f" {size}" if size else ""),
            "dataset": str(card.get("dataset", "-")),
            "parameters": f"{card['parameters']:,}" if isinstance(card.get("parameters"), int) else "?",
            "paper test": paper_score(card),
            "measured val / test": measured_score(card),
            "weights": str((card.get("checkpoint") or {}).get("source", "none")),
        })  # fmt: skip
    return rows


def zoo_index_markdown() -> str:
    """The text of ``zoo/README.md``: the zoo's cards as a table, written by ``revgnn-dgl zoo list --markdown``."""
    rows = card_rows()
    columns = [c for c in rows[0] if c != "aliases"] if rows else []
    lines = [
        "# The model zoo",
        "",
        "One folder per model: `card.yaml` (architecture and arguments, dataset, the paper's and the",
        "measured scores, the training recipe and command, where the weights come from) and, for models",
        "trained by this project, `weights.safetensors` (made from seed 0 of the committed run the card",
        "names, by `python results/make_card.py`). `revgnn_dgl.create_model(NAME)` builds a card and",
        "`revgnn-dgl zoo show NAME` prints it. This index is written by `revgnn-dgl zoo list --markdown`",
        "(`tests/zoo/test_registry.py` checks that it is current).",
        "",
        "Measured scores are from this project's 2-core CPU machine; they reproduce exactly on one machine,",
        "not necessarily across machines. `official` weights must be imported by hand (`revgnn-dgl zoo import`).",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        cells = [f"[`{row['name']}`]({row['name']}/card.yaml)" if c == "name" else row[c] for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
