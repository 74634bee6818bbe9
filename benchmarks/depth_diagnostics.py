"""Benchmark `depth_diagnostics`: per-layer activation scale, node spread, gradient norm and label
probe of a deep RevGNN (fresh or trained) in one training-mode forward and backward.

    python benchmarks/depth_diagnostics.py [--dataset cora] [--conv gen] [--layers 64] [--checkpoint FILE] [--out FILE.json]

See revgnn_dgl.bench.depth and docs/results.md ("Why deep models lost on Cora").
"""
import sys

from revgnn_dgl.bench.depth import main

if __name__ == "__main__":
    main(sys.argv[1:])
