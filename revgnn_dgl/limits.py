"""Bounds on what a file or a value may ask for, checked before anything is built or allocated.

A checkpoint header, a training state, a config file or a command-line value can name any
size; the builders, torch and numpy would try to honour it (hours on the meta device, 100 GB
allocations, 100,000 OS threads). Every such size is checked here first, and refused with one
line that gives the figure. Importable without torch, DGL or numpy.

>>> check_count("num_layers", 1001, MAX_LAYERS)
1001
>>> format_bytes(3 * 2**30)
'3.0 GiB'
"""

from __future__ import annotations

import os
from typing import Optional, Type

from .errors import ConfigError, RevGNNError

#: Deepest model built: four times the paper's deepest (1001 layers), seconds on the meta device.
MAX_LAYERS = 4096
#: Widest hidden/input/output width: far above any dataset here; the memory check applies too.
MAX_WIDTH = 1 << 20
#: Groups of a grouped reversible block (each holds hidden / groups channels).
MAX_GROUPS = 1024
#: Layers of each block's MLP, and attention heads.
MAX_MLP_LAYERS = 64
MAX_HEADS = 64
#: Nodes of a generated graph.
MAX_NODES = 1 << 31
#: Seeded runs of one ``train --runs N`` (each trains in turn; a folder each).
MAX_RUNS = 1000
#: Processes a command may start per core (data-parallel ranks, graph servers, tuning workers).
PROCESSES_PER_CORE = 4
#: Memory one of those processes takes at least once torch and DGL are loaded, for the process bound.
PROCESS_BYTES = 256 << 20
#: Longest time limit of the collectives (``--dist-timeout``): a week.
MAX_DIST_TIMEOUT_S = 7 * 24 * 3600.0


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def memory_budget() -> int:
    """Bytes this process can hope to allocate: physical memory, or less under ``ulimit -v``."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        total = 1 << 40
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY and soft > 0:
            total = min(total, soft)
    except (ImportError, OSError, ValueError):
        pass
    return int(total)


def format_bytes(n: float) -> str:
    """``3.0 GiB``: a size for a message."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_count(
    name: str,
    value: object,
    maximum: int,
    *,
    minimum: int = 0,
    error: Type[RevGNNError] = ConfigError,
    where: str = "",
) -> int:
    """``value`` as an int in ``[minimum, maximum]``, else ``error`` naming ``name`` and the bound."""
    suffix = f" ({where})" if where else ""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be an integer, got {value!r:.60}{suffix}.")
    if value < minimum:
        raise error(f"{name} must be at least {minimum}, got {value}{suffix}.")
    if value > maximum:
        raise error(f"{name}={value} is more than the supported maximum of {maximum}{suffix}.")
    return value


def check_threads(threads: Optional[int], error: Type[RevGNNError] = ConfigError) -> Optional[int]:
    """``threads`` within ``[1, cpu_cores()]``: more threads than cores only slow torch down."""
    if threads is None:
        return None
    cores = cpu_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise error(f"threads must be an integer of at least 1, got {threads!r:.60}.")
    if threads > cores:
        raise error(
            f"threads={threads} is more than the {cores} CPU core(s) this process may use; give at most {cores}."
        )
    return threads


def check_memory(what: str, nbytes: float, *, error: Type[RevGNNError] = ConfigError, fraction: float = 1.0) -> None:
    """Refuse ``nbytes`` when it exceeds ``fraction`` of :func:`memory_budget`, giving both figures."""
    budget = memory_budget() * fraction
    if nbytes > budget:
        raise error(
            f"{what} needs about {format_bytes(nbytes)}, more than the {format_bytes(budget)} of memory this machine "
            "(or its ulimit) allows; choose smaller sizes."
        )


def max_processes() -> int:
    """The most processes a command may start here: :data:`PROCESSES_PER_CORE` per core, and no
    more than :func:`memory_budget` holds at :data:`PROCESS_BYTES` each."""
    return max(1, min(PROCESSES_PER_CORE * cpu_cores(), memory_budget() // PROCESS_BYTES))


def check_processes(what: str, count: int, *, error: Type[RevGNNError] = ConfigError) -> int:
    """Refuse ``count`` processes (asked for by ``what``, e.g. ``--nproc 300``) above :func:`max_processes`,
    before any starts, with the figures."""
    limit = max_processes()
    if count > limit:
        raise error(
            f"{what} would start {count} processes, more than the {limit} this machine allows ({cpu_cores()} core(s) "
            f"x {PROCESSES_PER_CORE}, {format_bytes(memory_budget())} of memory at {format_bytes(PROCESS_BYTES)} or "
            "more each); give fewer."
        )
    return count
