"""``python -m revgnn_dgl ...``: the ``revgnn-dgl`` command (also what ``torchrun -m revgnn_dgl`` runs)."""
from .console import main

main()
