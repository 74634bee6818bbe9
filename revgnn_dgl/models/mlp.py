"""A feature-only baseline: the same node inputs and head as the GNNs, no message passing."""

from __future__ import annotations

from typing import Optional

import dgl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import GraphInputError, make_norm
from ..nn.norm import make_input_norm


class MLP(nn.Module):
    """``num_layers`` pre-activation residual MLP layers on node features alone.

    Node inputs are encoded exactly as in :class:`~revgnn_dgl.models.DeepGCN` (features,
    optionally concatenated with a linear map of a species one-hot); the graph and the edge
    features are ignored. It answers "how much does the graph add?" under the same training
    recipe.

    Parameters
    ----------
    in_feats, out_feats, hidden, num_layers : int
        Input width, outputs, hidden width and number of hidden layers.
    species_feats : int
        Width of a one-hot species input, 0 for none.
    norm : str
        ``layer``, ``batch`` or ``none``.
    dropout : float
        Drop probability before every linear layer after the encoder.
    edge_feats : int
        Accepted for interface compatibility with the GNN cards, and ignored.
    input_norm : str
        ``none`` or ``standardize`` (:func:`~revgnn_dgl.nn.norm.make_input_norm`).
    """

    def __init__(
        self,
        in_feats: int,
        out_feats: int,
        hidden: int = 64,
        num_layers: int = 2,
        species_feats: int = 0,
        norm: str = "layer",
        dropout: float = 0.1,
        edge_feats: int = 0,
        input_norm: str = "none",
    ) -> None:
        super().__init__()
        self.in_feats, self.species_feats, self.dropout = in_feats, species_feats, dropout
        if input_norm != "none":
            self.input_norm = make_input_norm(input_norm, in_feats)
        else:
            make_input_norm(input_norm, in_feats)  # refuses an unknown kind
        self.species_encoder = nn.Linear(species_feats, species_feats) if species_feats else None
        self.node_encoder = nn.Linear(in_feats + species_feats, hidden)
        self.norms = nn.ModuleList(make_norm(norm, hidden) for _ in range(num_layers + 1))
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(num_layers))
        self.head = nn.Linear(hidden, out_feats)

    def forward(
        self, graph: dgl.DGLGraph, feat: Tensor, edge_feat: Optional[Tensor] = None, species: Optional[Tensor] = None
    ) -> Tensor:
        if feat.dim() != 2 or feat.shape[-1] != self.in_feats:
            raise GraphInputError(f"MLP expects node features of width {self.in_feats}, got shape {tuple(feat.shape)}.")
        if hasattr(self, "input_norm"):
            feat = self.input_norm(feat)
        if self.species_encoder is not None:
            if species is None:
                raise GraphInputError("MLP was built with species_feats > 0 but forward() got no species one-hot.")
            feat = torch.cat([feat, self.species_encoder(species)], dim=-1)
        h = self.node_encoder(feat)
        for norm, layer in zip(self.norms, self.layers):
            h = h + layer(F.dropout(F.relu(norm(h)), self.dropout, self.training))
        h = F.dropout(F.relu(self.norms[-1](h)), self.dropout, self.training)
        return self.head(h)
