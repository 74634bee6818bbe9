"""Fault injection for the crash tests: the process kills itself at a chosen write.

With ``REVGNN_DGL_KILL_AT=POINT:N`` in the environment, the N-th time the process reaches
:func:`fault_point` ``POINT`` it sends itself SIGKILL: no handler, no cleanup, as a power cut or
the OOM killer would. The points sit inside the writes whose atomicity the tests check:
``checkpoint`` and ``state`` (temporary file written, not yet renamed), ``metrics`` (half a
line written). Unset, a point costs one dictionary lookup.
"""
from __future__ import annotations

import os
import signal
from typing import Dict

ENV_VAR = "REVGNN_DGL_KILL_AT"
_reached: Dict[str, int] = {}


def fault_point(name: str) -> None:
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
