"""Benchmark `scaling`: epoch time and per-rank peak memory of one run at 1 and 2 processes (CPU, one thread each).

    python benchmarks/scaling.py [--out DIR] [--nodes N] [--epochs E]

See revgnn_dgl.bench.scaling and docs/distributed.md.
"""
import sys

from revgnn_dgl.bench.scaling import main

if __name__ == "__main__":
    main(sys.argv[1:])
