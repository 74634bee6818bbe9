"""RevGAT: the paper's reversible graph attention network for ogbn-arxiv (74.02 ± 0.18 test accuracy).

The released model (``deep_gcns_torch/examples/ogb_eff/ogbn_arxiv_dgl/model_rev.py``, command
``--use-norm --use-labels --n-label-iters=1 --no-attn-dst --edge-drop=0.3 --input-drop=0.25
--n-layers 5 --dropout 0.75 --n-hidden 256 --group 2``, 3 heads) rebuilt on this package's
:class:`~revgnn_dgl.nn.GATConv` and :class:`~revgnn_dgl.nn.GroupRevRes`. With label reuse its
input is the 128 node features plus a 40-dim one-hot of known training labels
(:func:`add_label_feats`), and it has exactly 2,098,256 parameters.

State-dict keys follow the official module's except inside the reversible layers and for the
output bias (see :func:`official_revgat_key_map`):

==============================================  ==============================================
official                                        revgnn_dgl
==============================================  ==============================================
``convs.{0, L-1}.{fc.weight, attn_l, ...}``     the same
``convs.{l}._fn.Fms.{g}.norm.*``                ``convs.{l}.gnn_modules.{g}.norm.*``
``convs.{l}._fn.Fms.{g}.conv.*``                ``convs.{l}.gnn_modules.{g}.conv.*``
``norm.*``                                      the same
``bias_last.bias``                              ``bias_last``
==============================================  ==============================================
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Mapping, Optional

import dgl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from ..nn import GATConv, GraphInputError, GroupRevRes, PreActivationBlock, SharedDropout
from ..nn.norm import NORMS, make_norm


class RevGAT(nn.Module):
    r"""The released RevGAT: GAT layers with grouped reversible middle layers.

    .. math::
        h^{(0)} &= \mathrm{GAT}_0(\mathrm{Dropout}_{p_\mathrm{in}}(x)) \\
        h^{(l)} &= \mathrm{GroupRevRes}_l\big(h^{(l-1)}\big), \quad l = 1, \dots, L-2,
            \quad f_{l,g} = \mathrm{GAT}_{l,g} \circ \mathrm{SharedDropout} \circ \mathrm{ReLU}
            \circ \mathrm{Norm} \\
        y &= \mathrm{mean}_\mathrm{heads}\,\mathrm{GAT}_{L-1}\big(\mathrm{Dropout}_p(
            \mathrm{ReLU}(\mathrm{Norm}(h^{(L-2)})))\big) + b

    where Norm is BatchNorm in the release (``norm='batch'``), or LayerNorm or nothing.

    Every GAT layer has a residual projection, no destination attention term (by default) and
    the symmetric degree normalisation (by default); hidden layers have ``heads`` heads of width
    ``hidden``, flattened between layers; the last has one head of width ``out_feats``, plus a
    learned output bias :math:`b`. Each reversible layer splits its
    ``heads * hidden`` channels into ``groups`` groups whose GAT maps ``heads * hidden / groups``
    channels to ``heads`` heads of ``hidden / groups``.

    Randomness per forward pass (training mode only): input dropout; one dropout mask of shape
    ``(N, heads * hidden)`` shared by every reversible layer (each group gets its channel slice);
    one random edge permutation per layer for edge dropout, passed (as the seed of its own
    generator) identically to every group of the layer, so the memory-saving backward recomputes
    exactly the same function and keeps 8 bytes a layer, not ``8 E``; ordinary
    dropout before the last layer.

    Parameters
    ----------
    in_feats : int
        Node input width (features, plus ``out_feats`` with label reuse).
    out_feats : int
        Number of classes.
    hidden : int
        Width per head of the hidden layers (divisible by ``groups``).
    num_layers : int
        Number of GAT layers :math:`L \ge 2` (the first and last are ordinary, the rest reversible).
    heads : int
        Attention heads of the hidden layers.
    groups : int
        Channel groups of each reversible layer.
    dropout : float
        Drop probability of the shared mask and of the dropout before the last layer.
    input_drop : float
        Drop probability on the input features.
    attn_drop : float
        Dropout on attention weights (the release uses 0).
    edge_drop : float
        Fraction of edges dropped per layer and training step.
    use_attn_dst : bool
        Include the destination term in the attention logits (the release does not).
    use_symmetric_norm : bool
        Degree normalisation of every GAT layer (see :class:`~revgnn_dgl.nn.GATConv`).
    norm : str
        Normalisation of every reversible block and before the last layer: ``'batch'`` (the
        release), ``'layer'`` or ``'none'``. On the small Planetoid graphs, whose 120-140
        training labels are few next to the nodes BatchNorm averages over, ``'layer'`` trains
        better (see ``docs/revgat_results.md``).
    reinit_groups : bool
        Re-initialise each group's copy of the block; ``False`` keeps the identical copies of the
        official code.
    disable : bool
        Run the reversible layers with ordinary autograd (stores every activation): the baseline.

    Examples
    --------
    >>> import dgl, torch
    >>> g = dgl.add_self_loop(dgl.rand_graph(12, 40))
    >>> model = RevGAT(in_feats=6, out_feats=3, hidden=8, num_layers=4, heads=2)
    >>> model(g, torch.randn(12, 6)).shape
    torch.Size([12, 3])

    The defaults are the released ogbn-arxiv model (with label reuse, ``in_feats = 128 + 40``):

    >>> sum(p.numel() for p in RevGAT(128 + 40, 40).parameters())
    2098256
    """

    def __init__(
        self,
        in_feats: int,
        out_feats: int,
        hidden: int = 256,
        num_layers: int = 5,
        heads: int = 3,
        groups: int = 2,
        dropout: float = 0.75,
        input_drop: float = 0.25,
        attn_drop: float = 0.0,
        edge_drop: float = 0.3,
        use_attn_dst: bool = False,
        use_symmetric_norm: bool = True,
        norm: str = "batch",
        reinit_groups: bool = True,
        disable: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 2:
            raise ConfigError(f"RevGAT needs num_layers >= 2 (a first and a last GAT layer), got {num_layers}.")
        if hidden % groups:
            raise ConfigError(f"RevGAT: hidden={hidden} is not divisible by groups={groups}.")
        if not 0.0 <= input_drop < 1.0:
            raise ConfigError(f"RevGAT: input_drop must be in [0, 1), got {input_drop}.")
        if norm not in NORMS:
            raise ConfigError(f"RevGAT: unknown norm {norm!r}; choose one of {', '.join(NORMS)}.")
        self.in_feats, self.out_feats, self.hidden = in_feats, out_feats, hidden
        self.num_layers, self.heads, self.groups = num_layers, heads, groups
        self.input_drop, self.edge_drop = input_drop, edge_drop
        width = heads * hidden
        gat = dict(
            attn_drop=attn_drop,
            edge_drop=edge_drop,
            use_attn_dst=use_attn_dst,
            use_symmetric_norm=use_symmetric_norm,
            residual=True,
        )

        self.convs = nn.ModuleList([GATConv(in_feats, hidden, heads, merge="flatten", **gat)])
        for _ in range(num_layers - 2):
            conv = GATConv(width // groups, hidden // groups, heads, merge="flatten", **gat)
            block = PreActivationBlock(conv, width // groups, norm=norm, dropout=dropout)
            self.convs.append(GroupRevRes(block, groups, reinit_copies=reinit_groups, disable=disable))
        self.convs.append(GATConv(width, out_feats, 1, merge="mean", **gat))
        self.norm = make_norm(norm, width)
        self.dropout = SharedDropout(dropout)
        self.bias_last = nn.Parameter(torch.zeros(out_feats))

    def reset_parameters(self) -> None:
        """Re-initialise every layer (GAT weights Xavier-normal, norms and the output bias reset)."""
        for module in self.modules():
            if isinstance(module, (GATConv, nn.BatchNorm1d, nn.LayerNorm)):
                module.reset_parameters()
        nn.init.zeros_(self.bias_last)

    def set_disable(self, disable: bool) -> None:
        """Switch every reversible layer between the memory-saving and the plain autograd path."""
        for layer in self.convs:
            if isinstance(layer, GroupRevRes):
                layer.disable = disable

    def edge_seeds(self) -> List[Optional[Tensor]]:
        """One seed per layer for its random edge permutation (training with edge dropout), else ``None`` for each.

        A seed, not the permutation: a reversible layer keeps its inputs for the backward pass,
        and 8 bytes a layer keep memory flat in depth where ``8 E`` bytes a layer would not.
        """
        if not (self.training and self.edge_drop > 0):
            return [None] * self.num_layers
        return list(torch.randint(0, 2**62, (self.num_layers, 1)))

    def forward(self, graph: dgl.DGLGraph, feat: Tensor) -> Tensor:
        """Logits of shape ``(N, out_feats)``.

        Parameters
        ----------
        graph : DGLGraph
            The graph (with self-loops, as the released preprocessing adds them).
        feat : Tensor
            ``(N, in_feats)`` node inputs.
        """
        if feat.dim() != 2 or feat.shape != (graph.num_nodes(), self.in_feats):
            raise GraphInputError(
                f"RevGAT expects node inputs of shape ({graph.num_nodes()}, {self.in_feats}), got {tuple(feat.shape)}."
            )
        h = F.dropout(feat, self.input_drop, self.training)
        seeds = self.edge_seeds()
        h = self.convs[0](graph, h, edge_seed=seeds[0])
        mask = self.dropout.sample_mask(h)
        for layer, seed in zip(self.convs[1:-1], seeds[1:-1]):
            # The mask is split per group (its width is the layer's); the permutation's seed, a
            # keyword, reaches every group whole.
            h = layer(graph, h, mask, edge_seed=seed)
        h = F.dropout(F.relu(self.norm(h)), self.dropout.p, self.training)
        return self.convs[-1](graph, h, edge_seed=seeds[-1]) + self.bias_last


# ------------------------------------------------------------------------- label reuse
def _class_ids(labels: Tensor, idx: Tensor) -> Tensor:
    labels = labels.reshape(labels.shape[0], -1) if labels.dim() > 1 else labels.unsqueeze(-1)
    if labels.shape[1] != 1:
        raise GraphInputError(f"labels must be class ids of shape (N,) or (N, 1), got {tuple(labels.shape)}.")
    return labels[idx, 0].long()


def add_label_feats(feat: Tensor, labels: Tensor, idx: Tensor, n_classes: int) -> Tensor:
    """Label reuse: append a one-hot of the labels of nodes ``idx`` (zeros elsewhere) to ``feat``.

    Parameters
    ----------
    feat : Tensor
        ``(N, F)`` node features.
    labels : Tensor
        ``(N,)`` or ``(N, 1)`` integer class ids (OGB gives the latter).
    idx : Tensor
        Nodes whose label is revealed (in training, a random part of the training nodes).
    n_classes : int
        Number of classes :math:`C`.

    Returns
    -------
    Tensor
        ``(N, F + C)``, of ``feat``'s dtype and device.

    Examples
    --------
    >>> add_label_feats(torch.zeros(3, 1), torch.tensor([2, 0, 1]), torch.tensor([0, 2]), 3)
    tensor([[0., 0., 0., 1.],
            [0., 0., 0., 0.],
            [0., 0., 1., 0.]])
    """
    onehot = feat.new_zeros(feat.shape[0], n_classes)
    onehot[idx, _class_ids(labels, idx).to(feat.device)] = 1
    return torch.cat([feat, onehot], dim=-1)


def refill_label_feats(feat: Tensor, pred: Tensor, idx: Tensor, n_classes: int) -> Tensor:
    """Label-reuse iteration: overwrite the label channels of nodes ``idx`` by ``softmax(pred)``.

    In place on ``feat`` (returned too), as the official ``--n-label-iters`` loop does with
    detached predictions.

    Examples
    --------
    >>> feat = add_label_feats(torch.zeros(2, 1), torch.tensor([1, 0]), torch.tensor([0]), 2)
    >>> refill_label_feats(feat, torch.zeros(2, 2), torch.tensor([1]), 2)
    tensor([[0.0000, 0.0000, 1.0000],
            [0.0000, 0.5000, 0.5000]])
    """
    feat[idx, -n_classes:] = F.softmax(pred[idx].detach(), dim=-1).to(feat.dtype)
    return feat


# ------------------------------------------------------------------------- official weights
def official_revgat_key_map(num_layers: int, groups: int = 2, use_attn_dst: bool = False) -> Dict[str, str]:
    """The state-dict keys of an official RevGAT (``model_rev.RevGAT``) and the keys they become here.

    Covers parameters and BatchNorm buffers (``running_mean``, ``running_var``,
    ``num_batches_tracked``); the official module registers nothing else.

    Parameters
    ----------
    num_layers : int
        ``--n-layers`` (5 in the release).
    groups : int
        ``--group`` (2 in the release).
    use_attn_dst : bool
        Whether the model has the destination attention term (``False`` with ``--no-attn-dst``).

    Returns
    -------
    dict
        ``official_key -> our_key``.

    Examples
    --------
    >>> official_revgat_key_map(5)["convs.2._fn.Fms.1.conv.res_fc.weight"]
    'convs.2.gnn_modules.1.conv.res_fc.weight'
    >>> official_revgat_key_map(5)["bias_last.bias"]
    'bias_last'
    """
    conv_keys = ["fc.weight", "attn_l"] + (["attn_r"] if use_attn_dst else []) + ["res_fc.weight"]
    norm_keys = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    mapping: Dict[str, str] = {}
    for layer in range(num_layers):
        if layer in (0, num_layers - 1):
            mapping.update({f"convs.{layer}.{k}": f"convs.{layer}.{k}" for k in conv_keys})
            continue
        for g in range(groups):
            theirs, ours = f"convs.{layer}._fn.Fms.{g}", f"convs.{layer}.gnn_modules.{g}"
            mapping.update({f"{theirs}.norm.{k}": f"{ours}.norm.{k}" for k in norm_keys})
            mapping.update({f"{theirs}.conv.{k}": f"{ours}.conv.{k}" for k in conv_keys})
    mapping.update({f"norm.{k}": f"norm.{k}" for k in norm_keys})
    mapping["bias_last.bias"] = "bias_last"
    return mapping


def convert_official_revgat_state_dict(state_dict: Mapping[str, Tensor], model: RevGAT) -> "OrderedDict[str, Tensor]":
    """Rename an official RevGAT state dict to ``model``'s keys, checking every key and shape.

    Parameters
    ----------
    state_dict : mapping
        The official model's ``state_dict()`` (a ``module.`` prefix from DataParallel is removed).
    model : RevGAT
        A model built with the official configuration (its attention options decide the keys).

    Returns
    -------
    OrderedDict
        In the order of ``model.state_dict()``, ready for ``load_state_dict(strict=True)``.

    Raises
    ------
    CheckpointError
        When a key is missing or unexpected, or a shape differs (the first offender is named).
    """
    first_conv = model.convs[0]
    key_map = official_revgat_key_map(model.num_layers, model.groups, first_conv.attn_r is not None)
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    missing = [k for k in key_map if k not in state]
    if missing:
        raise CheckpointError(
            f"the official RevGAT state dict lacks {len(missing)} key(s) of a {model.num_layers}-layer, "
            f"{model.groups}-group model, the first being {missing[0]!r}; was it trained with other options?"
        )
    unexpected = [k for k in state if k not in key_map]
    if unexpected:
        raise CheckpointError(
            f"the official RevGAT state dict has {len(unexpected)} key(s) this model does not, the first being "
            f"{unexpected[0]!r}; build the model with the checkpoint's n_layers, group and attention options."
        )
    expected = model.state_dict()
    converted = {}
    for theirs, ours in key_map.items():
        value = state[theirs]
        if tuple(value.shape) != tuple(expected[ours].shape):
            raise CheckpointError(
                f"official key {theirs!r} has shape {tuple(value.shape)} but our {ours!r} has "
                f"{tuple(expected[ours].shape)}; build the model with the checkpoint's widths."
            )
        converted[ours] = value.detach().to(dtype=expected[ours].dtype, device="cpu")
    return OrderedDict((k, converted[k]) for k in expected)
