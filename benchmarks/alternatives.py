"""Benchmark suite `alternatives`: see benchmarks/README.md and revgnn_dgl.bench.suites.alternatives.

    python benchmarks/alternatives.py [--out DIR] [--threads N]
"""
import sys

from revgnn_dgl.bench.suites import main

if __name__ == "__main__":
    main(["alternatives", *sys.argv[1:]])
