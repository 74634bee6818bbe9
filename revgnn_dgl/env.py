"""The environment a measurement or a training run happened in (versions, hardware, settings),
and the default thread count. Importable without torch (it is imported by :func:`environment`)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:
    import torch

__all__ = ["environment", "cpu_model", "git_commit", "CHILD_ENV", "load_average", "pick_threads", "thread_note"]

#: Environment of the benchmark's child processes. ``OMP_WAIT_POLICY=PASSIVE``: with cores shared
#: by other jobs, OpenMP's default busy-waiting made a 2-thread step of a small graph 28 times
#: slower than 1 thread on the 2-core machine of ``benchmarks/results`` (each parallel region
#: waits for a thread whose core another process holds); passive waiting removes that.
CHILD_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KINETO_LOG_LEVEL": "5", "OUTDATED_IGNORE": "1"}


def load_average() -> float:
    """The 1-minute load average (runnable processes), 0 where the system does not say."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def pick_threads(cores: int, load: float, processes: int = 1) -> int:
    """The default torch CPU threads of each of ``processes`` processes: the cores nobody else uses.

    ``load`` is the 1-minute load average before the run starts (the other jobs). Threads
    beyond the free cores spin against those jobs: on this project's 2-core machine, with one
    other CPU-bound job, torch's own choice (2 threads) ran 20-50x slower than 1 thread.

    >>> pick_threads(cores=8, load=0.1), pick_threads(cores=8, load=3.2), pick_threads(cores=2, load=1.0)
    (8, 5, 1)
    >>> pick_threads(cores=2, load=5.0), pick_threads(cores=16, load=0.0, processes=4)
    (1, 4)
    """
    free = max(1, min(cores, int(cores - load + 0.5)))
    return max(1, free // max(1, processes))


def thread_note(threads: int, processes: int, cores: int, load: float) -> Optional[str]:
    """A one-line note when ``threads`` x ``processes`` plus the load exceed the cores, else None."""
    if load + threads * processes <= cores + 0.5:
        return None
    advice = " (--threads 1 is steadiest on a busy machine)" if threads > 1 else ""
    return (
        f"note: the machine looks oversubscribed: {processes} process(es) x {threads} thread(s) on {cores} cores "
        f"with a load of {load:.1f} from other jobs; epochs will be slower{advice}."
    )


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else :func:`platform.processor`."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> Optional[str]:
    """Commit of the checkout this package was imported from, or None outside a git tree."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def environment(device: Optional["torch.device"] = None) -> Dict[str, Any]:
    """Versions, hardware and settings that decide a measurement.

    Parameters
    ----------
    device : torch.device, optional
        The device measured; its name is added for CUDA.

    Returns
    -------
    dict
        ``torch``, ``dgl``, ``torch_geometric`` (None if absent), ``python``, ``device``,
        ``device_name``, ``threads`` (torch intra-op threads), ``interop_threads``,
        ``cpu_model``, ``cpu_count``, ``mmap_threshold`` (glibc's ``MALLOC_MMAP_THRESHOLD_`` as
        set in this process, None for glibc's dynamic default), ``load_avg_1m`` (the machine's
        load when the row was made: timings are noisy on a shared machine), ``git_commit`` and
        ``timestamp`` (UTC).
    """
    import dgl

    try:
        import torch_geometric

        pyg: Optional[str] = torch_geometric.__version__
    except Exception:  # absent, or broken against this torch
        pyg = None
    import torch  # here: the rest of this module (threads, CPU model) is read before torch loads

    device = torch.device(device or "cpu")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = cpu_model()
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {
        "torch": torch.__version__,
        "dgl": dgl.__version__,
        "torch_geometric": pyg,
        "python": platform.python_version(),
        "device": device.type,
        "device_name": name,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_avg_1m": load,
        "git_commit": git_commit(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
