"""Print the Markdown tables of benchmarks/results (as pasted into benchmarks/README.md).

python benchmarks/report.py [--out DIR]
"""

import sys

from suites import main  # benchmarks/suites.py: this script's folder is on sys.path

if __name__ == "__main__":
    main("report", sys.argv[1:])
