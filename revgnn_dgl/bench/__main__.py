"""``python -m revgnn_dgl.bench memory|speed ...``."""

from .cli import main

main()
