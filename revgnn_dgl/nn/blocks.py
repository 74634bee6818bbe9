"""The pre-activation block shared by reversible and residual GNNs, and DeeperGCN's res+ layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch.nn.functional as F
from torch import Tensor, nn

from .dropout import SharedDropout
from .norm import make_norm

if TYPE_CHECKING:  # annotations only: the blocks run on torch alone, whatever the graph is
    import dgl


class PreActivationBlock(nn.Module):
    r"""``norm -> ReLU -> shared dropout -> conv``: the function :math:`f` of one layer.

    This is the per-group function of RevGNN's reversible blocks and the residual branch of
    DeeperGCN's res+ layer, so reversible and residual models built from it compute the same
    layers and differ only in how layers are connected.

    Parameters
    ----------
    conv : nn.Module
        A DGL conv with ``forward(graph, feat, *args, **kwargs)`` mapping ``channels`` to
        ``channels``.
    channels : int
        Width of the block's input (the norm's width).
    norm : str
        ``layer``, ``batch`` or ``none``.
    dropout : float
        Drop probability of the :class:`SharedDropout` applied with the caller's mask.
    independent : bool
        Draw a fresh dropout mask at every call instead (the caller's mask is then ignored and
        may be ``None``). Inside a :class:`~revgnn_dgl.nn.GroupRevRes` block the random-number
        state is recorded and replayed, so the memory-saving backward recomputes the same mask.
    """

    def __init__(
        self, conv: nn.Module, channels: int, norm: str = "layer", dropout: float = 0.0, independent: bool = False
    ) -> None:
        super().__init__()
        self.norm = make_norm(norm, channels)
        self.act = nn.ReLU()
        self.dropout = SharedDropout(dropout)
        self.independent = independent
        self.conv = conv

    def reset_parameters(self) -> None:
        for module in (self.norm, self.conv):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(
        self, graph: dgl.DGLGraph, feat: Tensor, dropout_mask: Optional[Tensor] = None, *args: Any, **kwargs: Any
    ) -> Tensor:
        h = self.act(self.norm(feat))
        if self.independent:
            h = F.dropout(h, self.dropout.p, self.training)
        else:
            h = self.dropout(h, dropout_mask)
        return self.conv(graph, h, *args, **kwargs)


class ResBlock(nn.Module):
    r"""DeeperGCN's res+ residual layer: :math:`x' = x + f(x)` with ordinary autograd.

    The non-reversible baseline: with the same :class:`PreActivationBlock` as a RevGNN layer,
    it stores every activation for the backward pass, so its memory grows with depth.

    Parameters
    ----------
    block : nn.Module
        The residual branch :math:`f`, ``forward(graph, feat, *args, **kwargs)``.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def reset_parameters(self) -> None:
        if hasattr(self.block, "reset_parameters"):
            self.block.reset_parameters()

    def forward(self, graph: dgl.DGLGraph, feat: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return feat + self.block(graph, feat, *args, **kwargs)
