"""The one home of signal handling (importable without torch or DGL): Ctrl-C that never lands
inside an import, SIGTERM raised like Ctrl-C, processes that end with their parent.

A KeyboardInterrupt raised while a module is being imported leaves that module half
initialised, and some native imports swallow it: ``from torch._C import *`` on torch 2.2.1
clears the error, so an early Ctrl-C was ignored and the command ran to the end; elsewhere a
later import of the half-built package failed with an ``ImportError`` traceback. The command
line therefore installs :func:`interrupt_outside_imports` first thing: SIGINT raises
:class:`KeyboardInterrupt` at once where no import is running, and otherwise as soon as the
import in progress has finished.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Any, Iterator, NoReturn, Optional

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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same cleanup runs; exit status 143."""

    exit_code = 143


def interrupt_exit_code(err: BaseException) -> int:
    """The exit status of a command stopped by ``err``: 130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
    return getattr(err, "exit_code", 130)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt), as Ctrl-C would.

    Only in the main thread (signal handlers can be set nowhere else); the old handler is restored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def end_with_parent(parent: int) -> None:
    """Have the OS send this process SIGTERM when its parent ``parent`` dies (Linux; elsewhere nothing).

    For the processes a command starts (``train --nproc``'s ranks, the DistDGL graph servers,
    ``tune --jobs``'s workers): a parent killed by SIGKILL runs no cleanup, and they would run on
    as orphans. With :func:`sigterm_as_interrupt` around their work they then stop as on Ctrl-C.
    Raises :class:`Terminated` at once when the parent is already gone.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no libc to ask: the parent's own cleanup still ends us
            pass
    if os.getppid() != parent:  # it died before the request above
        raise Terminated()


def end_process(code: int) -> "NoReturn":
    """End this rank's process with status ``code`` now: streams flushed, no interpreter shutdown.

    A rank never destroys its gloo process group (see :meth:`Context.close`), and Python's own
    shutdown would: so a rank leaves through ``os._exit`` once its files are written and closed.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing more to say
            pass
    os._exit(code)
