"""Benchmark suite `glibc_trap`: see benchmarks/README.md and suites.glibc_trap (benchmarks/suites.py).

python benchmarks/glibc_trap.py [--out DIR] [--threads N]
"""

import sys

from suites import main  # benchmarks/suites.py: this script's folder is on sys.path

if __name__ == "__main__":
    main("glibc_trap", sys.argv[1:])
