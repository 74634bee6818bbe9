"""The classic shallow baseline: a plain GCN (Kipf and Welling, 2017), no residuals, no norms."""

from __future__ import annotations

import warnings
from typing import Optional

import dgl
import torch.nn.functional as F
from dgl.nn import GraphConv
from torch import Tensor, nn

from ..errors import ConfigError
from ..nn import GraphInputError
from ..nn.norm import make_input_norm

SELF_LOOPS = ("auto", "always", "never")


class GCN(nn.Module):
    r"""``num_layers`` graph convolutions with ReLU and dropout between them.

    .. math::
        H^{(l+1)} = \sigma\big(\tilde D^{-1/2} \tilde A \tilde D^{-1/2} H^{(l)} W^{(l)}\big),

    with dropout on every layer's input (Kipf and Welling's recipe: 2 layers, 16-64 hidden
    channels, dropout 0.5, weight decay 5e-4). The baseline that deep models are measured
    against under the same training recipe and splits.

    Self-loops (issue 39): Kipf and Welling's :math:`\tilde A = A + I`. With ``self_loops='auto'``
    (the default) the model adds one self-loop per node (removing any the graph has) whenever
    the graph has a node of in-degree 0, which would otherwise output only its bias; a graph
    whose every node has an in-edge is used as given (the loaders of Cora, CiteSeer, Amazon and
    Coauthor drop self-loops, so the committed Cora runs are unchanged). ``always`` adds them on
    every graph; ``never`` uses the graph as given and warns when nodes of in-degree 0 exist.

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
    self_loops : str
        ``auto``, ``always`` or ``never`` (see above).
    input_norm : str
        ``none`` or ``standardize`` (:func:`~revgnn_dgl.nn.norm.make_input_norm`).

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
        self_loops: str = "auto",
        input_norm: str = "none",
    ) -> None:
        super().__init__()
        if self_loops not in SELF_LOOPS:
            raise ConfigError(f"unknown self_loops {self_loops!r}; choose one of {', '.join(SELF_LOOPS)}.")
        if num_layers < 1:
            raise ConfigError(f"num_layers must be at least 1, got {num_layers}.")
        if edge_feats or species_feats:
            raise ConfigError("GCN takes node features only: edge_feats and species_feats must be 0.")
        widths = [in_feats] + [hidden] * (num_layers - 1) + [out_feats]
        self.in_feats, self.dropout, self.self_loops = in_feats, dropout, self_loops
        if input_norm != "none":
            self.input_norm = make_input_norm(input_norm, in_feats)
        else:
            make_input_norm(input_norm, in_feats)  # refuses an unknown kind
        self.layers = nn.ModuleList(GraphConv(a, b, allow_zero_in_degree=True) for a, b in zip(widths, widths[1:]))

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()

    def forward(self, graph: dgl.DGLGraph, feat: Tensor, edge_feat: Optional[Tensor] = None) -> Tensor:
        if feat.dim() != 2 or feat.shape[-1] != self.in_feats:
            raise GraphInputError(f"GCN expects node features of width {self.in_feats}, got shape {tuple(feat.shape)}.")
        graph = self.graph_with_self_loops(graph)
        h = self.input_norm(feat) if hasattr(self, "input_norm") else feat
        for i, layer in enumerate(self.layers):
            h = layer(graph, F.dropout(h, self.dropout, self.training))
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return h

    def graph_with_self_loops(self, graph: dgl.DGLGraph) -> dgl.DGLGraph:
        """The graph the convolutions see under :attr:`self_loops` (one self-loop per node, or as given)."""
        if self.self_loops == "never":
            if self.training and bool((graph.in_degrees() == 0).any()):
                warnings.warn(
                    "GCN(self_loops='never'): nodes of in-degree 0 output only the bias; self_loops='auto' adds "
                    "Kipf and Welling's self-loops.",
                    stacklevel=3,
                )
            return graph
        if self.self_loops == "auto" and not bool((graph.in_degrees() == 0).any()):
            return graph
        return dgl.add_self_loop(dgl.remove_self_loop(graph))
