"""The GCN baseline equals a dense computation of Kipf and Welling's propagation rule."""

from __future__ import annotations

import dgl
import pytest
import torch

from revgnn_dgl import create_model
from revgnn_dgl.models import GCN


def dense_gcn(model: GCN, graph: dgl.DGLGraph, feat: torch.Tensor) -> torch.Tensor:
    n = graph.num_nodes()
    src, dst = graph.edges()
    adj = torch.zeros(n, n, dtype=feat.dtype).index_put_(
        (dst, src), torch.ones(len(src), dtype=feat.dtype), accumulate=True
    )
    d_in = adj.sum(1).clamp(min=1).pow(-0.5)
    d_out = adj.sum(0).clamp(min=1).pow(-0.5)
    prop = d_in[:, None] * adj * d_out[None, :]
    h = feat
    for i, layer in enumerate(model.layers):
        h = prop @ (h @ layer.weight) + layer.bias
        if i < len(model.layers) - 1:
            h = torch.relu(h)
    return h


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_gcn_equals_the_dense_rule(num_layers: int) -> None:
    torch.manual_seed(0)
    g = dgl.rand_graph(25, 80)
    g = dgl.add_self_loop(dgl.to_bidirected(g))
    model = GCN(6, 3, hidden=5, num_layers=num_layers).double().eval()
    feat = torch.randn(25, 6, dtype=torch.float64)
    torch.testing.assert_close(model(g, feat), dense_gcn(model, g, feat), rtol=1e-12, atol=1e-12)


def test_gcn_card_and_refusals() -> None:
    model = create_model("gcn", in_feats=10, out_feats=4, hidden=16)
    assert sum(p.numel() for p in model.parameters()) == 10 * 16 + 16 + 16 * 4 + 4
    with pytest.raises(ValueError, match="node features only"):
        GCN(4, 2, edge_feats=3)
