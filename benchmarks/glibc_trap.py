"""Benchmark suite `glibc_trap`: see benchmarks/README.md and revgnn_dgl.bench.suites.glibc_trap.

    python benchmarks/glibc_trap.py [--out DIR] [--threads N]
"""
import sys

from revgnn_dgl.bench.suites import main

if __name__ == "__main__":
    main(["glibc_trap", *sys.argv[1:]])
