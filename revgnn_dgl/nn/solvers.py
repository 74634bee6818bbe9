r"""Root solvers for fixed points :math:`z = f(z)` of tensor maps.

These are the solvers a deep-equilibrium model (DEQ) uses twice per training
step: once in the forward pass to find the equilibrium :math:`z^\star =
f(z^\star)`, and once in the backward pass to solve the adjoint (linear) fixed
point :math:`g = J_f(z^\star)^\top g + \partial\ell/\partial z`.

Both solvers treat the iterate as one flat vector, so ``z0`` may have any
shape (for a GNN: ``(num_nodes, hidden)``). They run under
:func:`torch.no_grad`, allocate only on ``z0``'s device and dtype, and never
build an autograd graph, so their memory is independent of how the map was
built (``f`` may still call :func:`torch.autograd.grad` on a graph made
outside, as the adjoint solve does).

Residuals follow the DEQ convention: for an iterate :math:`z`,

.. math::

    r_{\mathrm{abs}} = \lVert f(z) - z \rVert_2, \qquad
    r_{\mathrm{rel}} = \frac{\lVert f(z) - z \rVert_2}{\lVert f(z) \rVert_2},

and a solve has converged when :math:`r_{\mathrm{rel}} \le \mathrm{tol}`. (Like
any relative criterion it can be met by an iterate running off to infinity
on a map without a fixed point; ``SolverInfo.abs_residual`` shows that.) The
solvers return the iterate with the lowest relative residual seen (the last
one is not always the best for a non-monotone method), together with a
:class:`SolverInfo`. A solve that does not reach its tolerance emits a
:class:`ConvergenceWarning` stating the residuals, the iteration count and the
tolerance; it never fails silently.

References
----------
.. [1] D. G. Anderson, "Iterative procedures for nonlinear integral
   equations", J. ACM 12(4), 1965.
.. [2] H. F. Walker and P. Ni, "Anderson acceleration for fixed-point
   iterations", SIAM J. Numer. Anal. 49(4), 2011.
.. [3] S. Bai, J. Z. Kolter and V. Koltun, "Deep equilibrium models",
   NeurIPS 2019; "Multiscale deep equilibrium models", NeurIPS 2020.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = [
    "SolverInfo",
    "ConvergenceWarning",
    "anderson",
    "broyden",
    "fixed_point_solve",
    "warn_if_not_converged",
    "SOLVERS",
]


class ConvergenceWarning(UserWarning):
    """Warning emitted when a fixed-point solve stops above its tolerance."""


@dataclass
class SolverInfo:
    r"""Outcome of one fixed-point solve.

    Attributes
    ----------
    iterations : int
        Number of evaluations of ``f`` made. Each solver iteration costs
        exactly one evaluation, so this is also the iteration count.
    abs_residual : float
        :math:`\lVert f(z) - z \rVert_2` at the returned iterate.
    rel_residual : float
        :math:`\lVert f(z) - z \rVert_2 / \lVert f(z) \rVert_2` at the
        returned iterate (0 when both norms are 0).
    converged : bool
        ``rel_residual <= tol``.
    history : list of float
        Relative residual of every evaluated iterate, in order
        (``len(history) == iterations``).
    tol : float
        Tolerance the solve was run with.
    solver : str
        Name of the solver.
    """

    iterations: int
    abs_residual: float
    rel_residual: float
    converged: bool
    history: List[float] = field(default_factory=list)
    tol: float = 0.0
    solver: str = ""

    def describe(self) -> str:
        """One-line human-readable summary with all the numbers."""
        state = "converged" if self.converged else "did not converge"
        return (
            f"{self.solver} {state}: relative residual {self.rel_residual:.3e} "
            f"(tol {self.tol:.1e}), absolute residual {self.abs_residual:.3e}, "
            f"after {self.iterations} iterations"
        )


def warn_if_not_converged(info: SolverInfo, what: str = "fixed-point solve", stacklevel: int = 2) -> None:
    """Emit a :class:`ConvergenceWarning` with the numbers if ``info`` did not converge."""
    if not info.converged:
        warnings.warn(f"{what}: {info.describe()}", ConvergenceWarning, stacklevel=stacklevel + 1)


def _residuals(z: Tensor, fz: Tensor) -> Tuple[float, float]:
    # One host sync per iteration; the solvers need the number to decide anyway.
    abs_r = torch.linalg.vector_norm(fz - z).item()
    f_norm = torch.linalg.vector_norm(fz).item()
    if not (math.isfinite(abs_r) and math.isfinite(f_norm)):
        rel_r = math.inf  # overflow: inf/inf or x/inf must not read as converged
    elif f_norm > 0.0:
        rel_r = abs_r / f_norm
    else:
        rel_r = 0.0 if abs_r == 0.0 else math.inf
    return abs_r, rel_r


def _check_args(max_iter: int, tol: float) -> None:
    if max_iter < 1:
        raise ConfigError(f"max_iter must be >= 1, got {max_iter}")
    if tol < 0:
        raise ConfigError(f"tol must be >= 0, got {tol}")


class _Best:
    """Tracks the lowest-relative-residual iterate seen so far."""

    def __init__(self) -> None:
        self.z: Optional[Tensor] = None
        self.abs_r = math.inf
        self.rel_r = math.inf

    def update(self, z: Tensor, abs_r: float, rel_r: float) -> None:
        # The first iterate is always kept, even with an inf/nan residual.
        if self.z is None or rel_r < self.rel_r:
            self.z, self.abs_r, self.rel_r = z.clone(), abs_r, rel_r


def _diverged(rel_r: float, history: List[float]) -> bool:
    # Stop wasting evaluations once the iteration has blown up.
    return not math.isfinite(rel_r) or (len(history) > 1 and rel_r > 1e6 * max(history[0], 1e-30))


def anderson(
    f: Callable[[Tensor], Tensor],
    z0: Tensor,
    max_iter: int = 50,
    tol: float = 1e-4,
    m: int = 5,
    beta: float = 1.0,
    lam: float = 1e-4,
    warn: bool = True,
) -> Tuple[Tensor, SolverInfo]:
    r"""Solve :math:`z = f(z)` with Anderson acceleration.

    Keeps the last ``m`` iterates :math:`x_i` and images :math:`f_i = f(x_i)`
    with residuals :math:`G_i = f_i - x_i`, and mixes them with the weights
    that minimise the extrapolated residual:

    .. math::

        \alpha = \arg\min_{\mathbf 1^\top \alpha = 1}
            \lVert G^\top \alpha \rVert_2^2 + \lambda' \lVert \alpha \rVert_2^2,
        \qquad
        x_{k+1} = \beta \sum_i \alpha_i f_i + (1 - \beta) \sum_i \alpha_i x_i.

    The constrained least-squares problem has the closed form
    :math:`\alpha = w / \mathbf 1^\top w` with :math:`(G G^\top + \lambda' I) w
    = \mathbf 1`. The Tikhonov weight is taken relative to the residual scale,
    :math:`\lambda' = \lambda \max_i \lVert G_i \rVert^2`, so the step does not
    depend on the units of ``z`` and the acceleration does not fade as the
    residuals shrink. With ``m = 1`` this is the damped Picard iteration.

    Parameters
    ----------
    f : callable
        The map; takes and returns tensors shaped like ``z0``.
    z0 : Tensor
        Initial guess, any shape.
    max_iter : int
        Maximum number of evaluations of ``f``.
    tol : float
        Tolerance on the relative residual
        :math:`\lVert f(z) - z \rVert / \lVert f(z) \rVert`.
    m : int
        Memory: number of past iterates mixed.
    beta : float
        Mixing (damping) parameter; 1 uses the images only.
    lam : float
        Relative Tikhonov regularisation of the mixing problem.
    warn : bool
        Emit a :class:`ConvergenceWarning` if ``tol`` is not reached.

    Returns
    -------
    z : Tensor
        The iterate with the lowest relative residual, shaped like ``z0``.
    info : SolverInfo
        Iterations, final residuals, convergence flag and history.

    Examples
    --------
    >>> import torch
    >>> from revgnn_dgl.nn.solvers import anderson
    >>> A = 0.5 * torch.eye(3); b = torch.ones(3)
    >>> z, info = anderson(lambda z: A @ z + b, torch.zeros(3), max_iter=30, tol=1e-8)
    >>> info.converged, torch.allclose(z, torch.full((3,), 2.0))
    (True, True)
    """
    _check_args(max_iter, tol)
    if m < 1:
        raise ConfigError(f"m must be >= 1, got {m}")
    with torch.no_grad():
        shape = z0.shape
        x0 = z0.detach().reshape(-1)
        n = x0.numel()

        def fv(v: Tensor) -> Tensor:
            return f(v.view(shape)).detach().reshape(-1)

        # The small mixing system is solved in float64 where the device has it:
        # the Gram matrix of nearly collinear residuals is ill-conditioned.
        solve_dtype = torch.float32 if x0.device.type == "mps" else torch.float64
        X = x0.new_zeros(m, n)
        F = x0.new_zeros(m, n)
        history: List[float] = []
        best = _Best()
        info_solver = f"anderson(m={m})"

        def step(slot: int, x: Tensor) -> float:
            X[slot] = x
            F[slot] = fv(x)
            abs_r, rel_r = _residuals(X[slot], F[slot])
            history.append(rel_r)
            best.update(X[slot], abs_r, rel_r)
            return rel_r

        rel_r = step(0, x0)
        k = 1
        while k < max_iter and rel_r > tol and not _diverged(rel_r, history):
            n_mem = min(k, m)
            if n_mem == 1:
                x_new = beta * F[0] + (1.0 - beta) * X[0]
            else:
                G = (F[:n_mem] - X[:n_mem]).to(solve_dtype)
                gram = G @ G.T
                reg = lam * gram.diagonal().max().clamp_min(torch.finfo(solve_dtype).tiny)
                gram = gram + reg * torch.eye(n_mem, dtype=solve_dtype, device=gram.device)
                ones = torch.ones(n_mem, 1, dtype=solve_dtype, device=gram.device)
                w = torch.linalg.solve(gram, ones)[:, 0]
                alpha = (w / w.sum()).to(x0.dtype)
                x_new = beta * (alpha @ F[:n_mem]) + (1.0 - beta) * (alpha @ X[:n_mem])
            rel_r = step(k % m, x_new)
            k += 1

    assert best.z is not None
    info = SolverInfo(
        iterations=len(history),
        abs_residual=best.abs_r,
        rel_residual=best.rel_r,
        converged=best.rel_r <= tol,
        history=history,
        tol=tol,
        solver=info_solver,
    )
    if warn:
        warn_if_not_converged(info, "anderson")
    return best.z.view(shape), info


def broyden(
    f: Callable[[Tensor], Tensor],
    z0: Tensor,
    max_iter: int = 50,
    tol: float = 1e-4,
    memory: Optional[int] = 30,
    warn: bool = True,
) -> Tuple[Tensor, SolverInfo]:
    r"""Solve :math:`z = f(z)` with limited-memory ("good") Broyden.

    Finds a root of :math:`g(z) = f(z) - z` by quasi-Newton steps
    :math:`z_{k+1} = z_k - B_k g(z_k)`, where :math:`B_k \approx J_g^{-1}` is
    kept in low-rank form, as in the DEQ/MDEQ code:

    .. math::

        B_0 = -I, \qquad B_k = -I + \sum_i u_i v_i^\top,

        B_{k+1} = B_k + \frac{(\Delta z - B_k \Delta g)\, \Delta z^\top B_k}
                             {\Delta z^\top B_k \Delta g}.

    At most ``memory`` pairs :math:`(u_i, v_i)` are kept, so the solver's
    own memory is :math:`O(\mathrm{memory} \cdot \mathrm{numel}(z))` however
    many iterations run. When the memory is full the estimate restarts from
    :math:`B = -I`; unlike dropping the oldest pair (an L-BFGS-style ring
    buffer, which leaves a sum of updates no Broyden step ever produced),
    a restart keeps :math:`B` a consistent Broyden approximation, and it
    converged more reliably on our test maps. No line search (step 1), as in
    MDEQ's default.

    Parameters
    ----------
    f : callable
        The map; takes and returns tensors shaped like ``z0``.
    z0 : Tensor
        Initial guess, any shape.
    max_iter : int
        Maximum number of evaluations of ``f``.
    tol : float
        Tolerance on the relative residual
        :math:`\lVert f(z) - z \rVert / \lVert f(z) \rVert`.
    memory : int or None
        Number of rank-one updates kept before a restart; ``None`` keeps all
        (full Broyden, MDEQ's choice; memory then grows with ``max_iter``).
    warn : bool
        Emit a :class:`ConvergenceWarning` if ``tol`` is not reached.

    Returns
    -------
    z : Tensor
        The iterate with the lowest relative residual, shaped like ``z0``.
    info : SolverInfo
        Iterations, final residuals, convergence flag and history.

    Examples
    --------
    >>> import torch
    >>> from revgnn_dgl.nn.solvers import broyden
    >>> z, info = broyden(torch.cos, torch.zeros(4), max_iter=30, tol=1e-6)
    >>> info.converged, bool(torch.allclose(z, torch.cos(z), atol=1e-5))
    (True, True)
    """
    _check_args(max_iter, tol)
    memory = max_iter if memory is None else min(memory, max_iter)
    if memory < 1:
        raise ConfigError(f"memory must be >= 1, got {memory}")
    with torch.no_grad():
        shape = z0.shape
        x = z0.detach().reshape(-1).clone()
        n = x.numel()

        def gv(v: Tensor) -> Tensor:
            return f(v.view(shape)).detach().reshape(-1) - v

        Us = x.new_zeros(memory, n)
        VTs = x.new_zeros(memory, n)
        n_stored = 0

        def matvec(v: Tensor) -> Tensor:
            # B v = -v + U (V^T v)
            if n_stored == 0:
                return -v
            return -v + (VTs[:n_stored] @ v) @ Us[:n_stored]

        def rmatvec(v: Tensor) -> Tensor:
            # v^T B = -v^T + (v^T U) V^T
            if n_stored == 0:
                return -v
            return -v + (Us[:n_stored] @ v) @ VTs[:n_stored]

        history: List[float] = []
        best = _Best()
        gx = gv(x)
        abs_r, rel_r = _residuals(x, gx + x)
        history.append(rel_r)
        best.update(x, abs_r, rel_r)

        while len(history) < max_iter and rel_r > tol and not _diverged(rel_r, history):
            dx = -matvec(gx)
            x = x + dx
            gx_new = gv(x)
            dg = gx_new - gx
            gx = gx_new
            abs_r, rel_r = _residuals(x, gx + x)
            history.append(rel_r)
            best.update(x, abs_r, rel_r)
            # Good-Broyden rank-one update of the inverse Jacobian estimate.
            vT = rmatvec(dx)
            denom = torch.dot(vT, dg)
            if denom.abs().item() > torch.finfo(x.dtype).tiny and torch.isfinite(denom).item():
                u = (dx - matvec(dg)) / denom
                if n_stored == memory:
                    n_stored = 0  # restart from B = -I (see the docstring)
                Us[n_stored] = u
                VTs[n_stored] = vT
                n_stored += 1

    assert best.z is not None
    info = SolverInfo(
        iterations=len(history),
        abs_residual=best.abs_r,
        rel_residual=best.rel_r,
        converged=best.rel_r <= tol,
        history=history,
        tol=tol,
        solver=f"broyden(memory={memory})",
    )
    if warn:
        warn_if_not_converged(info, "broyden")
    return best.z.view(shape), info


SOLVERS: Dict[str, Callable[..., Any]] = {"anderson": anderson, "broyden": broyden}


def fixed_point_solve(
    name: str,
    f: Callable[[Tensor], Tensor],
    z0: Tensor,
    max_iter: int,
    tol: float,
    warn: bool = True,
    **kwargs,
) -> Tuple[Tensor, SolverInfo]:
    """Dispatch to a solver by name (``'anderson'`` or ``'broyden'``).

    Examples
    --------
    >>> import torch
    >>> from revgnn_dgl.nn.solvers import fixed_point_solve
    >>> z, info = fixed_point_solve("broyden", lambda z: 0.5 * z + 1, torch.zeros(2), 20, 1e-6)
    >>> info.converged
    True
    """
    try:
        solver = SOLVERS[name]
    except KeyError:
        raise ConfigError(f"unknown solver {name!r}; choose from {sorted(SOLVERS)}") from None
    return solver(f, z0, max_iter=max_iter, tol=tol, warn=warn, **kwargs)
