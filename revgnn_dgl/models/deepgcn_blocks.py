r"""The blocks of a :class:`~revgnn_dgl.models.DeepGCN`, passed in by composition.

A DeepGCN is an encoder, ``num_layers`` pre-activation blocks ``norm -> ReLU -> dropout -> conv``
joined by a connection (reversible, weight-tied or residual), and a head. What varies between
the paper's models and the depth experiments is the block, so the block is an object handed
to the model (PyG's ``DeepGCNLayer(conv, norm, act, block=...)``), and each kind carries only
its own switches:

* :class:`GENBlock`: DeeperGCN's GENConv (RevGNN-Deep and -Wide; reads edge features);
* :class:`SAGEBlock`, :class:`GCNBlock`: DGL's SAGEConv and GraphConv;
* :class:`GCNIIBlock`: GCNII's initial-residual layer, with the stream's start
  (``stream_init``) and the step :math:`\tau` of its identity mapping.

A zoo card names its block with flat arguments (``conv: gcnii``, ``gcnii_step: 0.2``, ...);
:func:`block_from_arguments` turns those into the block, so every card builds what it built
before, parameter for parameter.

>>> from revgnn_dgl.models import RevGNN
>>> from revgnn_dgl.models.deepgcn_blocks import GCNIIBlock
>>> model = RevGNN(16, 3, hidden=32, num_layers=4, block=GCNIIBlock(step=0.5, norm="none", stream_init="zero"))
>>> type(model.layers[0].gnn_modules[0].conv).__name__
'GCNIIConv'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch
from dgl.nn import GraphConv, SAGEConv
from torch import nn

from ..errors import ConfigError
from ..nn import GENConv
from ..nn.gcnii import GCNII_MODES, GCNIIConv

CONVS = ("gen", "sage", "gcn", "gcnii")
STREAM_INITS = ("encoder", "zero")

#: The flat (card) names of the GENConv options a :class:`GENBlock` forwards.
GEN_OPTIONS = frozenset(
    {"t", "learn_t", "p", "learn_p", "y", "learn_y", "msg_norm", "learn_msg_scale", "expansion", "eps"}
)


@dataclass
class BlockSpec:
    """What every block kind has: the norm of its pre-activation and how it starts."""

    norm: str = "layer"
    #: Start the residual branch at exactly zero (the conv's output weights zeroed; timm's ``zero_init_last``).
    zero_init_last: bool = False

    #: The flat name of this kind (``conv`` in a card).
    kind = ""
    #: Reads GCNII's initial representation :math:`H_0` as an extra input of every block.
    reads_initial = False
    #: Reads edge features.
    reads_edges = False

    @property
    def stream_starts_at_zero(self) -> bool:
        return False

    def check(self, edge_feats: int) -> None:
        """Refuse switches that this kind cannot honour, with the reason."""
        if edge_feats and not self.reads_edges:
            raise ConfigError(
                f"conv {self.kind!r} cannot use edge features; use conv='gen', or edge_feats=0 to ignore the graph's "
                "(on the command line: --set edge_feats=0 or --dataset-option edge_feats=false)."
            )

    def make_conv(self, width: int, edge_width: Optional[int], layer: int) -> nn.Module:
        """The message-passing layer of block number ``layer`` (from 1) at ``width`` channels."""
        raise NotImplementedError


@dataclass
class GENBlock(BlockSpec):
    """DeeperGCN's GENConv: ``aggregator`` over messages ``ReLU(h_j + e_ij) + eps``, an MLP of ``mlp_layers``."""

    aggregator: str = "max"
    mlp_layers: int = 2
    #: Further GENConv arguments (``learn_t``, ``t``, ``msg_norm``, ...).
    options: Dict[str, Any] = field(default_factory=dict)

    kind = "gen"
    reads_edges = True

    def make_conv(self, width: int, edge_width: Optional[int], layer: int) -> nn.Module:
        return GENConv(
            width,
            width,
            aggregator=self.aggregator,
            edge_feats=edge_width,
            mlp_layers=self.mlp_layers,
            norm=self.norm,
            **self.options,
        )


@dataclass
class SAGEBlock(BlockSpec):
    """DGL's ``SAGEConv(width, width, "mean")``."""

    kind = "sage"

    def make_conv(self, width: int, edge_width: Optional[int], layer: int) -> nn.Module:
        return SAGEConv(width, width, "mean")


@dataclass
class GCNBlock(BlockSpec):
    """DGL's ``GraphConv(width, width)`` (zero in-degrees allowed: the stream's identity carries them)."""

    kind = "gcn"

    def make_conv(self, width: int, edge_width: Optional[int], layer: int) -> nn.Module:
        return GraphConv(width, width, allow_zero_in_degree=True)


@dataclass
class GCNIIBlock(BlockSpec):
    r"""GCNII's layer without its activation, :class:`~revgnn_dgl.nn.gcnii.GCNIIConv`.

    Block :math:`l` computes :math:`\tau\,((1-\alpha)\hat P\,\mathrm{drop}(\mathrm{ReLU}(\mathrm{norm}(X)))
    + \alpha H_0)((1-\beta_l) I + \beta_l W_l)`, :math:`\beta_l = \log(\lambda/l + 1)` (``mode
    'appnp'`` drops :math:`W_l`). ``stream_init`` is what the first block reads: ``encoder``
    (the dropped-out :math:`H_0`) or ``zero`` (the stream starts empty and :math:`H_0` enters
    through the blocks only).
    """

    alpha: float = 0.1
    lambda_: float = 0.5
    mode: str = "gcnii"
    step: float = 0.1
    stream_init: str = "encoder"

    kind = "gcnii"
    reads_initial = True

    @property
    def stream_starts_at_zero(self) -> bool:
        return self.stream_init == "zero"

    def check(self, edge_feats: int) -> None:
        super().check(edge_feats)
        if self.mode not in GCNII_MODES:
            raise ConfigError(f"unknown gcnii_mode {self.mode!r}; choose one of {', '.join(GCNII_MODES)}.")
        if self.stream_init not in STREAM_INITS:
            raise ConfigError(f"unknown stream_init {self.stream_init!r}; choose one of {', '.join(STREAM_INITS)}.")
        if self.stream_init == "zero" and self.norm != "none":
            # The first block's input is exactly zero, where a norm divides by a zero spread: the
            # reconstruction's rounding (1e-17) would be blown up to unit scale in backward.
            raise ConfigError(
                f"stream_init='zero' needs norm='none' (a {self.norm} norm of the all-zero first input is degenerate)."
            )
        if self.zero_init_last:
            raise ConfigError(
                "zero_init_last cannot zero a GCNII block (its identity mapping is no weight); set gcnii_step instead."
            )

    def make_conv(self, width: int, edge_width: Optional[int], layer: int) -> nn.Module:
        return GCNIIConv(width, layer=layer, alpha=self.alpha, lambda_=self.lambda_, mode=self.mode, step=self.step)


_KINDS = {"gen": GENBlock, "sage": SAGEBlock, "gcn": GCNBlock, "gcnii": GCNIIBlock}


def block_from_arguments(
    conv: str = "gen",
    aggregator: str = "max",
    mlp_layers: int = 2,
    norm: str = "layer",
    zero_init_last: bool = False,
    gcnii_alpha: float = 0.1,
    gcnii_lambda: float = 0.5,
    gcnii_mode: str = "gcnii",
    gcnii_step: float = 0.1,
    stream_init: str = "encoder",
    **gen_options: Any,
) -> BlockSpec:
    """The block that a zoo card's flat arguments name (``conv`` picks the kind).

    Switches of other kinds are ignored, as the cards have always written them (``aggregator``
    beside ``conv: gcnii``); ``stream_init`` other than ``encoder`` needs ``conv='gcnii'``.
    """
    if conv not in _KINDS:
        raise ConfigError(f"unknown conv {conv!r}; choose one of {', '.join(CONVS)}.")
    if stream_init not in STREAM_INITS:
        raise ConfigError(f"unknown stream_init {stream_init!r}; choose one of {', '.join(STREAM_INITS)}.")
    if stream_init != "encoder" and conv != "gcnii":
        raise ConfigError(
            f"stream_init={stream_init!r} needs conv='gcnii' (the only blocks that read the encoder output)."
        )
    unknown = sorted(set(gen_options) - GEN_OPTIONS)
    if unknown:
        raise ConfigError(
            f"unknown block argument(s) {', '.join(unknown)}; GENConv takes {', '.join(sorted(GEN_OPTIONS))}."
        )
    if conv == "gen":
        return GENBlock(norm, zero_init_last, aggregator, mlp_layers, dict(gen_options))
    if conv == "gcnii":
        return GCNIIBlock(norm, zero_init_last, gcnii_alpha, gcnii_lambda, gcnii_mode, gcnii_step, stream_init)
    return _KINDS[conv](norm, zero_init_last)


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
