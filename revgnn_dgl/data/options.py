"""Typed dataset options: check and convert ``load_dataset``'s keyword options.

The command line hands options over as text (``--dataset-option
num_nodes=500`` arrives as a string, or as whatever YAML makes of it), so
each value is converted to the type of the loader's parameter, read from its
annotation (``seed: int``, ``avg_degree: float``, ``download: bool``,
``root: str | Path | None``) or, without one, from its default. A value that
does not convert is refused with one line naming the option. Importable
without DGL or torch.

>>> def loader(num_nodes: int = 10, rate: float = 0.5, loops: bool = False, root: str | None = None):
...     pass
>>> coerce_options("toy", loader, {"num_nodes": "500", "rate": "1e-2", "loops": "yes", "root": "/data"})
{'num_nodes': 500, 'rate': 0.01, 'loops': True, 'root': '/data'}
>>> coerce_options("toy", loader, {"num_nodes": "abc"})
Traceback (most recent call last):
...
revgnn_dgl.errors.DatasetError: dataset option num_nodes must be an integer, got 'abc'
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import re
import typing
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from ..errors import DatasetError

_NONE = type(None)
#: Type names an annotation string may use, mapped to the types they stand for.
_NAMED_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "Path": Path, "None": _NONE}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}


def option_types(loader: Callable[..., Any]) -> Dict[str, Tuple[type, ...]]:
    """The keyword options of ``loader`` and the types each accepts.

    Parameters
    ----------
    loader : callable
        A function (or ``functools.partial``) whose parameters with a
        default are its options.

    Returns
    -------
    dict
        Option name -> tuple of accepted types (``type(None)`` for an
        optional one); an empty tuple where the annotation is not understood
        (the value is then passed on unchecked).
    """
    types = {}
    for param in inspect.signature(loader).parameters.values():
        if param.default is param.empty:
            continue
        kinds = _annotation_types(param.annotation)
        if kinds is None:
            kinds = () if param.default is None else (type(param.default),)
        if param.default is None and kinds and _NONE not in kinds:
            kinds = (*kinds, _NONE)
        types[param.name] = kinds
    return types


def coerce_options(dataset: str, loader: Callable[..., Any], options: Dict[str, Any]) -> Dict[str, Any]:
    """Check ``options`` against ``loader``'s parameters and convert them.

    Parameters
    ----------
    dataset : str
        Dataset name, for the error messages.
    loader : callable
        The loader the options are for.
    options : dict
        Option name -> value; strings that spell a valid value of the
        option's type (``'500'``, ``'0.1'``, ``'true'``, ``'none'``) are
        converted.

    Returns
    -------
    dict
        The options with converted values.

    Raises
    ------
    DatasetError
        For an option the loader does not take (naming the ones it takes),
        or a value of the wrong type: ``dataset option num_nodes must be an
        integer, got 'abc'``.
    """
    types = option_types(loader)
    unknown = sorted(set(options) - set(types))
    if unknown:
        raise DatasetError(
            f"dataset {dataset!r} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(types) or 'none'}"
        )
    return {key: _coerce(key, value, types[key]) for key, value in options.items()}


def _annotation_types(annotation: Any) -> Optional[Tuple[type, ...]]:
    """Types named by an annotation (a string under postponed evaluation), or None."""
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        kinds = _parse_annotation(annotation.replace(" ", "").replace("typing.", ""))
        return tuple(dict.fromkeys(kinds)) if kinds is not None else ()
    if isinstance(annotation, type):
        return (annotation,)
    args = typing.get_args(annotation)
    if args and all(isinstance(a, type) for a in args):
        return tuple(args)
    return ()


def _parse_annotation(text: str) -> Optional[list]:
    """Types in an annotation string such as ``'str | Path | None'`` or
    ``'Optional[Union[str, Path]]'``; None when a part is not understood."""
    parts = _split_top(text, "|")
    if len(parts) > 1:
        found = [_parse_annotation(part) for part in parts]
        return None if any(f is None for f in found) else [k for f in found if f is not None for k in f]
    match = re.fullmatch(r"(Optional|Union)\[(.*)\]", text)
    if match:
        found = [_parse_annotation(part) for part in _split_top(match.group(2), ",")]
        if any(f is None for f in found):
            return None
        return [k for f in found if f is not None for k in f] + ([_NONE] if match.group(1) == "Optional" else [])
    kind = _NAMED_TYPES.get(text.rsplit(".", 1)[-1])
    return None if kind is None else [kind]


def _split_top(text: str, separator: str) -> list:
    """``text`` split at ``separator`` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += char == "["
        depth -= char == "]"
        if char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _coerce(key: str, value: Any, kinds: Tuple[type, ...]) -> Any:
    if not kinds:
        return value
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        if _NONE in kinds:
            return None
        if value is None:
            _refuse(key, value, kinds)
    if str in kinds or Path in kinds:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = str(value)  # YAML reads `root=2024` as a number
        if isinstance(value, (str, os.PathLike)):
            return value if str in kinds or isinstance(value, Path) else Path(value)
    for kind in (bool, int, float):
        if kind in kinds:
            converted = _CONVERTERS[kind](value)
            if converted is not None:
                if kind is float and not math.isfinite(converted):
                    raise DatasetError(f"dataset option {key} must be a finite number, got {value!r}")
                return converted
    _refuse(key, value, kinds)


def _refuse(key: str, value: Any, kinds: Tuple[type, ...]) -> None:
    words = [_WORDS[k] for k in (bool, int, float, str, Path) if k in kinds and not (k is Path and str in kinds)]
    if _NONE in kinds:
        words.append("none")
    wanted = " or ".join(words) if words else "of type " + "/".join(k.__name__ for k in kinds)
    raise DatasetError(f"dataset option {key} must be {wanted}, got {value!r}")


def _to_bool(value: Any) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    return None


def _to_int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            value = _to_float(value)
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(float(value))
    return None


def _to_float(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


_CONVERTERS = {bool: _to_bool, int: _to_int, float: _to_float}
