"""Lazy package exports (PEP 562): a package's public names, each imported on first use.

The packages use it so that importing one light submodule (the torch-only engine, the DGL-free
catalogue, the CLI's settings) never loads torch or DGL through its package's ``__init__``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Mapping, MutableMapping, Tuple


def lazy_exports(
    package: str, namespace: MutableMapping[str, Any], exports: Mapping[str, str]
) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose name -> submodule map is ``exports``.

    A submodule is named relative to the package (``"config"`` or ``".config"``; ``"..errors"``
    for a sibling of the package). The first access imports it and caches the value in
    ``namespace`` (the package's ``globals()``), so later accesses cost nothing.
    """
    table: Dict[str, str] = {k: v if v.startswith(".") else f".{v}" for k, v in exports.items()}

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name], package), name)
        namespace[name] = value
        return value

    def __dir__() -> List[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
