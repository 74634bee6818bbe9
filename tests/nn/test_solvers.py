"""Tests for the fixed-point solvers in revgnn_dgl.nn.solvers."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from revgnn_dgl.nn.solvers import (
    ConvergenceWarning,
    SolverInfo,
    anderson,
    broyden,
    fixed_point_solve,
)

SOLVERS = {"anderson": anderson, "broyden": broyden}


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # The tensors here are tiny: with 2 intra-op threads on a shared 2-core
    # machine, OpenMP synchronisation dominates (100x slower measured).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _contractive_affine(shape=(50, 16), lipschitz=0.9, seed=0, dtype=torch.float64):
    """f(Z) = S Z + B with S symmetric, eigenvalues spread over [-L, L].

    The Lipschitz constant is exactly L = ||S||_2. Returns the map and its
    exact fixed point (I - S)^{-1} B.
    """
    gen = torch.Generator().manual_seed(seed)
    n, d = shape
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=dtype))
    S = (U * torch.linspace(-lipschitz, lipschitz, n, dtype=dtype)) @ U.T
    B = torch.randn(n, d, generator=gen, dtype=dtype)

    def f(z):
        return S @ z + B

    z_true = torch.linalg.solve(torch.eye(n, dtype=dtype) - S, B)
    return f, z_true


def _rel_residual(f, z):
    fz = f(z)
    return ((fz - z).norm() / fz.norm()).item()


@pytest.mark.parametrize("name", ["anderson", "broyden"])
@pytest.mark.parametrize("tol", [1e-4, 1e-8])
def test_reaches_tolerance_on_contractive_affine_map(name, tol):
    f, z_true = _contractive_affine()
    z0 = torch.zeros_like(z_true)
    z, info = SOLVERS[name](f, z0, max_iter=200, tol=tol)
    assert isinstance(info, SolverInfo)
    assert info.converged
    assert info.rel_residual <= tol
    # Independently recomputed: the returned iterate satisfies z = f(z) to tol.
    assert _rel_residual(f, z) <= tol * (1 + 1e-6)
    assert math.isclose(info.abs_residual, (f(z) - z).norm().item(), rel_tol=1e-6)
    # For an L-Lipschitz map, ||z - z*|| <= ||f(z) - z|| / (1 - L).
    assert (z - z_true).norm().item() <= info.abs_residual / (1 - 0.9) * (1 + 1e-6)
    assert len(info.history) == info.iterations
    assert info.rel_residual == min(info.history)
    assert z.shape == z0.shape and z.dtype == z0.dtype


@pytest.mark.parametrize("name", ["anderson", "broyden"])
def test_reaches_tolerance_on_nonlinear_map_any_shape(name):
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(8, 8, generator=gen)
    W = 0.8 * W / torch.linalg.matrix_norm(W, 2)  # tanh is 1-Lipschitz: contraction 0.8
    b = torch.randn(3, 5, 8, generator=gen)

    def f(z):
        return torch.tanh(z @ W + b)

    z, info = SOLVERS[name](f, torch.zeros(3, 5, 8), max_iter=100, tol=1e-5)
    assert info.converged and z.shape == (3, 5, 8)
    assert _rel_residual(f, z) <= 1e-5 * (1 + 1e-4)


@pytest.mark.parametrize("name", ["anderson", "broyden"])
def test_accelerates_over_picard(name):
    """On a slow map (rate 0.97) both solvers need far fewer evaluations than plain iteration."""
    f, z_true = _contractive_affine(shape=(30, 8), lipschitz=0.97, seed=3)
    tol = 1e-6
    z = torch.zeros_like(z_true)
    picard = 0
    while True:
        fz = f(z)
        picard += 1
        if (fz - z).norm() / fz.norm() <= tol:
            break
        z = fz
    _, info = SOLVERS[name](f, torch.zeros_like(z_true), max_iter=picard, tol=tol)
    assert info.converged
    assert info.iterations < picard / 2, (info.iterations, picard)


@pytest.mark.parametrize("name", ["anderson", "broyden"])
def test_nonconvergence_warns_with_numbers(name):
    f, z_true = _contractive_affine(lipschitz=0.9)
    with pytest.warns(ConvergenceWarning) as record:
        z, info = SOLVERS[name](f, torch.zeros_like(z_true), max_iter=3, tol=1e-12)
    assert not info.converged and info.iterations == 3
    msg = str(record[0].message)
    assert "did not converge" in msg
    assert f"relative residual {info.rel_residual:.3e}" in msg
    assert f"absolute residual {info.abs_residual:.3e}" in msg
    assert "tol 1.0e-12" in msg and "after 3 iterations" in msg
    # ... and silence is opt-in only.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SOLVERS[name](f, torch.zeros_like(z_true), max_iter=3, tol=1e-12, warn=False)


@pytest.mark.parametrize("name", ["anderson", "broyden"])
def test_map_without_fixed_point_is_reported(name):
    def f(z):
        return z + 1.0  # f(z) - z = 1 everywhere: no fixed point

    with pytest.warns(ConvergenceWarning):
        z, info = SOLVERS[name](f, torch.zeros(10), max_iter=40, tol=1e-6)
    assert not info.converged and info.iterations == 40
    assert torch.isfinite(z).all()


@pytest.mark.parametrize("name", ["anderson", "broyden"])
def test_solves_expansive_affine_map(name):
    """Unlike plain iteration, both find the repelling fixed point of z -> 2z + 1."""
    z, info = SOLVERS[name](lambda z: 2.0 * z + 1.0, torch.zeros(10), max_iter=40, tol=1e-6)
    assert info.converged and torch.allclose(z, torch.full((10,), -1.0), atol=1e-5)


@pytest.mark.parametrize("name", ["anderson", "broyden"])
def test_exact_start_and_zero_map(name):
    def f(z):
        return 0.5 * z + 1.0

    z, info = SOLVERS[name](f, torch.full((4,), 2.0), max_iter=10, tol=1e-8)
    assert info.converged and info.iterations == 1 and info.rel_residual == 0.0
    # The adjoint solve with a zero incoming gradient has the fixed point 0.
    z, info = SOLVERS[name](lambda z: 0.5 * z, torch.zeros(4), max_iter=10, tol=1e-8)
    assert info.converged and info.rel_residual == 0.0 and torch.equal(z, torch.zeros(4))


@pytest.mark.parametrize("name", ["anderson", "broyden"])
def test_no_grad_tracking_inside(name):
    w = torch.tensor(0.5, requires_grad=True)

    def f(z):
        return w * z + 1.0

    z0 = torch.zeros(5, requires_grad=True)
    z, info = SOLVERS[name](f, z0, max_iter=50, tol=1e-8)
    assert info.converged and not z.requires_grad and z.grad_fn is None
    assert torch.allclose(z, torch.full((5,), 2.0))


def test_broyden_restart_with_small_memory():
    f, z_true = _contractive_affine(lipschitz=0.9, seed=5)
    z, info = broyden(f, torch.zeros_like(z_true), max_iter=200, tol=1e-8, memory=4)
    assert info.converged and _rel_residual(f, z) <= 1e-8 * (1 + 1e-6)


def test_anderson_options_and_dispatch():
    f, z_true = _contractive_affine(lipschitz=0.9, seed=6)
    for kwargs in ({"m": 1}, {"m": 3, "beta": 0.7}, {"m": 8, "lam": 1e-6}):
        z, info = fixed_point_solve("anderson", f, torch.zeros_like(z_true), 300, 1e-8, **kwargs)
        assert info.converged, kwargs
    with pytest.raises(ValueError):
        fixed_point_solve("newton", f, torch.zeros_like(z_true), 10, 1e-8)
    with pytest.raises(ValueError):
        anderson(f, torch.zeros_like(z_true), max_iter=0, tol=1e-4)
    with pytest.raises(ValueError):
        broyden(f, torch.zeros_like(z_true), max_iter=10, tol=-1.0)
