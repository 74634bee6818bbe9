"""``python -m revgnn_dgl.benchmark memory|speed ...``."""
from .cli import main

main()
