"""Benchmark suite `memory_vs_depth`: see benchmarks/README.md and suites.memory_vs_depth (benchmarks/suites.py).

python benchmarks/memory_vs_depth.py [--out DIR] [--threads N]
"""

import sys

from suites import main  # benchmarks/suites.py: this script's folder is on sys.path

if __name__ == "__main__":
    main("memory_vs_depth", sys.argv[1:])
