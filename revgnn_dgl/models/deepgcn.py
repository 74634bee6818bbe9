"""RevGNN (reversible), WT-RevGNN (weight-tied) and ResGNN (residual): one deep GNN, three connections."""

from __future__ import annotations

from typing import Any, Optional

import dgl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..nn import GraphInputError, GroupRevRes, PreActivationBlock, ResBlock, SharedDropout, make_norm
from ..nn.norm import make_input_norm
from .deepgcn_blocks import CONVS, STREAM_INITS, BlockSpec, block_from_arguments, zero_last_projection_

__all__ = ["CONNECTIONS", "CONVS", "STREAM_INITS", "BLOCK_DROPOUTS", "DeepGCN", "RevGNN", "WTRevGNN", "ResGNN"]

CONNECTIONS = ("reversible", "weight_tied", "residual")
BLOCK_DROPOUTS = ("shared", "independent")


class DeepGCN(nn.Module):
    r"""A deep GNN of ``num_layers`` pre-activation GENConv layers, as released for ogbn-proteins.

    Node input: ``feat`` (e.g. the sum of incident edge features), concatenated with
    ``Linear(species_feats, species_feats)`` of the species one-hot when ``species_feats > 0``,
    then ``Linear(in_feats + species_feats, hidden)``. Edge input: one ``Linear(edge_feats,
    hidden)`` shared by every layer (each group's GENConv projects it to its own width). Layers:
    ``norm -> ReLU -> shared dropout -> conv``, connected by

    * ``reversible``: :class:`~revgnn_dgl.nn.GroupRevRes` with ``groups`` groups (RevGNN);
    * ``weight_tied``: one such block whose weights all layers share (WT-RevGNN);
    * ``residual``: DeeperGCN's res+ skip at full width (ResGNN, the non-reversible baseline).

    Head: ``norm -> ReLU -> dropout -> Linear(hidden, out_feats)``. One dropout mask of shape
    ``(N, hidden)`` is drawn per forward pass and shared by all layers (the paper's recipe).

    Parameters
    ----------
    in_feats, out_feats : int
        Node input width and number of outputs (tasks or classes).
    hidden : int
        Model width :math:`D`.
    num_layers : int
        Depth :math:`L`.
    groups : int
        Channel groups :math:`C` of the reversible blocks (ignored by ``residual``).
    edge_feats : int
        Edge feature width; 0 for graphs without edge features.
    species_feats : int
        Width of the one-hot species input (8 for ogbn-proteins), 0 for none.
    connection : str
        ``reversible``, ``weight_tied`` or ``residual``.
    block : BlockSpec, optional
        The block (:mod:`~revgnn_dgl.models.deepgcn_blocks`): :class:`GENBlock` (the paper's),
        :class:`SAGEBlock`, :class:`GCNBlock` or :class:`GCNIIBlock`, with its own switches.
        Without it, the flat card arguments (``conv``, ``aggregator``, ``mlp_layers``, ``norm``,
        ``zero_init_last``, ``gcnii_alpha``, ``gcnii_lambda``, ``gcnii_mode``, ``gcnii_step``,
        ``stream_init`` and GENConv's options) name it, through
        :func:`~revgnn_dgl.models.deepgcn_blocks.block_from_arguments`.
    dropout : float
        Drop probability of the shared mask and of the head.
    reinit_groups : bool
        Re-initialise each group's copy of the block (``False`` reproduces the official code's
        identical initial groups).
    disable : bool
        Run reversible blocks with ordinary autograd (the memory baseline).
    fold_edge_encoder : bool
        Let each GENConv fold the shared edge encoder into its edge projection (the same
        function; layers read the raw edge features instead of an ``E x hidden`` embedding).
    zero_init_head : bool
        Start the output layer at zero, so that the untrained model predicts the same (uniform
        classes, or probability 0.5 per task) at every depth and the first loss does not grow with
        depth (issue 39: a 16-layer GCNII on dense features started at a BCE of 5-7 against 2.5-4 at
        4 layers). The head's weights get their gradient at once, the body's from the second step.
    input_norm : str
        ``none`` or ``standardize`` (every node feature channel centred and scaled by the training
        forwards' statistics before the encoder, :func:`~revgnn_dgl.nn.norm.make_input_norm`; what
        ``--recipe auto`` picks for dense features feeding a block without a norm).
    block_dropout : str
        ``shared``: one mask per forward pass for every layer (the paper's recipe);
        ``independent``: each block draws its own mask (reversible blocks record and replay the
        random-number state, so the memory-saving backward stays exact).

    Examples
    --------
    >>> import dgl, torch
    >>> g = dgl.rand_graph(20, 80)
    >>> model = RevGNN(in_feats=8, out_feats=3, hidden=16, num_layers=4, edge_feats=8)
    >>> model(g, torch.randn(20, 8), torch.randn(80, 8)).shape
    torch.Size([20, 3])
    """

    def __init__(
        self,
        in_feats: int,
        out_feats: int,
        hidden: int = 64,
        num_layers: int = 8,
        groups: int = 2,
        edge_feats: int = 0,
        species_feats: int = 0,
        connection: str = "reversible",
        dropout: float = 0.1,
        block_dropout: str = "shared",
        reinit_groups: bool = True,
        disable: bool = False,
        fold_edge_encoder: bool = True,
        input_norm: str = "none",
        zero_init_head: bool = False,
        block: Optional[BlockSpec] = None,
        **block_arguments: Any,
    ) -> None:
        super().__init__()
        if block is None:
            block = block_from_arguments(**block_arguments)
        elif block_arguments:
            raise ConfigError(f"pass the block's switches to its BlockSpec, not beside it: {sorted(block_arguments)}.")
        self._check_arguments(connection, block_dropout, num_layers, hidden, groups)
        block.check(edge_feats)
        self.in_feats, self.out_feats, self.hidden = in_feats, out_feats, hidden
        self.num_layers, self.connection = num_layers, connection
        self.edge_feats, self.species_feats = edge_feats, species_feats
        self.fold_edge_encoder = fold_edge_encoder and block.reads_edges
        self.block_spec, self.conv, self.block_dropout = block, block.kind, block_dropout

        # Registered only when used, so that the checkpoints of models without it keep their keys.
        if input_norm != "none":
            self.input_norm = make_input_norm(input_norm, in_feats)
        else:
            make_input_norm(input_norm, in_feats)  # refuses an unknown kind
        self.species_encoder = nn.Linear(species_feats, species_feats) if species_feats else None
        self.node_encoder = nn.Linear(in_feats + species_feats, hidden)
        self.edge_encoder = nn.Linear(edge_feats, hidden) if edge_feats else None
        self.dropout = SharedDropout(dropout)
        self.layers = self._connect(block, connection, hidden, groups, dropout, reinit_groups, disable)
        self.head_norm = make_norm(block.norm, hidden)
        self.head = nn.Linear(hidden, out_feats)
        if zero_init_head:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    @staticmethod
    def _check_arguments(connection: str, block_dropout: str, num_layers: int, hidden: int, groups: int) -> None:
        if connection not in CONNECTIONS:
            raise ConfigError(f"unknown connection {connection!r}; choose one of {', '.join(CONNECTIONS)}.")
        if block_dropout not in BLOCK_DROPOUTS:
            raise ConfigError(f"unknown block_dropout {block_dropout!r}; choose one of {', '.join(BLOCK_DROPOUTS)}.")
        if num_layers < 1:
            raise ConfigError(f"num_layers must be at least 1, got {num_layers}.")
        if connection != "residual" and hidden % groups:
            raise ConfigError(f"hidden={hidden} is not divisible by groups={groups}.")

    def _connect(
        self, block: BlockSpec, connection: str, hidden: int, groups: int, dropout: float, reinit: bool, disable: bool
    ) -> nn.ModuleList:
        """The layers: each block wrapped by the connection (one shared block when weight-tied)."""
        width = hidden if connection == "residual" else hidden // groups
        edge_width = hidden if self.edge_feats else None
        independent = self.block_dropout == "independent"

        def one(layer: int) -> PreActivationBlock:
            conv = block.make_conv(width, edge_width, layer)
            return PreActivationBlock(conv, width, block.norm, dropout, independent=independent)

        if connection == "residual":
            layers = nn.ModuleList(ResBlock(one(i + 1)) for i in range(self.num_layers))
        else:
            count = 1 if connection == "weight_tied" else self.num_layers
            layers = nn.ModuleList(
                GroupRevRes(one(i + 1), groups, reinit_copies=reinit, disable=disable) for i in range(count)
            )
        if block.zero_init_last:
            # after the groups' copies are re-initialised, so that every copy starts at zero
            for module in layers.modules():
                if isinstance(module, PreActivationBlock):
                    zero_last_projection_(module.conv)
        return layers

    def set_disable(self, disable: bool) -> None:
        """Switch every reversible block between the memory-saving and the plain autograd path."""
        for layer in self.layers:
            if isinstance(layer, GroupRevRes):
                layer.disable = disable

    def _check(self, graph: dgl.DGLGraph, feat: Tensor, edge_feat: Optional[Tensor], species: Optional[Tensor]) -> None:
        name = type(self).__name__
        if feat.dim() != 2 or feat.shape != (graph.num_nodes(), self.in_feats):
            raise GraphInputError(
                f"{name} expects node features of shape ({graph.num_nodes()}, {self.in_feats}), got {tuple(feat.shape)}."
            )
        if self.edge_feats:
            if edge_feat is None or edge_feat.shape != (graph.num_edges(), self.edge_feats):
                got = None if edge_feat is None else tuple(edge_feat.shape)
                raise GraphInputError(
                    f"{name} expects edge features of shape ({graph.num_edges()}, {self.edge_feats}), got {got}."
                )
        if self.species_feats and (species is None or species.shape != (graph.num_nodes(), self.species_feats)):
            got = None if species is None else tuple(species.shape)
            raise GraphInputError(
                f"{name} expects a species one-hot of shape ({graph.num_nodes()}, {self.species_feats}), got {got}."
            )

    def forward(
        self, graph: dgl.DGLGraph, feat: Tensor, edge_feat: Optional[Tensor] = None, species: Optional[Tensor] = None
    ) -> Tensor:
        """Logits of shape ``(N, out_feats)``.

        Parameters
        ----------
        graph : DGLGraph
            A homogeneous graph.
        feat : Tensor
            ``(N, in_feats)`` node features.
        edge_feat : Tensor, optional
            ``(E, edge_feats)`` edge features, required when ``edge_feats > 0``.
        species : Tensor, optional
            ``(N, species_feats)`` one-hot species, required when ``species_feats > 0``.
        """
        self._check(graph, feat, edge_feat, species)
        if hasattr(self, "input_norm"):
            feat = self.input_norm(feat)
        if self.species_encoder is not None:
            feat = torch.cat([feat, self.species_encoder(species)], dim=-1)
        h = self.node_encoder(feat)
        extra: tuple = ()
        if self.block_spec.reads_initial:
            # GCNII's initial representation, a constant input of every block (split per group).
            h0 = F.relu(h)
            if self.block_spec.stream_starts_at_zero:
                h = torch.zeros_like(h0)
            else:
                h = self.dropout(h0, self.dropout.sample_mask(h0))
            extra = (h0,)
        if self.edge_encoder is None:
            kwargs = {}
        elif self.fold_edge_encoder:
            # Each GENConv folds the shared edge encoder into its own edge projection: the same
            # function, without an E x hidden embedding kept alive by every layer.
            kwargs = {
                "edge_feat": edge_feat,
                "edge_encoder_weight": self.edge_encoder.weight,
                "edge_encoder_bias": self.edge_encoder.bias,
            }
        else:
            kwargs = {"edge_feat": self.edge_encoder(edge_feat)}
        mask = self.dropout.sample_mask(h) if self.block_dropout == "shared" else None
        for i in range(self.num_layers):
            layer = self.layers[0] if self.connection == "weight_tied" else self.layers[i]
            h = layer(graph, h, mask, *extra, **kwargs)
        h = F.relu(self.head_norm(h))
        h = F.dropout(h, p=self.dropout.p, training=self.training)
        return self.head(h)


class RevGNN(DeepGCN):
    """RevGNN: :class:`DeepGCN` with grouped reversible connections (memory flat in depth)."""

    def __init__(self, in_feats: int, out_feats: int, **kwargs) -> None:
        kwargs["connection"] = "reversible"
        super().__init__(in_feats, out_feats, **kwargs)


class WTRevGNN(DeepGCN):
    """WT-RevGNN: one reversible block whose weights all ``num_layers`` layers share."""

    def __init__(self, in_feats: int, out_feats: int, **kwargs) -> None:
        kwargs["connection"] = "weight_tied"
        super().__init__(in_feats, out_feats, **kwargs)


class ResGNN(DeepGCN):
    """ResGNN: DeeperGCN's res+ residual GNN, the non-reversible baseline of the same shape."""

    def __init__(self, in_feats: int, out_feats: int, **kwargs) -> None:
        kwargs["connection"] = "residual"
        super().__init__(in_feats, out_feats, **kwargs)
