"""The package's messages: one :mod:`logging` logger per module, below the ``revgnn_dgl`` logger.

Library code writes ``log = get_logger(__name__)`` at module level and calls ``log.info(...)``;
no function takes an ``echo`` callable. Messages go to standard output as plain lines, the
way ``print`` would, through one handler on the ``revgnn_dgl`` logger, installed by the first :func:`get_logger`
(unless that logger has handlers already; not at the package's import, which stays free of
:mod:`logging` and its threads so that the console script's Ctrl-C rule is in place first). An application that routes the
messages through its own logging removes it: ``logging.getLogger("revgnn_dgl").handlers.clear()``
and ``.propagate = True``.

In a multi-process run only rank 0 speaks (:func:`set_rank`); a record logged with
``extra=ALL_RANKS`` is printed by every rank.

>>> from revgnn_dgl.log import get_logger
>>> get_logger("revgnn_dgl.example").info("one line, as print would write it")
one line, as print would write it
"""

from __future__ import annotations

import logging
import sys
from typing import Dict, Optional, TextIO

ROOT = "revgnn_dgl"

#: ``log.info(..., extra=ALL_RANKS)``: printed by every rank, not only rank 0.
ALL_RANKS: Dict[str, bool] = {"all_ranks": True}

_rank = 0
_defaulted = False


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` (``__name__``); below :data:`ROOT` for the package's modules."""
    install_default_handler()
    return logging.getLogger(name)


def set_rank(rank: int) -> None:
    """Only records of rank 0 pass the package's handler from now on (the others, unless marked :data:`ALL_RANKS`)."""
    global _rank
    _rank = int(rank)


def rank() -> int:
    """The rank set by :func:`set_rank` (0 in a single-process run)."""
    return _rank


class _RankZeroFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _rank == 0 or bool(getattr(record, "all_ranks", False))


class _CurrentStdout(logging.StreamHandler):
    """Writes to ``sys.stdout`` as it is at each record (pytest's capture, a redirected stdout)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.addFilter(_RankZeroFilter())

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: Optional[TextIO]) -> None:  # StreamHandler.__init__ assigns it
        pass


def install_handler(level: int = logging.INFO) -> logging.Handler:
    """Give the ``revgnn_dgl`` logger its one plain-line handler (idempotent); returns it."""
    logger = logging.getLogger(ROOT)
    for handler in logger.handlers:
        if isinstance(handler, _CurrentStdout):
            break
    else:
        handler = _CurrentStdout()
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler


def install_default_handler() -> None:
    """The plain-line handler, unless the ``revgnn_dgl`` logger has handlers already (or had them once)."""
    global _defaulted
    if _defaulted:
        return
    _defaulted = True
    if not logging.getLogger(ROOT).handlers:
        install_handler()
