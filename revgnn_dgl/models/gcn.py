"""The classic shallow baseline: a plain GCN (Kipf and Welling, 2017), no residuals, no norms."""
from __future__ import annotations

from typing import Optional

import dgl
import torch.nn.functional as F
from dgl.nn import GraphConv
from torch import Tensor, nn

from ..nn import GraphInputError


class GCN(nn.Module):
    r"""``num_layers`` graph convolutions with ReLU and dropout between them.

    .. math::
        H^{(l+1)} = \sigma\big(\tilde D^{-1/2} \tilde A \tilde D^{-1/2} H^{(l)} W^{(l)}\big),

    with dropout on every layer's input (Kipf and Welling's recipe: 2 layers, 16-64 hidden
    channels, dropout 0.5, weight decay 5e-4). The baseline that deep models are measured
    against under the same training recipe and splits. Zero in-degree nodes are allowed (they
    keep only their bias), so graphs need not carry self-loops; the symmetric normalisation adds
    none, as DGL's ``GraphConv`` does.

    Parameters
    ----------
    in_feats, out_feats, hidden : int
        Input width, outputs and hidden width.
    num_layers : int
        Graph convolutions (2 is the classic model).
    dropout : float
        Dropout on each layer's input.
    edge_feats, species_feats : int
        Accepted for interface compatibility with the other cards; must be 0.

    Examples
    --------
    >>> import dgl, torch
    >>> model = GCN(5, 3, hidden=8)
    >>> model(dgl.rand_graph(10, 30), torch.randn(10, 5)).shape
    torch.Size([10, 3])
    """

    def __init__(
        self,
        in_feats: int,
        out_feats: int,
        hidden: int = 64,
        num_layers: int = 2,
        dropout: float = 0.5,
        edge_feats: int = 0,
        species_feats: int = 0,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}.")
        if edge_feats or species_feats:
            raise ValueError("GCN takes node features only: edge_feats and species_feats must be 0.")
        widths = [in_feats] + [hidden] * (num_layers - 1) + [out_feats]
        self.in_feats, self.dropout = in_feats, dropout
        self.layers = nn.ModuleList(GraphConv(a, b, allow_zero_in_degree=True) for a, b in zip(widths, widths[1:]))

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()

    def forward(self, graph: dgl.DGLGraph, feat: Tensor, edge_feat: Optional[Tensor] = None) -> Tensor:
        if feat.dim() != 2 or feat.shape[-1] != self.in_feats:
            raise GraphInputError(f"GCN expects node features of width {self.in_feats}, got shape {tuple(feat.shape)}.")
        h = feat
        for i, layer in enumerate(self.layers):
            h = layer(graph, F.dropout(h, self.dropout, self.training))
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return h
