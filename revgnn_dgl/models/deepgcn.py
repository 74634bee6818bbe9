"""RevGNN (reversible), WT-RevGNN (weight-tied) and ResGNN (residual): one deep GNN, three connections."""

from __future__ import annotations

from typing import Any, Dict, Optional

import dgl
import torch
import torch.nn.functional as F
from dgl.nn import GraphConv, SAGEConv
from torch import Tensor, nn

from ..errors import ConfigError
from ..nn import GENConv, GraphInputError, GroupRevRes, PreActivationBlock, ResBlock, SharedDropout, make_norm
from ..nn.gcnii import GCNII_MODES, GCNIIConv
from ..nn.norm import make_input_norm

CONNECTIONS = ("reversible", "weight_tied", "residual")
CONVS = ("gen", "sage", "gcn", "gcnii")
STREAM_INITS = ("encoder", "zero")
BLOCK_DROPOUTS = ("shared", "independent")


def make_conv(
    kind: str,
    width: int,
    edge_width: Optional[int],
    aggregator: str,
    mlp_layers: int,
    norm: str,
    layer: int = 1,
    gcnii: Optional[Dict[str, Any]] = None,
    **gen_options,
) -> nn.Module:
    """The message-passing layer of one block: DeeperGCN's GENConv, DGL's SAGEConv / GraphConv, or
    GCNII's initial-residual layer (:class:`~revgnn_dgl.nn.gcnii.GCNIIConv`, the ``layer``-th, with
    the ``gcnii`` keyword arguments ``alpha``, ``lambda_``, ``mode``, ``step``)."""
    if kind == "gcnii":
        return GCNIIConv(width, layer=layer, **(gcnii or {}))
    if kind == "gen":
        return GENConv(
            width, width, aggregator=aggregator, edge_feats=edge_width, mlp_layers=mlp_layers, norm=norm, **gen_options
        )
    if kind == "sage":
        return SAGEConv(width, width, "mean")
    if kind == "gcn":
        return GraphConv(width, width, allow_zero_in_degree=True)
    raise ConfigError(f"unknown conv {kind!r}; choose one of {', '.join(CONVS)}.")


def zero_last_projection_(conv: nn.Module) -> None:
    """Zero the weights (and biases) that produce a block's conv output, so the block adds exactly 0.

    The block's input still reaches these weights, so their gradient is not zero and the branch
    starts learning at the first step (timm's ``zero_init_last``, after Goyal et al. 2017, who zero
    the last BatchNorm scale of every ResNet block).
    """
    if isinstance(conv, GENConv):
        last = [conv.mlp[-1]]
    elif isinstance(conv, SAGEConv):
        last = [conv.fc_neigh] + ([conv.fc_self] if hasattr(conv, "fc_self") else []) + [conv]
    elif isinstance(conv, GraphConv):
        last = [conv]
    else:
        raise ConfigError(f"zero_init_last does not know the output weights of {type(conv).__name__}.")
    with torch.no_grad():
        for module in last:
            for name in ("weight", "bias"):
                param = getattr(module, name, None)
                if isinstance(param, nn.Parameter):
                    param.zero_()


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
    conv, aggregator, mlp_layers, norm : str, str, int, str
        The layer: ``gen`` (GENConv with that aggregator and MLP), ``sage`` or ``gcn``.
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
    zero_init_last : bool
        Start every block's residual branch at exactly zero (the conv's output weights and biases
        zeroed, :func:`zero_last_projection_`), so that the untrained model is the encoder and the
        head with an identity in between and depth is added by training (timm's
        ``zero_init_last``). Off by default: the released models start at the default init.
    gcnii_alpha, gcnii_lambda, gcnii_mode, gcnii_step : float, float, str, float
        ``conv='gcnii'``: block :math:`l`'s function is
        :math:`f_l(X, H_0) = \tau\,((1-\alpha)\hat P\,\mathrm{drop}(\mathrm{ReLU}(\mathrm{norm}(X)))
        + \alpha H_0)((1-\beta_l) I + \beta_l W_l)`, :math:`\beta_l = \log(\lambda/l + 1)`
        (GCNII's layer without its activation, :class:`~revgnn_dgl.nn.gcnii.GCNIIConv`; ``mode
        'appnp'`` drops :math:`W_l`), with step :math:`\tau` = ``gcnii_step``. :math:`H_0 =
        \mathrm{ReLU}(\text{node encoder})` is an extra input of every block, split per group in
        reversible blocks (each group reads its slice), so its gradient sums over all blocks.
    stream_init : str
        ``conv='gcnii'``: what the first block reads, ``encoder`` (the dropped-out :math:`H_0`)
        or ``zero`` (the stream starts empty and :math:`H_0` enters through the blocks only, so
        the head never sees the undropped encoder output through the identity path).
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
    gen_options
        Extra GENConv arguments (``learn_t``, ``t``, ``msg_norm``, ...).

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
        conv: str = "gen",
        aggregator: str = "max",
        mlp_layers: int = 2,
        norm: str = "layer",
        dropout: float = 0.1,
        reinit_groups: bool = True,
        disable: bool = False,
        fold_edge_encoder: bool = True,
        zero_init_last: bool = False,
        gcnii_alpha: float = 0.1,
        gcnii_lambda: float = 0.5,
        gcnii_mode: str = "gcnii",
        gcnii_step: float = 0.1,
        stream_init: str = "encoder",
        block_dropout: str = "shared",
        input_norm: str = "none",
        zero_init_head: bool = False,
        **gen_options,
    ) -> None:
        super().__init__()
        if connection not in CONNECTIONS:
            raise ConfigError(f"unknown connection {connection!r}; choose one of {', '.join(CONNECTIONS)}.")
        if conv not in CONVS:
            raise ConfigError(f"unknown conv {conv!r}; choose one of {', '.join(CONVS)}.")
        if stream_init not in STREAM_INITS:
            raise ConfigError(f"unknown stream_init {stream_init!r}; choose one of {', '.join(STREAM_INITS)}.")
        if stream_init != "encoder" and conv != "gcnii":
            raise ConfigError(
                f"stream_init={stream_init!r} needs conv='gcnii' (the only blocks that read the encoder output)."
            )
        if stream_init == "zero" and norm != "none":
            # The first block's input is exactly zero, where a norm divides by a zero spread: the
            # reconstruction's rounding (1e-17) would be blown up to unit scale in backward.
            raise ConfigError(
                f"stream_init='zero' needs norm='none' (a {norm} norm of the all-zero first input is degenerate)."
            )
        if block_dropout not in BLOCK_DROPOUTS:
            raise ConfigError(f"unknown block_dropout {block_dropout!r}; choose one of {', '.join(BLOCK_DROPOUTS)}.")
        if gcnii_mode not in GCNII_MODES:
            raise ConfigError(f"unknown gcnii_mode {gcnii_mode!r}; choose one of {', '.join(GCNII_MODES)}.")
        if zero_init_last and conv == "gcnii":
            raise ConfigError(
                "zero_init_last cannot zero a GCNII block (its identity mapping is no weight); set gcnii_step instead."
            )
        if num_layers < 1:
            raise ConfigError(f"num_layers must be at least 1, got {num_layers}.")
        if connection != "residual" and hidden % groups:
            raise ConfigError(f"hidden={hidden} is not divisible by groups={groups}.")
        if edge_feats and conv != "gen":
            raise ConfigError(
                f"conv {conv!r} cannot use edge features; use conv='gen', or edge_feats=0 to ignore the graph's "
                "(on the command line: --set edge_feats=0 or --dataset-option edge_feats=false)."
            )
        self.in_feats, self.out_feats, self.hidden = in_feats, out_feats, hidden
        self.num_layers, self.connection = num_layers, connection
        self.edge_feats, self.species_feats = edge_feats, species_feats
        self.fold_edge_encoder = fold_edge_encoder and conv == "gen"
        self.conv, self.stream_init, self.block_dropout = conv, stream_init, block_dropout
        gcnii = {"alpha": gcnii_alpha, "lambda_": gcnii_lambda, "mode": gcnii_mode, "step": gcnii_step}

        # Registered only when used, so that the checkpoints of models without it keep their keys.
        if input_norm != "none":
            self.input_norm = make_input_norm(input_norm, in_feats)
        else:
            make_input_norm(input_norm, in_feats)  # refuses an unknown kind
        self.species_encoder = nn.Linear(species_feats, species_feats) if species_feats else None
        self.node_encoder = nn.Linear(in_feats + species_feats, hidden)
        self.edge_encoder = nn.Linear(edge_feats, hidden) if edge_feats else None
        self.dropout = SharedDropout(dropout)

        width = hidden if connection == "residual" else hidden // groups
        edge_width = hidden if edge_feats else None

        def block(layer: int) -> PreActivationBlock:
            return PreActivationBlock(
                make_conv(
                    conv, width, edge_width, aggregator, mlp_layers, norm, layer=layer, gcnii=gcnii, **gen_options
                ),
                width,
                norm,
                dropout,
                independent=block_dropout == "independent",
            )

        if connection == "residual":
            self.layers = nn.ModuleList(ResBlock(block(i + 1)) for i in range(num_layers))
        else:
            count = 1 if connection == "weight_tied" else num_layers
            self.layers = nn.ModuleList(
                GroupRevRes(block(i + 1), groups, reinit_copies=reinit_groups, disable=disable) for i in range(count)
            )
        if zero_init_last:
            for module in self.layers.modules():
                if isinstance(module, PreActivationBlock):
                    zero_last_projection_(module.conv)
        self.head_norm = make_norm(norm, hidden)
        self.head = nn.Linear(hidden, out_feats)
        if zero_init_head:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

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
        if self.conv == "gcnii":
            # GCNII's initial representation, a constant input of every block (split per group).
            h0 = F.relu(h)
            h = torch.zeros_like(h0) if self.stream_init == "zero" else self.dropout(h0, self.dropout.sample_mask(h0))
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
