"""DistDGL over two emulated machines: peak memory per trainer and per machine, and the bytes between them (issue 36).

Generates a synthetic-proteins graph (``--nodes`` x ``--degree``: 125,000 x 16 is about 2M
edges), cuts it into 2 METIS partitions (``revgnn-dgl partition --parts 2 --method metis``),
and trains the same model with the same part size (``distgraph_memory.py``'s: RevGNN-Wide's
blocks at 4 x 32, 10 parts) twice:

* ``one process``: ``revgnn-dgl train --dataset synthetic-proteins ...`` (it holds the graph);
* ``2 machines``: the per-machine command ``revgnn-dgl train --partitions ... --ip-config ...
  --nproc 2 --servers 1`` on each of two emulated machines (``tests/hosts.py``: a network
  namespace each, own address and /dev/shm): per machine one graph server and one trainer.

Every process on each machine is sampled every 100 ms from ``/proc/PID/status`` (``VmHWM``,
``RssAnon``, ``RssShmem``); a machine's total is the peak over time of the sum of its processes'
proportional set sizes (``Pss`` of ``/proc/PID/smaps_rollup``: pages shared by several
processes, the libraries and the server's shared memory that the trainer maps, counted once
in all). The bytes each machine's interface sent are read when rank 0
writes each epoch's metrics line, so an epoch's traffic (training and evaluation) is the
difference between two lines. Needs root. Writes ``benchmarks/results/distgraph_hosts.json``.

    python benchmarks/distgraph_hosts.py [--nodes 125000] [--degree 16] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from distgraph_memory import MODEL, _role, _status, measure  # noqa: E402
from hosts import EmulatedHosts, unavailable  # noqa: E402


def _pss(pid: int) -> int:
    """The process's proportional set size: its private pages, plus each shared page divided by its sharers."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=125_000)
    parser.add_argument("--degree", type=float, default=16.0)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the 2-machine run (traffic: between lines)")
    parser.add_argument("--skip-one-process", action="store_true", help="only the 2-machine run")
    parser.add_argument(
        "--train-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more argument of the 2-machine run's train (repeatable), e.g. --train-arg=--eval-every",
    )
    parser.add_argument("--out", default=str(HERE / "results" / "distgraph_hosts.json"))
    args = parser.parse_args()
    why = unavailable()
    if why:
        print(f"Error: {why}", file=sys.stderr)
        return 1
    data = ["--dataset-option", f"num_nodes={args.nodes}", "--dataset-option", f"avg_degree={args.degree}"]
    cli = [sys.executable, "-m", "revgnn_dgl"]
    model = [a if a != "1" or MODEL[i - 1] != "--epochs" else str(args.epochs) for i, a in enumerate(MODEL)]
    model += args.train_arg
    load = Path("/proc/loadavg").read_text().split()[:3]
    result: Dict[str, object] = {"load_before": load, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="revgnn-disthosts-") as tmp:
        parts = Path(tmp) / "parts"
        cut = subprocess.run([*cli, "partition", "synthetic-proteins", *data, "--parts", "2", "--method", "metis",
                              "--out", str(parts)], check=True, stdout=subprocess.PIPE, text=True).stdout  # fmt: skip
        print(cut.strip().splitlines()[-1], flush=True)
        meta = json.loads((parts / "revgnn_dgl.json").read_text())
        config = parts / f"{meta['graph_name']}.json"
        result["graph"] = {
            "nodes": meta["num_nodes"],
            "edges": meta["num_edges"],
            "partition": cut.strip().splitlines()[-1],
        }
        if not args.skip_one_process:
            result["one_process"] = measure([*cli, "train", "--dataset", "synthetic-proteins", *data, *MODEL,
                                             "--out", f"{tmp}/one"])  # fmt: skip
            print(f"one process: {result['one_process']['seconds']:.0f} s", flush=True)
        with EmulatedHosts(2, tag="mem") as hosts:
            ip_config = Path(tmp) / "ip_config.txt"
            ip_config.write_text("".join(f"{h.address} 30050\n" for h in hosts))
            out = Path(tmp) / "h0" / "run"
            procs = [h.popen([*cli, "train", "--partitions", str(config), "--ip-config", str(ip_config), *model,
                              "--nproc", "2", "--servers", "1", "--dist-timeout", "600",
                              "--out", str(Path(tmp) / h.name / "run")],
                             env={"OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for h in hosts]  # fmt: skip
            peaks: List[Dict[int, Dict[str, object]]] = [{}, {}]
            totals = [0, 0]
            counters = [[h.counters() for h in hosts]]
            lines = 0
            tic = time.monotonic()
            while any(p.poll() is None for p in procs):
                for k, host in enumerate(hosts):
                    pss = 0
                    for pid in host.pids():
                        now = _status(pid)
                        if not now:
                            continue
                        seen = peaks[k].setdefault(pid, {"role": _role(pid), "VmHWM": 0, "RssAnon": 0, "RssShmem": 0})
                        if seen["role"] in ("?", "helper", "command"):
                            seen["role"] = _role(pid)
                        for key in ("VmHWM", "RssAnon", "RssShmem"):
                            seen[key] = max(int(seen[key]), now.get(key, 0))
                        pss += _pss(pid)
                    totals[k] = max(totals[k], pss)
                metrics = out / "metrics.jsonl"
                done = len(metrics.read_text().splitlines()) if metrics.is_file() else 0
                if done > lines:
                    lines = done
                    counters.append([h.counters() for h in hosts])
                time.sleep(0.1)
            errors = [p.stderr.read()[-1500:] for p in procs]
            if any(p.returncode for p in procs):
                print(f"Error: the 2-machine run failed: {errors}", file=sys.stderr)
                return 1
            seconds = time.monotonic() - tic
    mib = 2**20
    machines = []
    for k in range(2):
        rows = sorted(({"pid": pid, **info} for pid, info in peaks[k].items()
                       if info["role"] != "helper" and int(info["VmHWM"]) > 64 * mib), key=lambda r: str(r["role"]))  # fmt: skip
        machines.append({"machine": k, "processes": rows, "peak_total": totals[k]})
    epochs = [[c1[k]["tx_bytes"] - c0[k]["tx_bytes"] for k in range(2)] for c0, c1 in zip(counters, counters[1:])]
    result.update(
        machines=machines,
        seconds=seconds,
        sent_bytes_until_each_epoch_line=epochs,
        load_after=Path("/proc/loadavg").read_text().split()[:3],
        model=" ".join(model),
    )
    one = max(int(r["VmHWM"]) for r in result["one_process"]["processes"]) if "one_process" in result else None
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"graph: {meta['num_nodes']:,} nodes, {meta['num_edges']:,} edges; load {' '.join(load)} -> {' '.join(result['load_after'])}"
    )
    print("| machine | process | peak RSS (MiB) | peak private (MiB) | peak shared (MiB) | RSS vs one process |")
    print("|---|---|---|---|---|---|")
    if one:
        print(f"| - | one process | {one / mib:.0f} | | | 1 |")
    for m in machines:
        for r in m["processes"]:
            ratio = f"{int(r['VmHWM']) / one:.2f}" if one else ""
            print(
                f"| h{m['machine']} | {r['role']} | {int(r['VmHWM']) / mib:.0f} | {int(r['RssAnon']) / mib:.0f} | "
                f"{int(r['RssShmem']) / mib:.0f} | {ratio} |"
            )
        ratio = f"{m['peak_total'] / one:.2f}" if one else ""
        print(
            f"| h{m['machine']} | machine total (peak of the sum of PSS) | {m['peak_total'] / mib:.0f} | | | {ratio} |"
        )
    for i, sent in enumerate(epochs):
        what = "start-up and epoch 1" if i == 0 else f"epoch {i + 1}"
        print(f"bytes sent ({what}): h0 {sent[0]:,}, h1 {sent[1]:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
