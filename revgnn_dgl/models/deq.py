r"""DEQ-GNN: a deep-equilibrium graph neural network.

The RevGNN paper (Li et al., ICML 2021, section on weight-tied and equilibrium
models) studies a GNN of "infinite depth" whose output is the equilibrium of
one weight-tied block :math:`f_\theta` with input injection :math:`X`:

.. math::

    Z^\star = f_\theta(Z^\star, X, \mathcal G).

The block is MDEQ-style:

.. math::

    Z'     &= \mathrm{Conv}_1(Z) \\
    Z''    &= \mathrm{Norm}(Z' + X) \\
    Z'''   &= \mathrm{Conv}_2(\mathrm{Dropout}(\mathrm{ReLU}(Z''))) \\
    f(Z)   &= \mathrm{Norm}(\mathrm{ReLU}(Z''' + Z')).

The equilibrium is found by a root solver (Anderson or Broyden,
:mod:`revgnn_dgl.nn.solvers`) without building an autograd graph, and the
gradient is obtained by implicit differentiation (Bai et al., 2019): with
:math:`J = \partial f / \partial Z` at :math:`Z^\star`,

.. math::

    \frac{\partial \ell}{\partial \theta}
      = g^\top \frac{\partial f(Z^\star)}{\partial \theta},
    \qquad g = J^\top g + \frac{\partial \ell}{\partial Z^\star},

where the adjoint :math:`g` is itself a fixed point, solved with the same
solver using vector-Jacobian products. Training memory therefore is that of
one application of :math:`f`, whatever the number of solver iterations.

The paper's code for this model was never released; this is an independent
implementation of the description.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from revgnn_dgl.errors import ConfigError
from revgnn_dgl.models.deepgcn_blocks import block_from_arguments
from revgnn_dgl.nn.solvers import (
    SOLVERS,
    ConvergenceWarning,
    SolverInfo,
    fixed_point_solve,
)

__all__ = ["DEQGNN", "DEQBlock", "make_conv", "CONV_TYPES"]

CONV_TYPES = ("gen", "gcn", "sage")


class _ConvAdapter(nn.Module):
    """Gives every conv the call signature ``conv(graph, feat, edge_feat)``."""

    def __init__(self, conv: nn.Module, takes_edge_feat: bool) -> None:
        super().__init__()
        self.conv = conv
        self.takes_edge_feat = takes_edge_feat

    def forward(self, graph, feat: Tensor, edge_feat: Optional[Tensor] = None) -> Tensor:
        if self.takes_edge_feat:
            return self.conv(graph, feat, edge_feat=edge_feat)
        return self.conv(graph, feat)


def make_conv(
    kind: str,
    channels: int,
    edge_channels: int = 0,
    aggregator: str = "softmax",
    **conv_kwargs: Any,
) -> nn.Module:
    """Build a ``channels -> channels`` graph convolution for the DEQ block.

    Parameters
    ----------
    kind : {'gen', 'gcn', 'sage'}
        ``'gen'``: :class:`revgnn_dgl.nn.GENConv` (DeeperGCN's generalized
        aggregation conv, the paper's choice; takes edge features).
        ``'gcn'``: :class:`dgl.nn.GraphConv` with symmetric normalisation.
        ``'sage'``: :class:`dgl.nn.SAGEConv` with mean aggregation.
    channels : int
        Input and output width.
    edge_channels : int
        Width of edge features; only ``'gen'`` uses them.
    aggregator : str
        GENConv aggregator (``'softmax'``, ``'max'``, ...).
    **conv_kwargs
        Further GENConv options (``learn_t``, ``msg_norm``, ``mlp_layers``, ...).

    Returns
    -------
    nn.Module
        Module called as ``conv(graph, feat, edge_feat=None)``.

    Examples
    --------
    >>> import dgl, torch
    >>> from revgnn_dgl.models.deq import make_conv
    >>> conv = make_conv("gen", 8, edge_channels=3, aggregator="max")
    >>> conv(dgl.rand_graph(5, 10), torch.randn(5, 8), torch.randn(10, 3)).shape
    torch.Size([5, 8])
    """
    if kind not in CONV_TYPES:
        raise ConfigError(f"unknown conv {kind!r}; choose from {CONV_TYPES}")
    if kind != "gen" and conv_kwargs:
        raise ConfigError(f"conv={kind!r} takes no extra options, got {sorted(conv_kwargs)}")
    if kind != "gen" and edge_channels:
        raise ConfigError(f"conv={kind!r} takes no edge features; use conv='gen' or edge_channels=0")
    # The same factory as RevGNN's layers, so both models mean the same thing by a conv name.
    block = block_from_arguments(conv=kind, aggregator=aggregator, **conv_kwargs)
    conv = block.make_conv(channels, edge_channels or None, layer=1)
    return _ConvAdapter(conv, takes_edge_feat=kind == "gen")


class DEQBlock(nn.Module):
    r"""The weight-tied equilibrium block :math:`f(Z, X, \mathcal G)`.

    .. math::

        Z' = \mathrm{Conv}_1(Z),\quad
        Z'' = \mathrm{LN}(Z' + X),\quad
        Z''' = \mathrm{Conv}_2(M \odot \mathrm{ReLU}(Z'')),\quad
        f = \mathrm{LN}(\mathrm{ReLU}(Z''' + Z'))

    where :math:`M` is a fixed dropout mask (or 1).

    Examples
    --------
    >>> import dgl, torch
    >>> from revgnn_dgl.models.deq import DEQBlock
    >>> block = DEQBlock(8, conv="gen", aggregator="max")
    >>> g, z, x = dgl.rand_graph(5, 10), torch.zeros(5, 8), torch.randn(5, 8)
    >>> block(z, x, g).shape
    torch.Size([5, 8])
    """

    def __init__(
        self,
        channels: int,
        conv: str = "gen",
        edge_channels: int = 0,
        aggregator: str = "softmax",
        **conv_kwargs: Any,
    ) -> None:
        super().__init__()
        self.conv1 = make_conv(conv, channels, edge_channels, aggregator, **conv_kwargs)
        self.conv2 = make_conv(conv, channels, edge_channels, aggregator, **conv_kwargs)
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)

    def forward(
        self,
        z: Tensor,
        x: Tensor,
        graph,
        mask: Optional[Tensor] = None,
        edge_feat: Optional[Tensor] = None,
    ) -> Tensor:
        z1 = self.conv1(graph, z, edge_feat)
        z2 = self.norm1(z1 + x)
        h = F.relu(z2)
        if mask is not None:
            h = h * mask
        z3 = self.conv2(graph, h, edge_feat)
        return self.norm2(F.relu(z3 + z1))


class _ImplicitBackward(torch.autograd.Function):
    """Identity on ``z = f(Z*)`` whose backward solves the adjoint fixed point.

    This plays the role of the DEQ papers' backward hook on ``z`` but as an
    autograd node: it fires for ``backward()`` and ``torch.autograd.grad``
    alike, needs no hook handle bookkeeping across repeated forwards, and
    builds the graph of ``f`` at ``Z*`` only inside backward (so between
    forward and backward only ``Z*`` and the graph of one ``f`` application
    are held). Higher-order gradients are not supported (``once_differentiable``).
    """

    @staticmethod
    def forward(ctx, z: Tensor, z_star: Tensor, adjoint: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        ctx.adjoint = adjoint
        ctx.save_for_backward(z_star)
        return z.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> Tuple[Optional[Tensor], None, None]:
        (z_star,) = ctx.saved_tensors
        return ctx.adjoint(z_star, grad), None, None


class DEQGNN(nn.Module):
    r"""Deep-equilibrium GNN (DEQ-GNN) trained by implicit differentiation.

    .. math::

        X = \mathrm{Linear}(H_{\mathrm{in}}),\qquad
        Z^\star = f_\theta(Z^\star, X, \mathcal G),\qquad
        \hat Y = \mathrm{Linear}(\mathrm{ReLU}(\mathrm{LN}(f_\theta(Z^\star))))

    with :math:`f_\theta` the :class:`DEQBlock`. ``Z*`` is found from
    :math:`Z_0 = 0` by the root solver under ``no_grad``; one more
    differentiable application :math:`f_\theta(Z^\star)` connects the output
    to the parameters, and its backward solves
    :math:`g = J_f(Z^\star)^\top g + \partial\ell/\partial z` with the same
    solver (vector-Jacobian products via :func:`torch.autograd.grad`). The
    parameter count and the training memory do not depend on the number of
    iterations.

    Parameters
    ----------
    in_channels, hidden_channels, out_channels : int
        Input feature, hidden (equilibrium state) and output widths.
    edge_channels : int
        Edge feature width (``conv='gen'`` only); 0 for none.
    dropout : float
        Dropout rate inside the block. One Bernoulli mask is drawn per forward
        and reused at every solver iteration and in the backward solve, so
        the map whose fixed point is solved stays fixed.
    solver : {'anderson', 'broyden'}
        Root solver for the forward and backward fixed points.
    tol : float
        Tolerance on the forward relative residual
        :math:`\lVert f(Z) - Z \rVert / \lVert f(Z) \rVert`.
    max_iter : int
        Forward iteration cap; in unrolled mode the exact number of steps.
    backward_max_iter, backward_tol : optional
        Adjoint solve cap and tolerance; default to ``max_iter`` and ``tol``.
    implicit : bool
        ``True``: solver + implicit gradient. ``False``: apply the block
        ``max_iter`` times with full autograd (the memory-hungry reference).
    conv : {'gen', 'gcn', 'sage'}
        Graph convolution inside the block (see :func:`make_conv`).
    aggregator : str
        GENConv aggregator, for ``conv='gen'``.
    conv_kwargs : dict, optional
        Further GENConv options, e.g. ``{'learn_t': True}``.
    solver_kwargs : dict, optional
        Extra solver options, e.g. ``{'m': 5, 'beta': 1.0}`` for Anderson or
        ``{'memory': 20}`` for Broyden.
    species_feats : int
        Width of a one-hot species input (8 for ogbn-proteins), encoded as in
        RevGNN: ``feat | Linear(species)`` before the input encoder. 0 for none.

    Attributes
    ----------
    last_forward_info : SolverInfo or None
        Convergence report of the last forward solve (or unroll).
    last_backward_info : SolverInfo or None
        Convergence report of the last adjoint solve.

    Notes
    -----
    A solve that stops above its tolerance emits a
    :class:`revgnn_dgl.nn.solvers.ConvergenceWarning` giving the residuals,
    the iteration count and the tolerance.

    Examples
    --------
    >>> import dgl, torch
    >>> from revgnn_dgl.models.deq import DEQGNN
    >>> _ = torch.manual_seed(2)
    >>> g = dgl.rand_graph(30, 120)
    >>> model = DEQGNN(4, 16, 3, edge_channels=2, dropout=0.1, tol=1e-4, max_iter=60)
    >>> out = model(g, torch.randn(30, 4), torch.randn(120, 2))
    >>> out.shape, model.last_forward_info.converged
    (torch.Size([30, 3]), True)
    >>> out.sum().backward()
    >>> model.last_backward_info.converged
    True
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        edge_channels: int = 0,
        dropout: float = 0.0,
        solver: str = "anderson",
        tol: float = 1e-4,
        max_iter: int = 50,
        backward_max_iter: Optional[int] = None,
        backward_tol: Optional[float] = None,
        implicit: bool = True,
        conv: str = "gen",
        aggregator: str = "softmax",
        conv_kwargs: Optional[Dict[str, Any]] = None,
        solver_kwargs: Optional[Dict[str, Any]] = None,
        species_feats: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        if solver not in SOLVERS:
            raise ConfigError(f"unknown solver {solver!r}; choose from {sorted(SOLVERS)}")
        # Same node input as RevGNN's: features | Linear(species one-hot), when there is a species.
        self.species_encoder = nn.Linear(species_feats, species_feats) if species_feats else None
        self.encoder = nn.Linear(in_channels + species_feats, hidden_channels)
        self.block = DEQBlock(
            hidden_channels, conv=conv, edge_channels=edge_channels, aggregator=aggregator, **dict(conv_kwargs or {})
        )
        self.head_norm = nn.LayerNorm(hidden_channels)
        self.head = nn.Linear(hidden_channels, out_channels)
        self.dropout = dropout
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.backward_max_iter = backward_max_iter
        self.backward_tol = backward_tol
        self.implicit = implicit
        self.conv = conv
        self.solver_kwargs: Dict[str, Any] = dict(solver_kwargs or {})
        self.last_forward_info: Optional[SolverInfo] = None
        self.last_backward_info: Optional[SolverInfo] = None

    # ------------------------------------------------------------------ helpers
    def _dropout_mask(self, x: Tensor) -> Optional[Tensor]:
        # One mask per forward, reused by every iteration and by the adjoint
        # solve: a fresh mask per call would make f random and Z* undefined.
        if not self.training or self.dropout == 0.0:
            return None
        keep = 1.0 - self.dropout
        return torch.empty_like(x).bernoulli_(keep).div_(keep)

    def _solve(self, f: Callable[[Tensor], Tensor], z0: Tensor, max_iter: int, tol: float) -> Tuple[Tensor, SolverInfo]:
        return fixed_point_solve(self.solver, f, z0, max_iter=max_iter, tol=tol, warn=False, **self.solver_kwargs)

    @staticmethod
    def _warn(info: SolverInfo, phase: str) -> None:
        if not info.converged:
            warnings.warn(f"DEQGNN {phase}: {info.describe()}", ConvergenceWarning, stacklevel=3)

    def _unrolled(self, f: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
        history = []
        abs_r = rel_r = float("inf")
        for _ in range(self.max_iter):
            z_new = f(z)
            with torch.no_grad():
                abs_r = torch.linalg.vector_norm(z_new - z).item()
                f_norm = torch.linalg.vector_norm(z_new).item()
                rel_r = abs_r / f_norm if f_norm > 0 else (0.0 if abs_r == 0 else float("inf"))
            history.append(rel_r)
            z = z_new
        info = SolverInfo(
            iterations=self.max_iter,
            abs_residual=abs_r,
            rel_residual=rel_r,
            converged=rel_r <= self.tol,
            history=history,
            tol=self.tol,
            solver="unrolled",
        )
        self.last_forward_info = info
        self._warn(info, "unrolled forward")
        return z

    # ------------------------------------------------------------------ public
    def equilibrium(
        self,
        graph,
        feat: Tensor,
        edge_feat: Optional[Tensor] = None,
        species: Optional[Tensor] = None,
        z0: Optional[Tensor] = None,
    ) -> Tensor:
        """Solve for ``Z*`` (no gradient) and record ``last_forward_info``.

        Draws its own dropout mask in training mode; call in ``eval()`` mode
        (or with ``dropout=0``) to compare against another pass.

        Examples
        --------
        >>> import dgl, torch
        >>> from revgnn_dgl.models.deq import DEQGNN
        >>> _ = torch.manual_seed(2)
        >>> model = DEQGNN(4, 16, 3, tol=1e-5, max_iter=100).eval()
        >>> g, x = dgl.rand_graph(30, 120), torch.randn(30, 4)
        >>> z = model.equilibrium(g, x)
        >>> fz = model.block(z, model.encoder(x), g)
        >>> bool((fz - z).norm() <= 1e-5 * fz.norm()), model.last_forward_info.converged
        (True, True)
        """
        with torch.no_grad():
            x = self._encode(feat, species)
            mask = self._dropout_mask(x)
            z_star, _ = self._forward_solve(x, mask, graph, edge_feat, z0)
        return z_star

    def _forward_solve(
        self, x: Tensor, mask: Optional[Tensor], graph, edge_feat: Optional[Tensor], z0: Optional[Tensor]
    ) -> Tuple[Tensor, SolverInfo]:
        x_d = x.detach()
        e_d = edge_feat.detach() if edge_feat is not None else None

        def f(z: Tensor) -> Tensor:
            return self.block(z, x_d, graph, mask, e_d)

        start = torch.zeros_like(x_d) if z0 is None else z0.detach()
        z_star, info = self._solve(f, start, self.max_iter, self.tol)
        self.last_forward_info = info
        self._warn(info, "forward solve")
        return z_star, info

    def _encode(self, feat: Tensor, species: Optional[Tensor]) -> Tensor:
        if self.species_encoder is not None:
            if species is None:
                raise ConfigError("DEQGNN was built with species_feats > 0 but forward() got no species one-hot.")
            feat = torch.cat([feat, self.species_encoder(species)], dim=-1)
        return self.encoder(feat)

    def forward(
        self,
        graph,
        feat: Tensor,
        edge_feat: Optional[Tensor] = None,
        species: Optional[Tensor] = None,
        z0: Optional[Tensor] = None,
    ) -> Tensor:
        """Node logits ``(num_nodes, out_channels)``.

        Parameters
        ----------
        graph : dgl.DGLGraph
            The graph.
        feat : Tensor
            Node features ``(num_nodes, in_channels)``.
        edge_feat : Tensor, optional
            Edge features ``(num_edges, edge_channels)`` (``conv='gen'``).
        z0 : Tensor, optional
            Initial state (warm start); zeros by default. Treated as a
            constant (detached).
        """
        x = self._encode(feat, species)
        mask = self._dropout_mask(x)

        def f(z: Tensor) -> Tensor:
            return self.block(z, x, graph, mask, edge_feat)

        if not self.implicit:
            start = torch.zeros_like(x) if z0 is None else z0.detach()
            z = self._unrolled(f, start)
        else:
            with torch.no_grad():
                z_star, _ = self._forward_solve(x, mask, graph, edge_feat, z0)
            # One differentiable application ties the output to theta and X.
            z = f(z_star)
            if z.requires_grad:
                z = _ImplicitBackward.apply(z, z_star, self._make_adjoint(x, mask, graph, edge_feat))
        return self.head(F.relu(self.head_norm(z)))

    def _make_adjoint(
        self, x: Tensor, mask: Optional[Tensor], graph, edge_feat: Optional[Tensor]
    ) -> Callable[[Tensor, Tensor], Tensor]:
        # Detached copies: the adjoint only needs d f / d z, not paths to X or
        # the edge features, and must not keep their graphs alive longer.
        x_d = x.detach()
        e_d = edge_feat.detach() if edge_feat is not None else None
        max_iter = self.backward_max_iter if self.backward_max_iter is not None else self.max_iter
        tol = self.backward_tol if self.backward_tol is not None else self.tol

        def adjoint(z_star: Tensor, grad: Tensor) -> Tensor:
            with torch.enable_grad():
                z_in = z_star.detach().requires_grad_()
                f_out = self.block(z_in, x_d, graph, mask, e_d)

            def vjp_map(g: Tensor) -> Tensor:
                # g -> J^T g + grad; retain_graph because the solver calls it repeatedly.
                (vjp,) = torch.autograd.grad(f_out, z_in, g, retain_graph=True)
                return vjp + grad

            g, info = self._solve(vjp_map, grad, max_iter, tol)
            self.last_backward_info = info
            self._warn(info, "backward (adjoint) solve")
            return g

        return adjoint
