"""What the package ships for testing itself (as ``torch_geometric.testing`` does): the reversible
engine's checks against ordinary autograd (:mod:`.engine_checks`), which ``revgnn-dgl info
--check``, the CUDA test tier and ``python -m revgnn_dgl.testing.engine_checks`` run.

Importing this package loads nothing: :mod:`.engine_checks` needs torch only (no DGL), so it runs
on a GPU machine without DGL.
"""
