"""revgnn_dgl: grouped reversible GNNs a thousand layers deep, in DGL."""
__version__ = "0.1.0"
