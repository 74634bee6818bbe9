"""The one home of child processes (importable without torch or DGL): start, watch, end together.

Every process the package starts goes through :class:`Children`: the ranks of ``train --nproc``
(:func:`revgnn_dgl.train.distributed.spawn`), the DistDGL graph servers of ``--partitions``
(:func:`revgnn_dgl.train.distgraph.graph_servers`), the workers of ``tune --jobs`` and the fresh
processes of the benchmarks (:func:`revgnn_dgl.bench.profiling.run_in_subprocess`). A group is a
context manager: however the block is left (an error, Ctrl-C, SIGTERM), every child still
running is sent SIGTERM, and SIGKILL after the group's grace. A started function runs
:func:`run_child`, which ends it with its parent (:func:`revgnn_dgl.signals.end_with_parent`), so
a parent killed by SIGKILL, which runs no cleanup, leaves no orphans either.

>>> import sys
>>> with Children() as group:
...     child = group.start_command([sys.executable, "-c", "raise SystemExit(3)"])
...     failed = group.watch(poll_s=0.05)
>>> failed is child, exit_reason(child.exitcode)
(True, 'exit status 3')
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import time
from contextlib import contextmanager
from multiprocessing.connection import wait as wait_for_any
from types import TracebackType
from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence, Tuple, Type, Union

from .log import ROOT, rank
from .signals import end_with_parent, interrupt_exit_code, sigterm_as_interrupt

#: The exit statuses of a child stopped by Ctrl-C (SIGINT) or SIGTERM as an interrupt.
INTERRUPTED = (130, 143)

Handle = Union["multiprocessing.process.BaseProcess", "subprocess.Popen[bytes]"]


def exit_reason(code: int) -> str:
    """``exit status N``, or ``killed by signal NAME`` for a negative status.

    >>> exit_reason(-9), exit_reason(2)
    ('killed by signal SIGKILL', 'exit status 2')
    """
    if code >= 0:
        return f"exit status {code}"
    try:
        return f"killed by signal {signal.Signals(-code).name}"
    except ValueError:  # a real-time signal, say
        return f"killed by signal {-code}"


class Child:
    """One started process: a Python function in a fresh interpreter, or a command."""

    def __init__(self, handle: Handle, name: str) -> None:
        self.handle, self.name = handle, name

    @property
    def pid(self) -> int:
        return int(self.handle.pid or 0)

    @property
    def exitcode(self) -> Optional[int]:
        """Its exit status (negative: the signal that killed it), or None while it runs."""
        if isinstance(self.handle, subprocess.Popen):
            return self.handle.poll()
        return self.handle.exitcode

    @property
    def sentinel(self) -> Optional[int]:
        """What :func:`multiprocessing.connection.wait` waits on (a started function only)."""
        return None if isinstance(self.handle, subprocess.Popen) else self.handle.sentinel

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Wait for it up to ``timeout`` seconds (None: as long as it takes); its exit status, or None."""
        if isinstance(self.handle, subprocess.Popen):
            try:
                return self.handle.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
        self.handle.join(timeout)
        return self.handle.exitcode

    def terminate(self) -> None:
        if self.exitcode is None:
            self.handle.terminate()

    def kill(self) -> None:
        if self.exitcode is None:
            self.handle.kill()


class Children:
    """Processes started together, watched together, and ended together.

    Parameters
    ----------
    grace_s : float
        How long a child sent SIGTERM (on leaving the block, or by :meth:`end`) may take to end
        before it is killed.
    """

    def __init__(self, grace_s: float = 10.0) -> None:
        self.grace_s = grace_s
        self.children: List[Child] = []

    def __enter__(self) -> "Children":
        return self

    def __exit__(
        self, kind: Optional[Type[BaseException]], err: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.end()

    def __iter__(self) -> Any:
        return iter(self.children)

    # ------------------------------------------------------------------ starting
    def start_function(
        self,
        target: Callable[..., Any],
        args: Sequence[Any] = (),
        name: str = "",
        env: Optional[Mapping[str, str]] = None,
    ) -> Child:
        """Run ``target(*args)`` in a fresh interpreter (``spawn``: no state shared with this one).

        ``target`` must be importable and its arguments picklable; ``env`` is set in this process's
        environment while the child starts (what it inherits), then restored.
        """
        context = multiprocessing.get_context("spawn")
        process = context.Process(target=target, args=tuple(args), name=name or None)
        with environment(env or {}):
            process.start()
        child = Child(process, process.name)
        self.children.append(child)
        return child

    def start_command(self, argv: Sequence[str], name: str = "", **popen: Any) -> Child:
        """Run the command ``argv`` (``popen``: :class:`subprocess.Popen`'s options: env, streams, cwd...)."""
        process = subprocess.Popen(list(argv), **popen)
        child = Child(process, name or os.path.basename(str(argv[0])))
        self.children.append(child)
        return child

    # ------------------------------------------------------------------ watching
    def first_failure(self) -> Optional[Child]:
        """The first child (in start order) that has ended with a status other than 0."""
        return next((c for c in self.children if c.exitcode not in (None, 0)), None)

    def watch(self, poll_s: float = 0.2, tick: Optional[Callable[[], None]] = None) -> Optional[Child]:
        """Wait until every child has ended with status 0 (returns None), or one has not (returns it;
        the others still run: leaving the block, or :meth:`end`, stops them).

        ``tick`` runs after every wait of at most ``poll_s`` seconds (to read the children's pipes).
        SIGTERM raises :class:`~revgnn_dgl.signals.Terminated` meanwhile, as Ctrl-C does.
        """
        with sigterm_as_interrupt():
            while True:
                sentinels = [c.sentinel for c in self.children if c.exitcode is None]
                if sentinels and None not in sentinels:
                    wait_for_any([s for s in sentinels if s is not None], timeout=poll_s)
                elif sentinels:
                    time.sleep(poll_s)
                if tick is not None:
                    tick()
                failed = self.first_failure()
                if failed is not None or all(c.exitcode is not None for c in self.children):
                    return failed

    def interrupted(self) -> bool:
        """Whether a child was stopped by Ctrl-C or SIGTERM as an interrupt (status 130 or 143)."""
        return any(c.exitcode in INTERRUPTED for c in self.children)

    # ------------------------------------------------------------------ ending
    def end(self, wait_s: float = 0.0, grace_s: Optional[float] = None) -> None:
        """Every child ended: those still running after ``wait_s`` seconds are sent SIGTERM, and
        those still running ``grace_s`` (default: the group's) seconds later SIGKILL."""
        grace_s = self.grace_s if grace_s is None else grace_s
        deadline = time.monotonic() + wait_s
        for child in self.children:
            if child.exitcode is None and child.wait(max(0.0, deadline - time.monotonic())) is None:
                child.terminate()
        deadline = time.monotonic() + grace_s
        for child in self.children:
            if child.exitcode is None and child.wait(max(0.0, deadline - time.monotonic())) is None:
                child.kill()  # stuck where SIGTERM cannot reach Python
                child.wait()


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` inside the block; the old values come back after it."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def kill_started_functions() -> None:
    """Kill every started function of this process still running (a dead graph server's trainers,
    which would wait for it for ever)."""
    for process in multiprocessing.active_children():
        process.kill()


def run_child(
    parent: int, body: Callable[[], Any], on_error: Callable[[Exception], int], sigterm: bool = True
) -> Tuple[int, Any]:
    """The frame of a started process: ``(status, result)`` of ``body()``.

    The process ends with ``parent`` (:func:`~revgnn_dgl.signals.end_with_parent`); with
    ``sigterm``, SIGTERM stops ``body`` as Ctrl-C does. Ctrl-C gives 130, SIGTERM 143; an error,
    the status ``on_error(err)`` returns (after saying it, in one line); success, 0.
    """
    try:
        if sigterm:
            with sigterm_as_interrupt():
                end_with_parent(parent)
                return 0, body()
        end_with_parent(parent)
        return 0, body()
    except KeyboardInterrupt as err:
        return interrupt_exit_code(err), None
    except Exception as err:  # noqa: BLE001  (said by on_error, then the status)
        return on_error(err), None


class _ToParent(logging.Handler):
    """A child's messages (rank 0's, and those marked ``ALL_RANKS``) sent through a pipe to its parent,
    which prints them through its own handler (standard output, or what its command chose)."""

    def __init__(self, out: Any) -> None:
        super().__init__()
        self.out = out
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if rank() == 0 or getattr(record, "all_ranks", False):
            try:
                self.out.send(("log", rank(), self.format(record)))
            except (OSError, ValueError):  # the parent is gone: nobody to tell
                pass


def messages_to_parent(out: Any) -> None:
    """The package's messages in this child go to its parent as ``("log", rank, line)`` through the
    connection ``out``, not to the child's own standard output."""
    package = logging.getLogger(ROOT)
    for handler in list(package.handlers):
        package.removeHandler(handler)
    package.addHandler(_ToParent(out))
    package.setLevel(logging.INFO)
    package.propagate = False
