"""Fault injection for the crash and failure tests: the one hook of the package.

With ``REVGNN_DGL_FAULT=POINT:N[:ACTION]`` in the environment, the N-th time the process reaches
:func:`fault_point` ``POINT`` it fails there: ``kill`` (the default) sends itself SIGKILL (no
handler, no cleanup, as a power cut or the OOM killer would), ``raise`` raises a RuntimeError
(an ordinary bug). The points sit inside the writes whose atomicity the tests check
(``checkpoint`` and ``state``: temporary file written, not yet renamed; ``metrics``: half a line
written) and at the start of each epoch's training on each rank (``rank1-epoch3``), to check
that one failing process stops a whole data-parallel job. Unset, a point costs one lookup.
"""

from __future__ import annotations

import os
import signal
from typing import Dict, Tuple

from .errors import ConfigError

ENV_VAR = "REVGNN_DGL_FAULT"
ACTIONS = ("kill", "raise")
_reached: Dict[str, int] = {}


def _parse(spec: str) -> Tuple[str, int, str]:
    point, _, rest = spec.partition(":")
    count, _, action = rest.partition(":")
    try:
        n = int(count or 1)
    except ValueError:
        n = 0
    if not point or n < 1 or (action or "kill") not in ACTIONS:
        raise ConfigError(f"{ENV_VAR}={spec!r}: expected POINT:N[:kill|raise], e.g. state:2 or rank1-epoch3:1:raise.")
    return point, n, action or "kill"


def fault_point(name: str) -> None:
    """Fail here if ``$REVGNN_DGL_FAULT`` names this point and this is its N-th time."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    point, count, action = _parse(spec)
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] != count:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected failure ({ENV_VAR}={spec})")
