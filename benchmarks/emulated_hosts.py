"""Run a command on N emulated hosts of this Linux machine (root), as DGL's tools/launch.py does over ssh.

The hosts are ``tests/hosts.py``'s: a network namespace each (``h0`` at 10.213.0.1, ``h1`` at
10.213.0.2, ...), joined by a bridge, each with its own ``/dev/shm``, hostname and ``TMPDIR``.
The command is formatted per host with ``{rank}`` (the host's index), ``{host}`` (its name),
``{addr}`` (its address), ``{master}`` (host 0's address) and ``{nhosts}``; every host runs it
at once, its output lines prefixed with the host's name. When one host's command fails, the
others get ``--grace`` seconds to end on their own, then are killed. At the end it prints each
host's exit status and the bytes its interface sent and received while the command ran, tears
everything down (also on Ctrl-C, exit 130) and exits with the first failing status (else 0).

    python benchmarks/emulated_hosts.py --hosts 2 -- \\
        torchrun --nnodes 2 --node-rank {rank} --nproc-per-node 1 --master-addr {master} --master-port 29500 \\
        -m revgnn_dgl train --model wide --dataset synthetic-proteins --device cpu --threads 1 --out /tmp/run-{host}

``--sweep`` only removes the namespaces an earlier killed run left behind.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hosts import EmulatedHosts, sweep, unavailable  # noqa: E402


def _pump(stream, prefix: str) -> None:
    for line in iter(stream.readline, ""):
        sys.stdout.write(f"[{prefix}] {line}")
        sys.stdout.flush()
    stream.close()


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2, help="number of emulated hosts [2]")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before every host's command is killed")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds the others get after one host fails [30]")
    parser.add_argument("--json", metavar="FILE", help="write the exit statuses and byte counts there")
    parser.add_argument("--sweep", action="store_true", help="remove stale namespaces of a killed run, then exit")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS (formatted per host)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    why = unavailable()
    if why:
        print(f"Error: {why}", file=sys.stderr)
        return 1
    if args.sweep:
        print(f"removed {len(sweep())} stale namespace(s)")
        return 0
    if not command:
        print("Error: no command given (after --)", file=sys.stderr)
        return 2
    if not 1 <= args.hosts <= 200:
        print(f"Error: --hosts {args.hosts}: give 1 to 200", file=sys.stderr)
        return 2
    # Ctrl-C and SIGTERM tear down: set here, since a shell's background job starts with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with EmulatedHosts(args.hosts, tag="bench") as hosts:
            fields = {"master": hosts[0].address, "nhosts": args.hosts}
            before = [host.counters() for host in hosts]
            tic = time.monotonic()
            procs, pumps = [], []
            for host in hosts:
                argv_host = [
                    part.format(rank=host.index, host=host.name, addr=host.address, **fields) for part in command
                ]
                proc = host.popen(argv_host, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)  # fmt: skip
                procs.append(proc)
                pumps.append(threading.Thread(target=_pump, args=(proc.stdout, host.name), daemon=True))
                pumps[-1].start()
            failed_at = None
            while any(p.poll() is None for p in procs):
                now = time.monotonic()
                if failed_at is None and any(p.returncode not in (None, 0) for p in procs):
                    failed_at = now
                if now - tic > args.timeout or (failed_at is not None and now - failed_at > args.grace):
                    for proc in procs:
                        if proc.poll() is None:
                            proc.kill()
                    break
                time.sleep(0.1)
            codes = [p.wait() for p in procs]
            seconds = time.monotonic() - tic
            for pump in pumps:
                pump.join(timeout=5)
            after = [host.counters() for host in hosts]
            report = []
            for host, code, a, b in zip(hosts, codes, before, after):
                sent, received = b["tx_bytes"] - a["tx_bytes"], b["rx_bytes"] - a["rx_bytes"]
                report.append({"host": host.name, "address": host.address, "exit": code, "tx_bytes": sent,
                               "rx_bytes": received, "seconds": round(seconds, 2)})  # fmt: skip
                print(
                    f"{host.name} ({host.address}): exit {code}, sent {sent} B, received {received} B in {seconds:.1f} s"
                )
            if args.json:
                Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
            return next((code if code > 0 else 1 for code in codes if code), 0)
    except KeyboardInterrupt:
        print("interrupted: every host's processes were killed and the hosts removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
