"""The other public implementations of grouped reversible blocks, as benchmark variants.

Registered with :func:`revgnn_dgl.bench.workload.register_variant` when this module is imported
(``benchmarks/suites.py`` imports it; a measuring child process imports it again, by the name
the configuration records):

* ``dgl`` -- the same blocks (same module objects, same weights) wrapped by DGL's
  ``dgl.nn.GroupRevRes``, used as the official code uses its own: DGL splits *every* extra
  argument into the groups, so the dropout mask is passed positionally and the edge embedding
  is tiled ``groups`` times along the channels (once per forward pass), so that each group gets
  the whole embedding.
* ``pyg`` -- PyTorch Geometric's ``GroupAddRev`` around a block of the same architecture built
  from PyG's ``GENConv`` (max aggregation, ``Linear(D, D/C)`` edge encoder, the same MLP),
  with the weights copied from ours, so the four variants compute the same function.
  Unavailable (``unavailable`` rows) where ``torch_geometric`` is not installed
  (``pip install -e ".[benchmark]"``).

``python benchmarks/alternatives.py`` compares them with the package's ``ours`` and
``disable``. An experiment, not part of the package: it imports :mod:`revgnn_dgl`, never the
reverse.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Mapping, Optional, Tuple

import dgl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from revgnn_dgl.bench.workload import GraphBatch, register_variant
from revgnn_dgl.models.deepgcn import DeepGCN
from revgnn_dgl.nn import PreActivationBlock

__all__ = ["DGLRevGNN", "PyGRevGNN", "pyg_available"]


def _check_reversible(model: nn.Module, variant: str) -> DeepGCN:
    if not isinstance(model, DeepGCN) or model.connection != "reversible":
        raise ValueError(
            f"variant {variant!r} needs a RevGNN (reversible DeepGCN); got {type(model).__name__}"
            + (f" with connection {model.connection!r}" if isinstance(model, DeepGCN) else "")
        )
    if model.edge_encoder is None or model.species_encoder is None:
        raise ValueError(f"variant {variant!r} is built for the ogbn-proteins schema (edge and species inputs)")
    return model


class _HeadMixin:
    """Encoders and head of a :class:`DeepGCN`, shared by the DGL and PyG variants."""

    base: DeepGCN

    def _encode(self, b: GraphBatch) -> Tuple[Tensor, Tensor, Tensor]:
        m = self.base
        h = m.node_encoder(torch.cat([b.feat, m.species_encoder(b.species)], dim=-1))
        e = m.edge_encoder(b.edge_feat)
        mask = m.dropout.sample_mask(h)
        if mask is None:  # both wrappers need a tensor to split per group
            mask = torch.ones_like(h)
        return h, e, mask

    def _head(self, h: Tensor) -> Tensor:
        m = self.base
        h = F.relu(m.head_norm(h))
        h = F.dropout(h, p=m.dropout.p, training=m.training)
        return m.head(h)


class DGLRevGNN(_HeadMixin, nn.Module):
    """The same RevGNN, its blocks wrapped by ``dgl.nn.GroupRevRes`` instead of ours."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from dgl.nn import GroupRevRes as DGLGroupRevRes

        base = _check_reversible(model, "dgl")
        layers = []
        for layer in base.layers:
            wrapped = DGLGroupRevRes(layer.gnn_modules[0], layer.groups)
            wrapped.gnn_modules = layer.gnn_modules  # the very same blocks and weights
            layers.append(wrapped)
        base.layers = nn.ModuleList(layers)
        self.base = base
        self.groups = layers[0].groups

    def forward(self, b: GraphBatch) -> Tensor:
        h, e, mask = self._encode(b)
        # DGL chunks every extra argument per group; tiling gives each group the whole
        # embedding, as the official code does (deep_gcns_torch, model_rev.py).
        e = torch.cat([e] * self.groups, dim=-1)
        with warnings.catch_warnings():
            # DGL 2.1 uses the deprecated typed storage() API; the warning says nothing new.
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
            for layer in self.base.layers:
                h = layer(b.graph, h, mask, e)
        return self._head(h)


class _PyGBlock(nn.Module):
    """``LayerNorm -> ReLU -> shared dropout -> GENConv`` from PyG, weights copied from ours."""

    def __init__(self, ours: PreActivationBlock) -> None:
        super().__init__()
        from torch_geometric.nn import GENConv as PyGGENConv

        conv = ours.conv
        width = conv.out_feats
        if conv.aggregator != "max" or len(conv.mlp) != 4 or conv.msg_norm is not None:
            raise ValueError("the pyg variant is built for max aggregation, a 2-layer MLP and no MsgNorm")
        self.norm = copy.deepcopy(ours.norm)
        self.conv = PyGGENConv(
            width,
            width,
            aggr="max",
            norm="layer",
            num_layers=2,
            expansion=conv.mlp[0].out_features // width,
            eps=conv.eps,
            bias=True,
            edge_dim=conv.edge_feats,
        )
        pairs = [
            (self.conv.lin_edge, conv.edge_encoder),
            (self.conv.mlp[0], conv.mlp[0]),
            (self.conv.mlp[1], conv.mlp[1]),
            (self.conv.mlp[4], conv.mlp[3]),
        ]
        with torch.no_grad():
            for theirs, mine in pairs:
                for name, p in mine.named_parameters():
                    getattr(theirs, name).copy_(p)
        n_ours = sum(p.numel() for p in ours.parameters())
        n_theirs = sum(p.numel() for p in self.parameters())
        if n_ours != n_theirs:
            raise RuntimeError(f"PyG block has {n_theirs} parameters, ours {n_ours}: not the same architecture")

    def forward(self, x: Tensor, edge_index: Tensor, mask: Tensor, edge_emb: Tensor) -> Tensor:
        h = F.relu(self.norm(x)) * mask
        return self.conv(h, edge_index, edge_emb.squeeze(-1))


class PyGRevGNN(_HeadMixin, nn.Module):
    """The same RevGNN with PyG's ``GroupAddRev`` and ``GENConv`` in its blocks."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from torch_geometric.nn import GroupAddRev

        base = _check_reversible(model, "pyg")
        layers = []
        for layer in base.layers:
            blocks = nn.ModuleList(_PyGBlock(block) for block in layer.gnn_modules)
            layers.append(GroupAddRev(blocks, split_dim=-1))
        base.layers = nn.ModuleList(layers)
        self.base = base
        self._graph: Optional[dgl.DGLGraph] = None
        self._edge_index: Optional[Tensor] = None

    def edge_index(self, b: GraphBatch) -> Tensor:
        """``(2, E)`` source/destination indices, PyG's format (made on first use per graph)."""
        if self._graph is not b.graph:
            src, dst = b.graph.edges()
            self._graph, self._edge_index = b.graph, torch.stack([src, dst])
        return self._edge_index

    def forward(self, b: GraphBatch) -> Tensor:
        h, e, mask = self._encode(b)
        # PyG splits the extra arguments whose last dimension equals the width (the mask) and
        # passes the others whole: a trailing unit dimension keeps the (E, D) edge embedding
        # whole, so that each group's GENConv projects all of it, as ours does. No copy.
        e = e.unsqueeze(-1)
        edge_index = self.edge_index(b)
        for layer in self.base.layers:
            h = layer(h, edge_index, mask, e)
        return self._head(h)


def pyg_available() -> Optional[str]:
    """None if PyTorch Geometric can run here, else why not."""
    try:
        import torch_geometric.nn  # noqa: F401
    except Exception as err:  # not installed, or built against another torch
        return f"torch_geometric is not usable here ({type(err).__name__}: {err}); pip install torch_geometric"
    return None


def _wrap_dgl(model: nn.Module, arguments: Mapping[str, Any]) -> nn.Module:
    return DGLRevGNN(model)


def _wrap_pyg(model: nn.Module, arguments: Mapping[str, Any]) -> nn.Module:
    return PyGRevGNN(model)


register_variant("dgl", _wrap_dgl)
register_variant("pyg", _wrap_pyg, available=pyg_available)
