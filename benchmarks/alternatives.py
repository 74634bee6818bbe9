"""Benchmark suite `alternatives`: see benchmarks/README.md and suites.alternatives (benchmarks/suites.py).

python benchmarks/alternatives.py [--out DIR] [--threads N]
"""

import sys

from suites import main  # benchmarks/suites.py: this script's folder is on sys.path

if __name__ == "__main__":
    main("alternatives", sys.argv[1:])
