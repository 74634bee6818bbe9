"""Ctrl-C that never lands inside an import (importable without torch or DGL).

A KeyboardInterrupt raised while a module is being imported leaves that module half
initialised, and some native imports swallow it: ``from torch._C import *`` on torch 2.2.1
clears the error, so an early Ctrl-C was ignored and the command ran to the end; elsewhere a
later import of the half-built package failed with an ``ImportError`` traceback. The command
line therefore installs :func:`interrupt_outside_imports` first thing: SIGINT raises
:class:`KeyboardInterrupt` at once where no import is running, and otherwise as soon as the
import in progress has finished.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Optional

#: How often a deferred interrupt looks again whether the import has finished (seconds).
RETRY_S = 0.02

_pending = False


def _inside_import(frame: Optional[FrameType]) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _raise_when_outside_imports(signum: int, frame: Optional[FrameType]) -> None:
    global _pending
    if signum == signal.SIGINT:
        _pending = True
    if not _pending:
        return  # an alarm of somebody else's, after the interrupt was raised
    if _inside_import(frame):
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)  # look again in a moment
        return
    _pending = False
    raise KeyboardInterrupt


def interrupt_outside_imports() -> None:
    """Have SIGINT raise KeyboardInterrupt only outside imports (deferred while one runs).

    Installed by the ``revgnn-dgl`` entry point in the main thread; elsewhere it does nothing.
    Uses SIGALRM to come back to a deferred interrupt; nothing else in the package uses it.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        return
    signal.signal(signal.SIGINT, _raise_when_outside_imports)
    signal.signal(signal.SIGALRM, _raise_when_outside_imports)


def raise_pending_interrupt() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C that arrived during an import that has now finished."""
    global _pending
    if _pending:
        _pending = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        raise KeyboardInterrupt
