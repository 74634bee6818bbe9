"""``python -m revgnn_dgl ...``: the ``revgnn-dgl`` command (also what ``torchrun -m revgnn_dgl`` runs)."""

import sys

try:  # a Ctrl-C before the console module has installed its rule is still one line, exit 130
    from .console import main
except KeyboardInterrupt:
    sys.stderr.write("\nInterrupted.\n")
    sys.exit(130)

main()
