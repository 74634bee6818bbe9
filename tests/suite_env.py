"""What the environment owes the test suite, and what a test does when something is missing.

One rule for everything a test needs from outside the repository (the shared datasets, an
optional package, a build tool): where it must be there -- in CI (``CI`` set to a non-empty
value), or for the data also when ``REVGNN_DGL_DATA`` is set explicitly -- its absence
**fails** the test, naming what is missing; on a user's checkout the test skips with that
reason. A skip never stands in for a failure: a loader or tool that is present but broken is
an error in both places.
"""

from __future__ import annotations

import os
import subprocess  # noqa: F401  (the type of interrupt_group_when's process)
from pathlib import Path
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ENV_VAR = "REVGNN_DGL_DATA"  # the variable revgnn_dgl.data.paths.DATA_ENV_VAR names

#: The smallest real run of `revgnn-dgl train` (a 2-layer Wide model on 200 generated nodes):
#: the command-line options the run-folder tests share, without --epochs and --out.
TINY_TRAIN_ARGS = ["--model", "wide", "--num-layers", "2", "--hidden", "8", "--train-parts", "2",
                   "--eval-parts", "1", "--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=200",
                   "--device", "cpu", "--threads", "1"]  # fmt: skip


def in_ci() -> str:
    """``'CI=...'`` when the ``CI`` variable is set to a non-empty value, else ``''``."""
    value = os.environ.get("CI")
    return f"CI={value!r} is set" if value else ""


def data_required() -> str:
    """Why missing data must fail here (``''`` on a user's checkout, where it skips)."""
    if in_ci():
        return in_ci()
    if os.environ.get(DATA_ENV_VAR):
        return f"{DATA_ENV_VAR} is set explicitly"
    return ""


def shared_data_root() -> Path:
    """``$REVGNN_DGL_DATA`` when set, else ``../shared/data`` next to the repository: the rule of
    ``revgnn_dgl.data.paths.default_data_root``, for the checkout this file is in."""
    explicit = os.environ.get(DATA_ENV_VAR)
    return Path(explicit).expanduser() if explicit else REPO_ROOT.parent / "shared" / "data"


def missing_data(path: Path, what: str = "the real datasets folder") -> NoReturn:
    """Fail (CI, or ``REVGNN_DGL_DATA`` set) or skip (a user's checkout) for a missing folder."""
    why = data_required()
    if why:
        pytest.fail(
            f"{what} not found at {path}, and {why}: the data must be there. "
            f"Point {DATA_ENV_VAR} at the shared data folder (see its README.md).",
            pytrace=False,
        )
    pytest.skip(f"{what} not found at {path} (a user's checkout); set {DATA_ENV_VAR} to the shared data folder to run")


def missing_requirement(what: str, fix: str) -> NoReturn:
    """Fail in CI, skip elsewhere, for something the test needs that is not installed."""
    why = in_ci()
    if why:
        pytest.fail(f"{what}, and {why}: CI must provide it ({fix}).", pytrace=False)
    pytest.skip(f"{what} ({fix})")


def interrupt_group_when(proc: "subprocess.Popen[str]", path: Path, *, within_s: float, wait_s: float) -> str:
    """SIGINT to ``proc``'s process group (as a terminal's Ctrl-C) once ``path`` exists; its stderr.

    ``proc`` must have been started with ``start_new_session=True``; whatever happens, nothing of
    the group outlives the call (SIGKILL after ``wait_s``)."""
    import signal
    import time

    deadline = time.monotonic() + within_s
    try:
        while not path.exists():
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, f"{path} never appeared"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        return proc.communicate(timeout=wait_s)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
