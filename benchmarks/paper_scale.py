"""Benchmark suite `paper_scale`: see benchmarks/README.md and revgnn_dgl.bench.suites.paper_scale.

    python benchmarks/paper_scale.py [--out DIR] [--threads N] [--full] [--timeout S]
"""
import sys

from revgnn_dgl.bench.suites import main

if __name__ == "__main__":
    main(["paper_scale", *sys.argv[1:]])
