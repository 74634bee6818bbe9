"""The experiments in ``benchmarks/`` are scripts, not a package: their modules (``suites``,
``alternatives_variants``, ``scaling``, ``depth_diagnostics``) import one another by name, as
the scripts do when run from the repository root (a script's folder is on ``sys.path``). The
tests here import them the same way, and so do the fresh processes they start (which get the
parent's ``sys.path``)."""
from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
