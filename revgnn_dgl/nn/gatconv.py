"""The graph attention convolution of the released RevGAT (ogbn-arxiv), as a DGL module."""

from __future__ import annotations

from typing import Optional

import dgl
import dgl.function as fn
import torch
import torch.nn.functional as F
from dgl.nn.functional import edge_softmax
from torch import Tensor, nn

from ..errors import ConfigError, GraphInputError

#: Source-node data of a block that holds the sources' out-degrees in the whole graph (set by
#: :class:`~revgnn_dgl.nn.streaming.StreamedConv`; the block itself sees only some out-edges).
FULL_OUT_DEGREES = "_full_out_degrees"

#: How :class:`GATConv` returns its heads.
MERGES = ("none", "flatten", "mean")


class GATConv(nn.Module):
    r"""Multi-head graph attention with the options of the released RevGAT.

    For every destination node :math:`i`, head :math:`k` and in-neighbour :math:`j`:

    .. math::
        z_j &= W^{(k)} x_j \cdot d^{\mathrm{out}}_j{}^{-1/2} \\
        e_{ij} &= \mathrm{LeakyReLU}\big(a_l^{(k)\top} z_j + a_r^{(k)\top} W^{(k)} x_i\big) \\
        \alpha_{ij} &= \mathrm{softmax}_{j \in \mathcal{N}(i)}(e_{ij}) \\
        h_i &= d^{\mathrm{in}}_i{}^{1/2} \sum_{j \in \mathcal{N}(i)} \alpha_{ij} z_j
               + W_{\mathrm{res}}^{(k)} x_i

    The degree factors (:math:`d` clamped to at least 1) appear only with
    ``use_symmetric_norm=True``: source features are scaled *before* the attention logits are
    computed, the aggregate after, exactly where the official ``model_rev.py`` places them. The
    destination term :math:`a_r` exists only with ``use_attn_dst=True`` (the released model has
    none) and uses the unscaled projection, as the official code. The residual projection exists
    only with ``residual=True``. The layer has no bias (the released model adds one output bias).

    **Edge dropout.** In training mode with ``edge_drop > 0``, a random permutation ``perm`` of
    the edge ids decides which edges are dropped: the first ``int(E * edge_drop)`` are, and the
    attention softmax runs over the remaining edges only. ``perm`` is an explicit argument, so a
    caller that recomputes the layer (e.g. :class:`~revgnn_dgl.nn.GroupRevRes`'s backward pass)
    passes the same tensor and gets the same edges; without it the layer draws one with
    ``torch.randperm``. The degree factors always use the full graph's degrees (as the official
    code). In eval mode, or with ``edge_drop == 0``, every edge is used and ``perm`` is ignored.

    **Cost.** Messages are never materialised per edge: the only per-edge tensors are the
    attention logits and weights, ``(E, heads, 1)``; the weighted sum is DGL's fused
    ``u_mul_e``/``sum`` kernel. Dropped edges are removed from the graph the kernels run on
    (one edge subgraph per call), not zero-filled.

    Nodes without (kept) in-edges aggregate to zero.

    Parameters
    ----------
    in_feats : int
        Input node feature width.
    out_feats : int
        Output width per head.
    num_heads : int
        Number of attention heads.
    attn_drop : float
        Dropout on the attention weights (``torch`` dropout: under a reversible block it is
        replayed through the random-number state; the released model uses 0).
    edge_drop : float
        Fraction of edges dropped per training step, in ``[0, 1)``.
    negative_slope : float
        Slope of the LeakyReLU on the attention logits.
    use_attn_dst : bool
        Include the destination term :math:`a_r` in the attention logits.
    residual : bool
        Add the residual projection :math:`W_{\mathrm{res}} x_i`.
    use_symmetric_norm : bool
        Scale by the degree powers shown above.
    merge : str
        Output of the heads: ``'none'`` ``(N, heads, out_feats)``, ``'flatten'``
        ``(N, heads * out_feats)``, or ``'mean'`` ``(N, out_feats)``.

    Examples
    --------
    >>> import dgl, torch
    >>> from revgnn_dgl.nn import GATConv
    >>> g = dgl.add_self_loop(dgl.rand_graph(6, 12))
    >>> conv = GATConv(5, 4, num_heads=3, use_attn_dst=False, residual=True, use_symmetric_norm=True)
    >>> conv(g, torch.randn(6, 5)).shape
    torch.Size([6, 3, 4])
    >>> conv.edge_drop = 0.5  # in training mode, half the edges are dropped
    >>> perm = torch.randperm(g.num_edges())
    >>> x = torch.randn(6, 5)
    >>> torch.equal(conv(g, x, perm), conv(g, x, perm))  # the same edges are dropped
    True
    """

    def __init__(
        self,
        in_feats: int,
        out_feats: int,
        num_heads: int = 1,
        attn_drop: float = 0.0,
        edge_drop: float = 0.0,
        negative_slope: float = 0.2,
        use_attn_dst: bool = True,
        residual: bool = False,
        use_symmetric_norm: bool = False,
        merge: str = "none",
    ) -> None:
        super().__init__()
        if merge not in MERGES:
            raise ConfigError(f"GATConv: unknown merge {merge!r}; choose one of {', '.join(MERGES)}.")
        if not 0.0 <= edge_drop < 1.0:
            raise ConfigError(f"GATConv: edge_drop must be in [0, 1), got {edge_drop}.")
        if not 0.0 <= attn_drop < 1.0:
            raise ConfigError(f"GATConv: attn_drop must be in [0, 1), got {attn_drop}.")
        self.in_feats, self.out_feats, self.num_heads = in_feats, out_feats, num_heads
        self.attn_drop, self.edge_drop, self.negative_slope = attn_drop, edge_drop, negative_slope
        self.use_symmetric_norm, self.merge = use_symmetric_norm, merge
        self.fc = nn.Linear(in_feats, num_heads * out_feats, bias=False)
        self.attn_l = nn.Parameter(torch.empty(1, num_heads, out_feats))
        self.attn_r = nn.Parameter(torch.empty(1, num_heads, out_feats)) if use_attn_dst else None
        self.res_fc = nn.Linear(in_feats, num_heads * out_feats, bias=False) if residual else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal initialisation with the ReLU gain, as the official code."""
        gain = nn.init.calculate_gain("relu")
        nn.init.xavier_normal_(self.fc.weight, gain=gain)
        nn.init.xavier_normal_(self.attn_l, gain=gain)
        if self.attn_r is not None:
            nn.init.xavier_normal_(self.attn_r, gain=gain)
        if self.res_fc is not None:
            nn.init.xavier_normal_(self.res_fc.weight, gain=gain)

    def extra_repr(self) -> str:
        return (
            f"{self.in_feats}, {self.out_feats}, num_heads={self.num_heads}, edge_drop={self.edge_drop}, "
            f"use_attn_dst={self.attn_r is not None}, residual={self.res_fc is not None}, "
            f"use_symmetric_norm={self.use_symmetric_norm}, merge={self.merge!r}"
        )

    def forward(
        self, graph: dgl.DGLGraph, feat: Tensor, perm: Optional[Tensor] = None, edge_seed: Optional[Tensor] = None
    ) -> Tensor:
        """Compute the convolution.

        Parameters
        ----------
        graph : DGLGraph
            A homogeneous graph or a block (messages flow from source to destination; the first
            ``num_dst_nodes`` rows of ``feat`` are the destination nodes, DGL's convention).
        feat : Tensor
            Node features of shape ``(num_src_nodes, in_feats)``.
        perm : Tensor, optional
            A permutation of the edge ids ``(E,)`` choosing the dropped edges (see the class
            docstring); used only in training mode with ``edge_drop > 0``.
        edge_seed : Tensor, optional
            Instead of ``perm``: a one-element integer tensor seeding the permutation's own
            generator. Eight bytes instead of ``8 E``: what a deep reversible stack keeps per
            layer for its backward pass, so that memory stays flat in depth.

        Returns
        -------
        Tensor
            ``(num_dst_nodes, num_heads, out_feats)``, flattened or averaged over the heads
            according to ``merge``.
        """
        self._check(graph, feat)
        heads, width = self.num_heads, self.out_feats
        num_dst = graph.num_dst_nodes()
        with graph.local_scope():
            proj = self.fc(feat).view(-1, heads, width)
            feat_src = proj
            if self.use_symmetric_norm:
                # A block of in-edges (streamed inference) carries its sources' whole-graph out-degrees.
                out_degrees = (
                    graph.srcdata[FULL_OUT_DEGREES] if FULL_OUT_DEGREES in graph.srcdata else graph.out_degrees()
                )
                feat_src = feat_src * _degree_power(out_degrees, -0.5, feat)
            msg_graph = self._message_graph(graph, perm, edge_seed, feat.device)
            if msg_graph.num_edges() == 0:
                out = feat_src.new_zeros(num_dst, heads, width)
            else:
                out = self._attend(msg_graph, feat_src, proj[:num_dst])
            if self.use_symmetric_norm:
                out = out * _degree_power(graph.in_degrees(), 0.5, feat)
            if self.res_fc is not None:
                out = out + self.res_fc(feat[:num_dst]).view(num_dst, heads, width)
        if self.merge == "flatten":
            return out.flatten(1)
        if self.merge == "mean":
            return out.mean(1)
        return out

    def _attend(self, graph: dgl.DGLGraph, feat_src: Tensor, proj_dst: Tensor) -> Tensor:
        """:math:`\\sum_j \\alpha_{ij} z_j` on ``graph`` (called inside a local scope or on an edge subgraph)."""
        graph.srcdata.update({"ft": feat_src, "el": (feat_src * self.attn_l).sum(-1, keepdim=True)})
        if self.attn_r is not None:
            graph.dstdata["er"] = (proj_dst * self.attn_r).sum(-1, keepdim=True)
            graph.apply_edges(fn.u_add_v("el", "er", "e"))
        else:
            graph.apply_edges(fn.copy_u("el", "e"))
        attn = edge_softmax(graph, F.leaky_relu(graph.edata.pop("e"), self.negative_slope))
        graph.edata["a"] = F.dropout(attn, self.attn_drop, self.training) if self.attn_drop else attn
        graph.update_all(fn.u_mul_e("ft", "a", "m"), fn.sum("m", "ft"))
        return graph.dstdata["ft"]

    def _check(self, graph: dgl.DGLGraph, feat: Tensor) -> None:
        if not isinstance(feat, Tensor) or feat.dim() != 2 or feat.shape[-1] != self.in_feats:
            got = tuple(feat.shape) if isinstance(feat, Tensor) else type(feat).__name__
            raise GraphInputError(f"GATConv expects node features of shape (num_nodes, {self.in_feats}), got {got}.")
        if feat.shape[0] != graph.num_src_nodes():
            raise GraphInputError(
                f"GATConv: the graph has {graph.num_src_nodes()} source nodes but the features have {feat.shape[0]} rows."
            )

    def _message_graph(
        self, graph: dgl.DGLGraph, perm: Optional[Tensor], edge_seed: Optional[Tensor], device: torch.device
    ) -> dgl.DGLGraph:
        """The graph the attention runs on: ``graph``, or its kept edges under edge dropout."""
        if not (self.training and self.edge_drop > 0):
            return graph
        num_edges = graph.num_edges()
        if perm is None and edge_seed is not None:
            perm = seeded_permutation(num_edges, edge_seed, device)
        elif perm is None:
            perm = torch.randperm(num_edges, device=device)
        elif perm.dim() != 1 or perm.shape[0] != num_edges or perm.dtype not in (torch.int32, torch.int64):
            raise GraphInputError(
                f"GATConv: perm must be an integer permutation of the {num_edges} edge ids, shape ({num_edges},), "
                f"got {perm.dtype} of shape {tuple(perm.shape)}."
            )
        kept = perm[int(num_edges * self.edge_drop) :]
        return dgl.edge_subgraph(graph, kept.to(graph.idtype), relabel_nodes=False, store_ids=False)


def seeded_permutation(n: int, seed: Tensor, device: torch.device) -> Tensor:
    """``randperm(n)`` from a generator seeded by the one-element integer tensor ``seed``."""
    if seed.numel() != 1 or seed.dtype.is_floating_point:
        raise GraphInputError(
            f"GATConv: edge_seed must be a one-element integer tensor, got {seed.dtype} {tuple(seed.shape)}."
        )
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed.item()))
    return torch.randperm(n, generator=generator, device=device)


def _degree_power(degrees: Tensor, exponent: float, like: Tensor) -> Tensor:
    """``clamp(d, 1) ** exponent`` shaped ``(N, 1, 1)`` to scale ``(N, heads, width)`` features."""
    return degrees.to(like.dtype).clamp(min=1).pow(exponent).view(-1, 1, 1)
