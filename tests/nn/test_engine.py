"""The reversible engine on torch alone: every kind of extra argument gets its gradient, freed
outputs raise instead of crashing, parameters and autocast are those of the forward pass, and
the engine (and the CUDA tier that drives it) imports without DGL.

These run the functions of :mod:`revgnn_dgl.testing.engine_checks` on CPU; ``tests/cuda`` runs them
on a GPU.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from grad_check import assert_gradients_match, mismatch
from torch import nn

from revgnn_dgl.errors import FreedOutputError, RevGNNError
from revgnn_dgl.nn import GroupRevRes, keep_outputs
from revgnn_dgl.testing import engine_checks as checks

REPO = Path(__file__).resolve().parents[2]

# Put in front of a child's code: DGL cannot be imported (as on a GPU machine without it).
NO_DGL = textwrap.dedent(
    """
    import sys
    class _NoDGL:
        def find_spec(self, name, path=None, target=None):
            if name == "dgl" or name.startswith("dgl."):
                raise ImportError(f"{name} is blocked in this test")
    sys.meta_path.insert(0, _NoDGL())
    """
)


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NO_DGL + textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ------------------------------------------------------------------ gradients of every argument
@pytest.mark.parametrize("groups", [2, 3])
@pytest.mark.parametrize("edges", [24, 31], ids=["E=width", "E!=width"])
def test_every_kind_of_extra_argument_gets_autograds_gradient(groups: int, edges: int) -> None:
    """h0 (split, from the encoder), the mask (split, no grad), an (E,) edge weight and (E, 3)
    attributes from parameters (whole), a constant (whole), a keyword from parameters and a
    constant keyword: gradients of the arguments and of everything upstream equal autograd's.
    On the old engine, the split h0 got no gradient (the encoder's was off by the h0 term)."""
    (out_r, grads_r), (out_p, grads_p) = checks.engine_gradients("cpu", depth=4, groups=groups, edges=edges)
    assert torch.equal(out_r, out_p)
    assert all(g is not None for g in grads_p.values())
    for upstream in ("x", "edge_weight", "encoder.weight", "gate_encoder.weight", "edge_scale", "attr_mix.weight"):
        assert upstream in grads_r and (grads_r[upstream] != 0).any(), upstream
    print("mismatch", mismatch(grads_r, grads_p))  # measured 3e-5 to 6e-5 of the tolerance
    assert_gradients_match(grads_r, grads_p)


class _Residual(nn.Module):
    """The issue's toy block: ``f(x) = tanh(lin(x)) * h0``, ``h0`` positional or keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def forward(self, graph: object, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(x)) * h0


@pytest.mark.parametrize("as_keyword", [False, True], ids=["positional-split", "keyword-whole"])
def test_split_argument_that_requires_grad_gets_its_gradient(as_keyword: bool) -> None:
    torch.manual_seed(0)
    block = GroupRevRes(_Residual(), 2).double()
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    h0_full = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    grads = []
    for disable in (False, True):
        block.disable = disable
        x.grad = h0_full.grad = None
        h0 = h0_full * 1.0  # computed, not a leaf: the chunks must carry the graph back to it
        if as_keyword:  # a keyword is passed whole, to every group
            out = block(None, x * 1.0, h0=h0[:, :3])
        else:
            out = block(None, x * 1.0, h0)
        out.pow(2).sum().backward()
        grads.append({"x": x.grad, "h0": h0_full.grad})
    assert grads[0]["h0"] is not None  # None on the old engine
    assert_gradients_match(grads[0], grads[1])


def test_requires_grad_switched_between_forward_and_backward() -> None:
    # The old engine recomputed the parameter list in backward: "expected 17, got 16" gradients.
    result = checks.check_requires_grad_toggle("cpu")
    assert result.passed, result.detail


def test_one_dimensional_argument_is_passed_whole() -> None:
    seen = []

    class Probe(nn.Module):
        def forward(self, g, x, weight, mask):
            seen.append((tuple(weight.shape), tuple(mask.shape)))
            return torch.zeros_like(x)

    width = 8
    GroupRevRes(Probe(), 2)(None, torch.randn(4, width), torch.randn(width), torch.randn(4, width))
    assert seen == [((width,), (4, width // 2))] * 2  # the (E,) weight with E == width stays whole


# ------------------------------------------------------------------ autocast
def test_autocast_forward_is_replayed_in_backward() -> None:
    result = checks.check_autocast("cpu", torch.bfloat16)
    assert result.passed, result.detail


def test_autocast_arguments_of_low_precision_recompute() -> None:
    # Extra arguments computed under autocast are bfloat16; the old engine recomputed in float32
    # and failed with "mat1 and mat2 must have the same dtype".
    torch.manual_seed(0)
    model = checks.ToyModel(5, 16, 3, 2, 0.0, cast_back=False).train()
    case = checks._case("cpu", torch.float32, 20, 60, 5, 16, 0.0)
    _, grads = checks._run(model, case, seed=0, autocast=torch.bfloat16)
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())


# ------------------------------------------------------------------ freed outputs
def test_freed_outputs_check_passes() -> None:
    result = checks.check_freed_outputs("cpu")
    assert result.passed, result.detail


MISUSE = """
import torch
from torch import nn
from revgnn_dgl.errors import FreedOutputError
from revgnn_dgl.nn.grouprevres import GroupRevRes

class Mix(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
    def reset_parameters(self):
        self.lin.reset_parameters()
    def forward(self, g, x):
        return torch.tanh(self.lin(g @ x))

torch.manual_seed(0)
g, x = torch.rand(6, 6), torch.randn(6, 8, requires_grad=True)
b1, b2 = GroupRevRes(Mix(), 2), GroupRevRes(Mix(), 2)
"""


def test_every_misuse_of_a_freed_output_is_a_python_exception() -> None:
    """In a child process (a crash must not take the suite down): each use of a freed output
    raises FreedOutputError naming it; the process ends normally."""
    code = MISUSE + textwrap.dedent(
        """
        kept = []
        b1.register_forward_hook(lambda module, args, out: kept.append(out))
        h1 = b1(g, x * 1)
        h2 = b2(g, h1)
        uses = {
            "arithmetic": lambda: h2 + h1,
            "cat": lambda: torch.cat([h1, h2], -1),
            "norm": lambda: h1.norm(),
            "hook": lambda: kept[0].sum(),
            "numpy": lambda: h1.numpy(),
            "reuse in a block": lambda: b2(g, h1),
            "in-place": lambda: h1.mul_(2),
            "indexing": lambda: h1[0, 0],
        }
        for name, use in uses.items():
            try:
                use()
                print(name, "NO ERROR")
            except FreedOutputError as err:
                assert "output of a GroupRevRes block" in str(err) and "keep_output=True" in str(err), err
                print(name, "raised")
        print("repr", repr(h1))
        try:
            torch.autograd.grad(h1, x, torch.ones(6, 8))  # backward from the freed output itself
            print("grad from a freed output NO ERROR")
        except FreedOutputError:
            print("grad from a freed output raised")
        (h2.sum() + 0).backward()
        print("after backward", type(h1).__name__, bool(torch.isfinite(h1).all()), torch.equal(kept[0], h1))
        """
    )
    child = run_child(code)
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])  # a signal is negative
    lines = child.stdout.splitlines()
    assert [line for line in lines if line.endswith("raised")] == [
        f"{name} raised"
        for name in (
            "arithmetic",
            "cat",
            "norm",
            "hook",
            "numpy",
            "reuse in a block",
            "in-place",
            "indexing",
            "grad from a freed output",
        )
    ], child.stdout
    assert any(line.startswith("repr <freed GroupRevRes output, shape (6, 8)") for line in lines)
    assert "after backward Tensor True True" in lines  # refilled and readable again


def test_uncaught_misuse_ends_with_a_traceback_not_a_signal() -> None:
    child = run_child(MISUSE + "h1 = b1(g, x * 1)\nh2 = b2(g, h1)\nprint(h2 + h1)\n")
    assert child.returncode == 1, (child.returncode, child.stderr[-2000:])
    assert (
        "revgnn_dgl.errors.FreedOutputError: Tensor.add: this tensor is the output of a GroupRevRes block"
        in child.stderr
    )


def test_backward_that_skips_the_next_block_is_a_clear_error() -> None:
    # s reaches h1 without going through b2, whose backward refills h1: b1's backward would
    # start from empty storage (a raw "setStorage ... out of bounds" error, or worse).
    child = run_child(MISUSE + "h1 = b1(g, x * 1)\ns = h1.sum()\nh2 = b2(g, h1)\ns.backward()\n")
    assert child.returncode == 1, (child.returncode, child.stderr[-2000:])
    assert (
        "FreedOutputError: GroupRevRes backward: this block's output was freed by the next reversible block"
        in child.stderr
    )


def test_backward_through_an_earlier_use_that_skips_the_next_block_is_an_error() -> None:
    # (h1 * w) saved h1 before b2 freed it; a backward that reaches it without passing through
    # b2 (which refills h1) read freed memory (SIGSEGV); the empty stand-in makes it a shape error.
    code = (
        MISUSE
        + "h1 = b1(g, x * 1)\nw = torch.randn(8, requires_grad=True)\ns = (h1 * w).sum()\nh2 = b2(g, h1)\ntorch.autograd.grad(s, w)\n"
    )
    child = run_child(code)
    assert child.returncode == 1, (child.returncode, child.stderr[-2000:])
    assert "RuntimeError: The size of tensor a (8) must match the size of tensor b (0)" in child.stderr


def test_a_readout_made_before_the_next_block_gets_exact_gradients() -> None:
    """``readout += lin(h)`` inside the loop saves h before the next block frees it; a full
    backward runs the next block's backward (which refills h) first, so this works unchanged."""
    torch.manual_seed(0)
    blocks = nn.ModuleList(GroupRevRes(_Residual(), 2) for _ in range(4)).double()
    lin = nn.Linear(6, 2).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    h0 = torch.randn(5, 6, dtype=torch.float64)
    grads = []
    for disable in (False, True):
        for block in blocks:
            block.disable = disable
        blocks.zero_grad(set_to_none=True)
        lin.zero_grad(set_to_none=True)
        h, readout = x * 1.0, 0.0
        for block in blocks:
            h = block(None, h, h0)
            readout = readout + lin(h).square().sum()
        readout.backward()
        grads.append({n: p.grad for n, p in [*blocks.named_parameters(), *lin.named_parameters(prefix="lin")]})
    assert_gradients_match(grads[0], grads[1])


def test_opt_out_and_aliases_keep_outputs_readable() -> None:
    code = MISUSE + textwrap.dedent(
        """
        import copy, warnings
        def run(keep, alias=False):
            torch.manual_seed(1)
            blocks = [copy.deepcopy(b1), copy.deepcopy(b2)]
            if keep:
                blocks[0].keep_output = True
            xi = x.detach().clone().requires_grad_(True)
            h1 = blocks[0](g, xi * 1)
            view = h1[:, :2] if alias else None
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                h2 = blocks[1](g, h1)
            out = torch.cat([h1, h2], -1) if (keep or alias) else h2
            out.square().sum().backward()
            return out.detach(), xi.grad, len(caught), view
        ref = run(True)
        alias = run(False, alias=True)
        print("kept", ref[0].shape[-1], "alias warned", alias[2], torch.equal(alias[0], ref[0]), torch.equal(alias[3], ref[0][:, :2]))
        """
    )
    child = run_child(code)
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    assert "kept 16 alias warned 1 True True" in child.stdout, child.stdout


def test_freed_output_error_is_the_projects() -> None:
    assert issubclass(FreedOutputError, RevGNNError) and issubclass(FreedOutputError, RuntimeError)


def test_keep_outputs_sets_every_block() -> None:
    model = nn.Sequential(GroupRevRes(_Residual(), 2), nn.Linear(6, 6), GroupRevRes(_Residual(), 2))
    assert keep_outputs(model) is model
    assert [m.keep_output for m in model if isinstance(m, GroupRevRes)] == [True, True]
    keep_outputs(model, False)
    assert not any(m.keep_output for m in model if isinstance(m, GroupRevRes))
    assert "keep_output=True" in repr(GroupRevRes(_Residual(), 2, keep_output=True))


# ------------------------------------------------------------------ torch alone
def test_engine_imports_and_runs_without_dgl() -> None:
    child = run_child(
        """
        import revgnn_dgl.nn.grouprevres, revgnn_dgl.nn.dropout, revgnn_dgl.nn.solvers, revgnn_dgl.nn.blocks
        from revgnn_dgl.nn import GroupRevRes, SharedDropout, keep_outputs
        from revgnn_dgl.testing.engine_checks import check_gradients
        result = check_gradients("cpu", depth=2)
        print("passed", result.passed, "dgl loaded", any(m == "dgl" or m.startswith("dgl.") for m in sys.modules))
        """
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert "passed True dgl loaded False" in child.stdout


def test_cuda_tier_collects_without_dgl_and_skips_without_a_gpu() -> None:
    child = run_child(
        """
        import pytest
        sys.exit(pytest.main(["-m", "cuda", "tests/cuda", "-q", "-rs", "-p", "no:cacheprovider"]))
        """,
        timeout=300,
    )
    assert "error" not in child.stdout.lower().replace("freedoutputerror", ""), child.stdout[-3000:]
    if torch.cuda.is_available():
        assert child.returncode == 0 and " passed" in child.stdout, child.stdout[-3000:]
    else:
        assert child.returncode == 0 and "skipped" in child.stdout and "passed" not in child.stdout, child.stdout[
            -3000:
        ]
        assert "no CUDA device" in child.stdout
