"""GCNII's initial-residual, identity-mapping convolution, fused, for reversible and residual blocks."""

from __future__ import annotations

import math

import dgl
import dgl.function as fn
import torch
from torch import Tensor, nn

from ..errors import ConfigError, GraphInputError

GCNII_MODES = ("gcnii", "appnp")


def gcnii_beta(layer: int, lambda_: float) -> float:
    r"""GCNII's identity-mapping strength of layer ``layer`` (1-based): :math:`\beta_l = \log(\lambda/l + 1)`.

    >>> round(gcnii_beta(1, 0.5), 4), round(gcnii_beta(64, 0.5), 4)
    (0.4055, 0.0078)
    """
    if layer < 1:
        raise ConfigError(f"gcnii_beta: layers count from 1, got {layer}.")
    return math.log(lambda_ / layer + 1.0)


class GCNIIConv(nn.Module):
    r"""GCNII's layer (Chen et al., "Simple and Deep Graph Convolutional Networks", ICML 2020)
    without its activation, scaled by a step for use as the function :math:`f` of a block.

    .. math::
        S &= (1-\alpha)\, \hat P X + \alpha H_0, \qquad
        \hat P = \tilde D^{-1/2} (A + I) \tilde D^{-1/2}, \\
        f(X, H_0) &= \tau \, S \big((1-\beta_l) I + \beta_l W\big) \quad (\texttt{gcnii}), \qquad
        f(X, H_0) = \tau \, S \quad (\texttt{appnp}),

    with :math:`\beta_l = \log(\lambda / l + 1)` (:func:`gcnii_beta`) and :math:`\tilde D` the
    degrees of :math:`A + I`. The self-loop of :math:`\hat P` is implicit (``add_self_loop=True``):
    :math:`\hat P X = \tilde D^{-1/2} A \tilde D^{-1/2} X + X / \tilde D`, so the graph is used as
    given (a graph that already has one self-loop per node should pass ``add_self_loop=False``).
    :math:`H_0` is the initial representation (the encoder's output, or one group's slice of it),
    a constant input of every layer: in a :class:`~revgnn_dgl.nn.GroupRevRes` block it is passed
    as a positional argument, split per group, and gets its exact gradient from the
    memory-saving backward.

    Parameters
    ----------
    width : int
        Input and output width (one group's width in a reversible block).
    layer : int
        The layer's index :math:`l \ge 1` (sets :math:`\beta_l`).
    alpha : float
        Initial-residual weight :math:`\alpha \in [0, 1]`.
    lambda_ : float
        :math:`\lambda > 0` of :math:`\beta_l`.
    mode : str
        ``gcnii`` (with :math:`W`) or ``appnp`` (propagation only, no weights: APPNP's step).
    step : float
        The scale :math:`\tau` of the output, the step a residual or reversible block takes.
    add_self_loop : bool
        Whether :math:`\hat P` adds the identity to the graph's adjacency.

    Notes
    -----
    :math:`W` is drawn uniformly in :math:`\pm 1/\sqrt{\text{width}}`, without bias, as in the
    GCNII paper's code (DGL's ``GCN2Conv`` draws it from a unit normal, which trains worse).

    Examples
    --------
    >>> import dgl, torch
    >>> g = dgl.rand_graph(10, 30)
    >>> conv = GCNIIConv(8, layer=3, alpha=0.1, lambda_=0.5)
    >>> conv(g, torch.randn(10, 8), torch.randn(10, 8)).shape
    torch.Size([10, 8])
    """

    def __init__(
        self,
        width: int,
        layer: int = 1,
        alpha: float = 0.1,
        lambda_: float = 0.5,
        mode: str = "gcnii",
        step: float = 1.0,
        add_self_loop: bool = True,
    ) -> None:
        super().__init__()
        if mode not in GCNII_MODES:
            raise ConfigError(f"unknown GCNII mode {mode!r}; choose one of {', '.join(GCNII_MODES)}.")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"GCNIIConv: alpha must be in [0, 1], got {alpha}.")
        if not lambda_ > 0.0:
            raise ConfigError(f"GCNIIConv: lambda_ must be positive, got {lambda_}.")
        if not math.isfinite(step):
            raise ConfigError(f"GCNIIConv: step must be finite, got {step}.")
        self.width, self.layer, self.alpha, self.lambda_ = width, layer, alpha, lambda_
        self.mode, self.step, self.add_self_loop = mode, step, add_self_loop
        self.beta = gcnii_beta(layer, lambda_)
        self.weight = nn.Parameter(torch.empty(width, width)) if mode == "gcnii" else None
        self.reset_parameters()

    def extra_repr(self) -> str:
        return (
            f"{self.width}, layer={self.layer}, alpha={self.alpha}, lambda_={self.lambda_}, beta={self.beta:.4g}, "
            f"mode={self.mode!r}, step={self.step}, add_self_loop={self.add_self_loop}"
        )

    def reset_parameters(self) -> None:
        """:math:`W \\sim U(\\pm 1/\\sqrt{\\text{width}})` (GCNII's init)."""
        if self.weight is not None:
            bound = 1.0 / math.sqrt(self.width)
            nn.init.uniform_(self.weight, -bound, bound)

    def propagate(self, graph: dgl.DGLGraph, feat: Tensor) -> Tensor:
        r""":math:`\hat P X`, the symmetric normalised adjacency (with the implicit self-loop)."""
        with graph.local_scope():
            deg = graph.in_degrees().to(feat)
            if self.add_self_loop:
                deg = deg + 1.0
            norm = deg.clamp(min=1.0).pow(-0.5).unsqueeze(-1)
            graph.srcdata["h"] = feat * norm
            graph.update_all(fn.copy_u("h", "m"), fn.sum("m", "h"))
            out = graph.dstdata["h"]
            if self.add_self_loop:
                out = out + feat * norm
            return out * norm

    def forward(self, graph: dgl.DGLGraph, feat: Tensor, feat_0: Tensor) -> Tensor:
        """:math:`f(X, H_0)` of shape ``(N, width)``.

        Parameters
        ----------
        graph : DGLGraph
            A homogeneous graph (its in-degrees normalise the propagation).
        feat : Tensor
            ``(N, width)`` node features :math:`X`.
        feat_0 : Tensor
            ``(N, width)`` initial representation :math:`H_0`.
        """
        n = graph.num_nodes()
        for name, t in (("feat", feat), ("feat_0", feat_0)):
            if not isinstance(t, Tensor) or t.shape != (n, self.width):
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise GraphInputError(f"GCNIIConv expects {name} of shape ({n}, {self.width}), got {got}.")
        with graph.local_scope():
            s = (1.0 - self.alpha) * self.propagate(graph, feat) + self.alpha * feat_0
            if self.weight is not None:
                s = (1.0 - self.beta) * s + self.beta * (s @ self.weight)
            return self.step * s if self.step != 1.0 else s
