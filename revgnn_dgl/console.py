"""The ``revgnn-dgl`` console script: installs the interrupt rule, then runs the click CLI.

Kept apart from :mod:`revgnn_dgl.cli` so that a Ctrl-C while the CLI's own modules import is
handled like any other: one line, exit status 130.
"""

from __future__ import annotations

import sys

from .signals import interrupt_outside_imports, raise_pending_interrupt


def main() -> None:
    """Console-script entry point (``revgnn-dgl``)."""
    interrupt_outside_imports()
    try:
        from .cli import main as cli_main

        raise_pending_interrupt()
    except KeyboardInterrupt:
        sys.stderr.write("\nInterrupted.\n")
        sys.exit(130)
    cli_main()
