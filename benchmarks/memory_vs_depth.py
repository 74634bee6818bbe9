"""Benchmark suite `memory_vs_depth`: see benchmarks/README.md and revgnn_dgl.bench.suites.memory_vs_depth.

    python benchmarks/memory_vs_depth.py [--out DIR] [--threads N]
"""
import sys

from revgnn_dgl.bench.suites import main

if __name__ == "__main__":
    main(["memory_vs_depth", *sys.argv[1:]])
