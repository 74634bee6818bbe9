"""Peak memory of DistDGL trainers and servers against one process holding the whole graph (issue 25).

Generates a synthetic-proteins graph (``--nodes`` x ``--degree``: 125,000 x 16 is about 2M
edges), then trains the same model with the same part size twice through the CLI, one epoch
each, in fresh processes:

* ``one process``: ``revgnn-dgl train --dataset synthetic-proteins ...`` (the process holds the graph);
* ``DistDGL``: ``revgnn-dgl partition`` (one partition: DGL 2.1 serves one per machine), then
  ``revgnn-dgl train --partitions ... --nproc 2 --servers 1``: a graph server holds the graph,
  two trainers fetch their parts.

Every process of each command is sampled every 50 ms from ``/proc/PID/status``: the kernel's
peak resident set (``VmHWM``), and the peak of the memory the process does not share
(``RssAnon``: its own heap, not the shared-memory pages of the server's graph, which a trainer on
the server's machine maps to read its parts; ``RssShmem`` is reported beside it). Writes
``benchmarks/results/distgraph_memory.json`` and prints a Markdown table.

    python benchmarks/distgraph_memory.py [--nodes 125000] [--degree 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
MODEL = ["--model", "wide", "--num-layers", "4", "--hidden", "32", "--epochs", "1", "--train-parts", "10",
         "--eval-parts", "10", "--threads", "1", "--device", "cpu"]  # fmt: skip


def _status(pid: int) -> Dict[str, int]:
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssShmem", "RssFile"):
                values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return values


def _descendants(root: int) -> List[int]:
    children: Dict[int, List[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _role(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return "?"
    if "revgnn_dgl.train.distgraph" in cmd:
        return "server"
    if b"DGL_ROLE=client" in environ and "multiprocessing" in cmd:
        return "trainer"
    if "multiprocessing" in cmd:
        return "helper"
    return "command"


def measure(command: List[str]) -> Dict[str, object]:
    """Run ``command``; every process's peaks, by role."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    tic = time.monotonic()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks: Dict[int, Dict[str, object]] = {}
    while proc.poll() is None:
        for pid in _descendants(proc.pid):
            now = _status(pid)
            if not now:
                continue
            seen = peaks.setdefault(pid, {"role": _role(pid), "VmHWM": 0, "RssAnon": 0, "RssShmem": 0})
            if seen["role"] in ("?", "helper", "command") and pid != proc.pid:  # a child seen before its exec
                seen["role"] = _role(pid)
            for key in ("VmHWM", "RssAnon", "RssShmem"):
                seen[key] = max(int(seen[key]), now.get(key, 0))
        time.sleep(0.05)
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}): {stderr[-1500:]}")
    # Python's helper processes (multiprocessing's resource tracker) hold no graph: left out.
    rows = sorted(({"pid": pid, **info} for pid, info in peaks.items()
                   if info["role"] != "helper" and int(info["VmHWM"]) > 64 * 2**20),
                  key=lambda r: (str(r["role"]), int(r["pid"])))  # fmt: skip
    return {"command": " ".join(command), "seconds": time.monotonic() - tic, "processes": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=125_000)
    parser.add_argument("--degree", type=float, default=16.0)
    parser.add_argument("--out", default=str(HERE / "results" / "distgraph_memory.json"))
    args = parser.parse_args()
    data = ["--dataset-option", f"num_nodes={args.nodes}", "--dataset-option", f"avg_degree={args.degree}"]
    cli = [sys.executable, "-m", "revgnn_dgl"]
    load = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="revgnn-distmem-") as tmp:
        parts = Path(tmp) / "parts"
        subprocess.run([*cli, "partition", "synthetic-proteins", *data, "--parts", "1", "--method", "random",
                        "--out", str(parts)], check=True, stdout=subprocess.PIPE, text=True)  # fmt: skip
        meta = json.loads((parts / "revgnn_dgl.json").read_text())
        config = parts / f"{meta['graph_name']}.json"
        single = measure([*cli, "train", "--dataset", "synthetic-proteins", *data, *MODEL, "--out", f"{tmp}/one"])
        distributed = measure([*cli, "train", "--partitions", str(config), *MODEL, "--nproc", "2", "--servers", "1",
                               "--out", f"{tmp}/dist"])  # fmt: skip
    one = max(int(r["VmHWM"]) for r in single["processes"])
    one_anon = max(int(r["RssAnon"]) for r in single["processes"])
    trainers = [r for r in distributed["processes"] if r["role"] == "trainer"]
    result = {
        "graph": {"nodes": meta["num_nodes"], "edges": meta["num_edges"]}, "model": " ".join(MODEL),
        "one_process": single, "distdgl": distributed, "load_before": load,
        "load_after": Path("/proc/loadavg").read_text().split()[:3], "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "ratios": {
            "trainer_peak_rss_over_one_process": [int(t["VmHWM"]) / one for t in trainers],
            "trainer_private_over_one_process_private": [int(t["RssAnon"]) / one_anon for t in trainers],
        },
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    mib = 2**20
    print(f"graph: {meta['num_nodes']:,} nodes, {meta['num_edges']:,} edges; load {' '.join(load)}")
    print(
        "| run | process | peak RSS (MiB) | peak private RSS (MiB) | peak shared-memory RSS (MiB) | vs one process (RSS / private) |"
    )
    print("|---|---|---|---|---|---|")
    for name, run in (("one process", single), ("DistDGL, 2 trainers + 1 server", distributed)):
        for r in run["processes"]:
            print(
                f"| {name} | {r['role']} | {int(r['VmHWM']) / mib:.0f} | {int(r['RssAnon']) / mib:.0f} | "
                f"{int(r['RssShmem']) / mib:.0f} | {int(r['VmHWM']) / one:.2f} / {int(r['RssAnon']) / one_anon:.2f} |"
            )


if __name__ == "__main__":
    main()
