"""Benchmark suite `paper_scale`: see benchmarks/README.md and suites.paper_scale (benchmarks/suites.py).

python benchmarks/paper_scale.py [--out DIR] [--threads N] [--full-depth MODEL] [--timeout S]
"""

import sys

from suites import main  # benchmarks/suites.py: this script's folder is on sys.path

if __name__ == "__main__":
    main("paper_scale", sys.argv[1:])
