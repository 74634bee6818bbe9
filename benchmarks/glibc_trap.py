"""Benchmark suite `glibc_trap`: see benchmarks/README.md and revgnn_dgl.benchmark.suites.glibc_trap.

    python benchmarks/glibc_trap.py [--out DIR] [--threads N]
"""
import sys

from revgnn_dgl.benchmark.suites import main

if __name__ == "__main__":
    main(["glibc_trap", *sys.argv[1:]])
