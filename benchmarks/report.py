"""Print the Markdown tables of benchmarks/results (as pasted into benchmarks/README.md).

    python benchmarks/report.py [--out DIR]
"""
import sys

from revgnn_dgl.bench.suites import main

if __name__ == "__main__":
    main(["report", *sys.argv[1:]])
