"""Fresh-process runs: ``'module:function'`` in a new Python process, its JSON result and its peak RSS.

:func:`run_in_subprocess` never raises when the child crashes or runs out of memory, so that a
sweep can go on. The child is started, watched and ended by :class:`revgnn_dgl.processes.Children`.

Peak RSS is the kernel's ``VmHWM`` of the child's own address space (``/proc``, Linux). Not
``ru_maxrss``: Linux carries the high-water mark of the address space a process replaced
at ``exec`` over into it, and ``subprocess`` starts children by ``vfork``, so a child of a
parent that once held 1 GiB reports at least 1 GiB (``RUSAGE_CHILDREN`` is worse still: the
largest over all children ever). Without ``/proc`` the child falls back to ``ru_maxrss``.

Why ``MALLOC_MMAP_THRESHOLD_=65536``: by default glibc serves blocks of 128 KiB and more by
``mmap`` and returns them to the system on free, but each such free raises the threshold to
the freed size (up to 32 MiB). Afterwards blocks that size come from the heap, where freed
memory stays resident and fragments, so peak RSS grows with depth even when live memory is
flat. A fixed threshold turns the dynamic adjustment off: every block of 64 KiB or more is
mapped and unmapped on its own, and peak RSS follows peak live memory (plus the interpreter
and libraries). The price is more ``mmap``/``munmap`` calls and page faults. Past about
65,000 live mapped blocks (glibc's ``M_MMAP_MAX`` and the kernel's ``vm.max_map_count``)
allocations fall back to the heap.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ..processes import Child, Children

__all__ = ["DEFAULT_MMAP_THRESHOLD", "run_in_subprocess"]

#: Bytes; glibc serves every block at least this large by its own ``mmap`` (see the module's text).
DEFAULT_MMAP_THRESHOLD = 65536

# The child's bootstrap. Standalone (stdlib only) so that the child imports nothing the target
# does not need, and its peak RSS is the target's plus the interpreter's.
_CHILD = r"""
import importlib, json, os, resource, sys, time, traceback
spec_path, out_path = sys.argv[1], sys.argv[2]
with open(spec_path) as f:
    spec = json.load(f)
sys.path[:0] = [p for p in spec["sys_path"] if p not in sys.path]
mem_words = ("out of memory", "can't allocate memory", "cannot allocate memory")

def rss():
    # VmHWM is this process's own peak; ru_maxrss would start from the parent's (see the docs).
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # Linux reports KiB

def to_json(o):
    if hasattr(o, "tolist"):  # numpy arrays and scalars, torch tensors
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON-serializable")

out = {"status": "error"}
try:
    module_name, _, attr = spec["target"].partition(":")
    fn = importlib.import_module(module_name)
    for part in attr.split("."):
        fn = getattr(fn, part)
    out["max_rss_before_call_bytes"] = rss()
    t0 = time.perf_counter()
    result = fn(*spec["args"], **spec["kwargs"])
    out["call_s"] = time.perf_counter() - t0
    out["max_rss_bytes"] = rss()
    try:
        text = json.dumps(dict(out, status="ok", result=result), default=to_json)
    except (TypeError, ValueError) as e:
        raise TypeError(f"the result of {spec['target']} is not JSON-serializable: {e}") from None
except BaseException as e:
    oom = isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or any(
        w in str(e).lower() for w in mem_words)
    msg = f"{type(e).__name__}: {e}"
    out.update(status="oom" if oom else "error", message=msg, max_rss_bytes=rss(),
               traceback="".join(traceback.format_exception(type(e), e, e.__traceback__)))
    text = json.dumps(out, default=str)
with open(out_path + ".part", "w") as f:
    f.write(text)
os.replace(out_path + ".part", out_path)
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)  # skip interpreter teardown: slow with torch loaded, and it could crash after the fact
"""


def run_in_subprocess(
    target: str,
    kwargs: Optional[Mapping[str, Any]] = None,
    env: Optional[Mapping[str, str]] = None,
    timeout: Optional[float] = None,
    *,
    args: Sequence[Any] = (),
    mmap_threshold: Optional[int] = DEFAULT_MMAP_THRESHOLD,
    python: Optional[str] = None,
    cwd: Optional[str] = None,
) -> Dict[str, Any]:
    """Run ``module:function`` in a fresh Python process and report its result and peak RSS.

    Parameters
    ----------
    target : str
        ``'package.module:function'`` (a dotted attribute path after the colon also works); the
        child gets the parent's ``sys.path``, so anything the parent can import, it can.
    kwargs, args
        Keyword and positional arguments; JSON-serializable.
    env : mapping, optional
        Variables set in the child, over the parent's environment (and ``MALLOC_MMAP_THRESHOLD_``).
    timeout : float, optional
        Seconds after which the child is killed and ``status`` is ``'timeout'``.
    mmap_threshold : int or None, default 65536
        glibc's ``MALLOC_MMAP_THRESHOLD_`` in the child (module text); None leaves glibc's default.
    python, cwd : str, optional
        Interpreter (default ``sys.executable``) and working directory of the child.

    Returns
    -------
    dict
        ``status``: ``'ok'``, ``'error'`` (an exception or a crash), ``'oom'`` (MemoryError, a
        torch "out of memory" / "can't allocate memory" error, or death by SIGKILL, which is how
        the kernel's OOM killer ends a process) or ``'timeout'``; ``result``: the function's
        return value, when ok; ``message`` and ``traceback``: what went wrong, otherwise;
        ``max_rss_bytes``: the child's peak resident set size, read by the child itself after
        the call (``max_rss_exact`` True) or, for a child that died first, the parent's last
        sample (False; None if there was none); ``max_rss_before_call_bytes``: the peak just
        before the call (interpreter plus imports); ``returncode``, ``wall_s`` (process
        lifetime), ``call_s`` (the call alone) and ``stderr_tail`` (the last 4000 characters;
        the child's stdout is discarded). Keys that do not apply are None.

    Raises
    ------
    ValueError
        If ``target`` has no ``':'``.
    TypeError
        If the arguments are not JSON-serializable.

    Notes: how peak RSS is read, and why ``MALLOC_MMAP_THRESHOLD_``: see the module's text.
    """
    if ":" not in target:
        raise ValueError(f"target must look like 'package.module:function', got {target!r}")
    spec = {
        "target": target,
        "args": list(args),
        "kwargs": dict(kwargs or {}),
        "sys_path": [p for p in sys.path if p],  # '' would mean the child's cwd, not ours
    }
    spec_text = json.dumps(spec)  # raises TypeError for arguments that cannot be sent
    child_env = dict(os.environ)
    if mmap_threshold is not None:
        child_env["MALLOC_MMAP_THRESHOLD_"] = str(int(mmap_threshold))
    child_env.update(env or {})

    code, timed_out, sampled_rss, wall, stderr_tail, report = _run(
        [python or sys.executable, "-c", _CHILD], spec_text, child_env, cwd, timeout
    )
    if not report or report.get("status") not in ("ok", "error", "oom"):
        report = _no_result(code, timed_out, timeout, stderr_tail)
    # The child's own reading is exact; a child that died before reporting has only the
    # parent's last sample, which can miss the final moments (an OOM kill's, say).
    report["max_rss_exact"] = report.get("max_rss_bytes") is not None
    if not report["max_rss_exact"]:
        report["max_rss_bytes"] = sampled_rss
    report.update(returncode=code, wall_s=wall, stderr_tail=stderr_tail)
    for key in ("result", "message", "traceback", "call_s", "max_rss_before_call_bytes"):
        report.setdefault(key, None)  # the same keys whatever happened, for tabulating sweeps
    return report


def _run(
    argv: Sequence[str], spec_text: str, env: Mapping[str, str], cwd: Optional[str], timeout: Optional[float]
) -> Tuple[int, bool, Optional[int], float, str, Dict[str, Any]]:
    """Run the child's bootstrap ``argv`` on ``spec_text``: its exit status, whether it timed out, the
    sampled peak RSS, its lifetime, the tail of its stderr and the report it wrote ({} if none)."""
    with tempfile.TemporaryDirectory(prefix="revgnn_profiling_") as tmp:
        spec_path = os.path.join(tmp, "spec.json")
        out_path = os.path.join(tmp, "result.json")
        with open(spec_path, "w") as f:
            f.write(spec_text)
        # Output goes to files, not pipes: a chatty child cannot block on a full pipe.
        with open(os.path.join(tmp, "stdout"), "wb") as fout, open(os.path.join(tmp, "stderr"), "w+b") as ferr:
            t0 = time.perf_counter()
            with Children(grace_s=0.0) as group:  # Ctrl-C: the child does not run on
                child = group.start_command(
                    [*argv, spec_path, out_path], stdin=subprocess.DEVNULL, stdout=fout, stderr=ferr, env=env, cwd=cwd
                )
                timed_out, sampled_rss = _wait(child, timeout)
            wall = time.perf_counter() - t0
            ferr.seek(0, os.SEEK_END)
            ferr.seek(max(0, ferr.tell() - 4000))
            stderr_tail = ferr.read().decode(errors="replace")
        report: Dict[str, Any] = {}
        if os.path.exists(out_path):
            with open(out_path) as f:
                report = json.load(f)
    return int(child.exitcode or 0), timed_out, sampled_rss, wall, stderr_tail, report


def _no_result(code: int, timed_out: bool, timeout: Optional[float], stderr_tail: str) -> Dict[str, Any]:
    """The report of a child that wrote no result: timed out, killed, or ended without one."""
    report: Dict[str, Any] = {"status": "error"}
    if timed_out:
        report.update(status="timeout", message=f"killed after the {timeout} s timeout")
    elif code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:  # a real-time signal, say
            name = f"signal {-code}"
        if -code == signal.SIGKILL:
            report.update(status="oom", message="killed by SIGKILL, most likely by the kernel's out-of-memory killer")
        else:
            report["message"] = f"crashed: killed by signal {name}"
    else:
        report["message"] = f"exited with code {code} without a result"
    if stderr_tail.strip():
        report["message"] += "; stderr ends with: " + stderr_tail.strip()[-500:]
    return report


def _read_hwm(pid: int) -> Optional[int]:
    """Peak resident set size (``VmHWM``) of a live process in bytes, or None if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None  # gone, a zombie (no memory map left), or no /proc


def _wait(child: Child, timeout: Optional[float]) -> Tuple[bool, Optional[int]]:
    """Wait for ``child``, killing it after ``timeout`` s; sample its peak RSS meanwhile.

    Returns whether it timed out and the last ``VmHWM`` read, a fallback for a child that dies
    before reporting its own (up to one polling interval, 50 ms, of growth may be missed).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.002
    sampled: Optional[int] = None
    while True:
        hwm = _read_hwm(child.pid)
        sampled = hwm if hwm is not None else sampled
        wait = delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic()))
        if child.wait(wait) is not None:
            return False, sampled
        if deadline is not None and time.monotonic() >= deadline:
            child.kill()
            child.wait()
            return True, sampled
        delay = min(delay * 2, 0.05)
