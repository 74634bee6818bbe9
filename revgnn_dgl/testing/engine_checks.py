r"""Checks of the reversible engine that run on any device with torch alone (no DGL).

The GPU machines this project can borrow have torch but no DGL, so the engine's CUDA paths (the
CUDA generator's state recorded and replayed around dropout, storage freed and refilled on the
device, allocator peaks, autocast) are checked on a toy graph convolution written in torch: a
:class:`ToyGraph` is a dense adjacency, opaque to :class:`~revgnn_dgl.nn.GroupRevRes` like a
DGLGraph. One set of functions serves three callers:

* the CUDA test tier, ``python -m pytest -m cuda tests/cuda`` (skips without a GPU),
* ``revgnn-dgl info --check --device cuda`` (:mod:`revgnn_dgl.bench.selfcheck`),
* the CPU suite (``tests/nn/test_engine.py``), on ``cpu``.

Each ``check_*`` function returns a :class:`CheckResult`: whether it passed and what it measured,
in one line. The gradient comparison is the project's shared float64 one (:func:`mismatch`, used
by ``tests/grad_check.py``): per element, ``|a - b| <= 1e-12 max|b| + 1e-9 |b|``.

>>> from revgnn_dgl.testing.engine_checks import check_gradients
>>> check_gradients("cpu").passed
True
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..errors import FreedOutputError
from ..nn.dropout import SharedDropout
from ..nn.grouprevres import GroupRevRes, _FreedOutput, keep_outputs

#: Under the package's logger (named, so that ``python -m`` running this file as ``__main__`` says its lines too).
_log = logging.getLogger("revgnn_dgl.testing.engine_checks")

__all__ = [
    "ATOL_SCALE",
    "CheckResult",
    "RTOL",
    "ToyConv",
    "ToyGraph",
    "ToyModel",
    "check_autocast",
    "check_freed_outputs",
    "check_gradients",
    "check_memory_flat",
    "check_requires_grad_toggle",
    "engine_checks",
    "engine_gradients",
    "mismatch",
    "named_gradients",
    "run_timed",
]

#: Relative tolerance per element of the float64 gradient comparison.
RTOL = 1e-9
#: Absolute tolerance per element, as a fraction of the reference tensor's largest magnitude.
ATOL_SCALE = 1e-12

Grads = Union[Mapping[str, Tensor], Sequence[Tensor]]
Device = Union[str, torch.device]


@dataclass
class CheckResult:
    """One check: its name, whether it passed, and what it measured (one line)."""

    name: str
    passed: bool
    detail: str


def named_gradients(grads: Grads) -> Dict[str, Tensor]:
    """``grads`` as a dict; a sequence is named ``#0``, ``#1``, ..."""
    if isinstance(grads, Mapping):
        return dict(grads)
    return {f"#{i}": g for i, g in enumerate(grads)}


def mismatch(actual: Grads, expected: Grads, rtol: float = RTOL, atol_scale: float = ATOL_SCALE) -> float:
    """The largest ``|a - b| / (atol + rtol |b|)`` over every element of every pair.

    Two sets of gradients match exactly when this is at most 1, with ``atol`` equal to
    ``atol_scale`` times the largest magnitude of each reference tensor; tests print it so that
    the margin is on record.
    """
    a, b = named_gradients(actual), named_gradients(expected)
    worst = 0.0
    for name in b:
        x, y = a[name].double(), b[name].double()
        atol = atol_scale * float(y.abs().max()) if y.numel() else 0.0
        bound = atol + rtol * y.abs()
        diff = (x - y).abs()
        if (diff > 0).any():
            ratio = torch.where(
                bound > 0, diff / bound.clamp(min=torch.finfo(torch.float64).tiny), torch.full_like(diff, float("inf"))
            )
            worst = max(worst, float(ratio[diff > 0].max()))
    return worst


# ---------------------------------------------------------------------- a graph conv in torch
class ToyGraph:
    """A directed graph without repeated edges, as a dense adjacency: what a DGLGraph is to a conv.

    Dense products keep the float64 results reproducible on CUDA (no atomic scatter-adds).
    """

    def __init__(self, num_nodes: int, num_edges: int, device: Device = "cpu", seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        pairs = torch.randperm(num_nodes * num_nodes, generator=gen)
        pairs = pairs[pairs // num_nodes != pairs % num_nodes][:num_edges]  # no self-loops
        if len(pairs) < num_edges:
            raise ValueError(
                f"ToyGraph: {num_nodes} nodes hold at most {num_nodes * (num_nodes - 1)} edges, not {num_edges}."
            )
        self.num_nodes = num_nodes
        self.src = (pairs % num_nodes).to(device)
        self.dst = (pairs // num_nodes).to(device)

    def num_edges(self) -> int:
        return len(self.src)

    def propagate(self, feat: Tensor, edge_weight: Tensor) -> Tensor:
        """Degree-normalised sum of ``edge_weight``-weighted in-neighbour features."""
        adj = feat.new_zeros(self.num_nodes, self.num_nodes).index_put((self.dst, self.src), edge_weight.to(feat.dtype))
        return (adj @ feat) / (adj.sum(-1, keepdim=True) + 1.0)


class ToyConv(nn.Module):
    r"""One group's function :math:`f`, taking every kind of extra argument GroupRevRes passes.

    ``norm -> ReLU -> nn.Dropout (replayed random numbers) -> SharedDropout (explicit mask) ->
    propagate -> Linear``, plus an initial-residual term. Arguments: ``h0`` and ``mask`` are
    split per group; ``edge_weight`` (1-D, ``(E,)``), ``edge_attr`` ``(E, 3)`` and ``scale``
    ``(N, 1)`` are passed whole; ``gate`` ``(N, D)`` and ``offset`` are keywords, passed whole.
    """

    def __init__(self, width: int, full_width: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.shared = SharedDropout(dropout)
        self.lin = nn.Linear(width, width)
        self.edge_lin = nn.Linear(3, 1)
        self.gate_lin = nn.Linear(full_width, width)

    def reset_parameters(self) -> None:
        for module in (self.norm, self.lin, self.edge_lin, self.gate_lin):
            module.reset_parameters()

    def forward(
        self, graph: ToyGraph, x: Tensor, h0: Tensor, mask: Optional[Tensor], edge_weight: Tensor, edge_attr: Tensor,
        scale: Tensor, *, gate: Tensor, offset: Tensor,
    ) -> Tensor:  # fmt: skip
        h = self.shared(self.drop(torch.relu(self.norm(x))), mask)
        w = torch.sigmoid(edge_weight + self.edge_lin(edge_attr).squeeze(-1))
        return self.lin(graph.propagate(h, w)) * scale + h0 * torch.tanh(self.gate_lin(gate)) + offset


class ToyModel(nn.Module):
    """An encoder, ``depth`` reversible blocks of :class:`ToyConv` and a linear head.

    Every extra argument but the dropout mask and the constants is computed from parameters
    upstream of the blocks (``h0`` from the encoder, as in an initial-residual GNN), so the
    comparison covers the gradients that flow into them as well as into the blocks. Under
    autocast the encoders' outputs are low-precision; ``cast_back=True`` returns them to the
    input's dtype (the blocks then see float32 features and arguments, as a model that keeps
    its residual stream in float32 does), ``False`` passes them on as they are.
    """

    def __init__(
        self, in_feats: int, width: int, depth: int, groups: int = 2, dropout: float = 0.0, cast_back: bool = True
    ) -> None:
        super().__init__()
        self.cast_back = cast_back
        self.encoder = nn.Linear(in_feats, width)
        self.gate_encoder = nn.Linear(in_feats, width)
        self.edge_scale = nn.Parameter(torch.tensor(0.7))
        self.attr_mix = nn.Linear(3, 3)
        self.blocks = nn.ModuleList(GroupRevRes(ToyConv(width // groups, width, dropout), groups) for _ in range(depth))
        self.head = nn.Linear(width, 2)
        self.mask_source = SharedDropout(dropout)

    def set_disable(self, disable: bool) -> None:
        for block in self.blocks:
            block.disable = disable

    def forward(
        self, graph: ToyGraph, x: Tensor, edge_weight: Tensor, edge_attr: Tensor, mask: Optional[Tensor]
    ) -> Tensor:
        cast = (lambda t: t.to(x.dtype)) if self.cast_back else (lambda t: t)
        h = cast(self.encoder(x))
        h0 = cast(torch.tanh(h))  # split per group, requires grad
        gate = cast(self.gate_encoder(x))  # a keyword of the full width: passed whole
        w = edge_weight * self.edge_scale  # (E,): whole, also when E equals the width
        attr = cast(self.attr_mix(edge_attr))  # (E, 3): whole, requires grad
        scale = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)  # whole, no grad
        offset = torch.full((x.shape[0], 1), 0.1, dtype=x.dtype, device=x.device)  # keyword, no grad
        for block in self.blocks:
            h = block(graph, h, h0, mask, w, attr, scale, gate=gate, offset=offset)
        return self.head(h)


@dataclass
class _Case:
    graph: ToyGraph
    x: Tensor
    edge_weight: Tensor
    edge_attr: Tensor
    mask: Optional[Tensor]


def _case(
    device: Device, dtype: torch.dtype, nodes: int, edges: int, in_feats: int, width: int, dropout: float
) -> _Case:
    gen = torch.Generator().manual_seed(1)
    graph = ToyGraph(nodes, edges, device)
    x = torch.randn(nodes, in_feats, generator=gen, dtype=dtype).to(device)
    edge_weight = torch.randn(edges, generator=gen, dtype=dtype).to(device)
    edge_attr = torch.randn(edges, 3, generator=gen, dtype=dtype).to(device)
    mask = None
    if dropout:
        keep = 1.0 - dropout
        mask = (torch.rand(nodes, width, generator=gen, dtype=dtype) < keep).to(dtype).div_(keep).to(device)
    return _Case(graph, x, edge_weight, edge_attr, mask)


def _loss(out: Tensor) -> Tensor:
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out)
    return (out * weights).sum() + out.square().mean()


def _run(
    model: ToyModel, case: _Case, seed: int, autocast: Optional[torch.dtype] = None
) -> Tuple[Tensor, Dict[str, Optional[Tensor]]]:
    """Forward and backward from the same random-number state; the output and every gradient."""
    model.zero_grad(set_to_none=True)
    x = case.x.clone().requires_grad_(True)
    w = case.edge_weight.clone().requires_grad_(True)
    torch.manual_seed(seed)  # nn.Dropout draws the same masks in every run
    device_type = x.device.type
    with torch.autocast(device_type, dtype=autocast, enabled=autocast is not None):
        out = model(case.graph, x, w, case.edge_attr, case.mask)
    _loss(out.float() if autocast is not None else out).backward()  # backward outside autocast, as recommended
    grads = {"x": x.grad, "edge_weight": w.grad, **{name: p.grad for name, p in model.named_parameters()}}
    return out.detach(), grads


def engine_gradients(
    device: Device = "cpu",
    dtype: torch.dtype = torch.float64,
    depth: int = 4,
    groups: int = 2,
    dropout: float = 0.3,
    nodes: int = 12,
    edges: Optional[int] = None,
    width: int = 24,
    toggle: Optional[Callable[[ToyModel], None]] = None,
) -> Tuple[Tuple[Tensor, Dict[str, Optional[Tensor]]], Tuple[Tensor, Dict[str, Optional[Tensor]]]]:
    """``(output, gradients)`` of the memory-saving path and of ordinary autograd (``disable=True``).

    Same weights, inputs, dropout mask and random numbers. ``edges`` defaults to ``width``: a 1-D
    ``(E,)`` edge weight then has the width's length and must still be passed whole.
    ``toggle(model)``, if given, runs between forward and backward of both paths.
    """
    torch.manual_seed(0)
    rev = ToyModel(5, width, depth, groups, dropout).to(device=device, dtype=dtype).train()
    plain = ToyModel(5, width, depth, groups, dropout).to(device=device, dtype=dtype).train()
    plain.load_state_dict(rev.state_dict())
    plain.set_disable(True)
    case = _case(device, dtype, nodes, width if edges is None else edges, 5, width, dropout)
    results = []
    for model in (rev, plain):
        if toggle is None:
            results.append(_run(model, case, seed=7))
            continue
        model.zero_grad(set_to_none=True)
        x, w = case.x.clone().requires_grad_(True), case.edge_weight.clone().requires_grad_(True)
        torch.manual_seed(7)
        out = model(case.graph, x, w, case.edge_attr, case.mask)
        toggle(model)
        _loss(out).backward()
        results.append(
            (out.detach(), {"x": x.grad, "edge_weight": w.grad, **{n: p.grad for n, p in model.named_parameters()}})
        )
    return results[0], results[1]


def _present(t: Optional[Tensor]) -> Tensor:
    """A gradient or input the check has just made (not None by construction)."""
    assert t is not None
    return t


def _compare(rev: Dict[str, Optional[Tensor]], plain: Dict[str, Optional[Tensor]]) -> Tuple[float, List[str]]:
    """Mismatch over the gradients both paths have, and the names where only one has one."""
    missing = [n for n in plain if (rev[n] is None) != (plain[n] is None)]
    both = [n for n in plain if rev[n] is not None and plain[n] is not None]
    return mismatch({n: _present(rev[n]) for n in both}, {n: _present(plain[n]) for n in both}), missing


def check_gradients(device: Device = "cpu", depth: int = 4, groups: int = 2) -> CheckResult:
    """float64: the memory-saving backward equals ordinary autograd, ``nn.Dropout`` and
    :class:`~revgnn_dgl.nn.SharedDropout` inside, every kind of extra argument."""
    name = f"gradients vs autograd (float64, {depth} blocks of {groups} groups, dropout inside, every kind of argument)"
    (out_r, grads_r), (out_p, grads_p) = engine_gradients(device, depth=depth, groups=groups)
    worst, missing = _compare(grads_r, grads_p)
    same_forward = torch.equal(out_r, out_p)
    detail = (
        f"{len(grads_p)} gradients, worst at {worst:.1e} of the tolerance (rtol {RTOL:.0e}); "
        f"forward {'identical' if same_forward else 'DIFFERENT'}"
        + (f"; missing: {', '.join(missing)}" if missing else "")
    )
    return CheckResult(name, same_forward and not missing and worst <= 1.0, detail)


def check_requires_grad_toggle(device: Device = "cpu") -> CheckResult:
    """A parameter's ``requires_grad`` switched off between forward and backward: gradients as
    ordinary autograd gives them (``None`` for that parameter, the rest equal)."""

    def toggle(model: ToyModel) -> None:
        model.blocks[1].gnn_modules[0].lin.weight.requires_grad_(False)

    (_, grads_r), (_, grads_p) = engine_gradients(device, depth=3, toggle=toggle)
    worst, missing = _compare(grads_r, grads_p)
    off = "blocks.1.gnn_modules.0.lin.weight"
    detail = f"switched-off parameter's gradient {grads_r[off]} (autograd: {grads_p[off]}); others at {worst:.1e} of the tolerance"
    return CheckResult("requires_grad switched between forward and backward", not missing and worst <= 1.0, detail)


def _stack(
    device: Device, dtype: torch.dtype, depth: int, width: int = 8
) -> Tuple[nn.ModuleList, ToyGraph, Tensor, Tensor, Tensor]:
    torch.manual_seed(0)
    blocks = nn.ModuleList(GroupRevRes(ToyConv(width // 2, width, 0.0), 2) for _ in range(depth)).to(
        device=device, dtype=dtype
    )
    graph = ToyGraph(10, 30, device)
    x = torch.randn(10, width, dtype=dtype, device=device, requires_grad=True)
    w = torch.rand(30, dtype=dtype, device=device)
    attr = torch.randn(30, 3, dtype=dtype, device=device)
    return blocks, graph, x, w, attr


def _stack_forward(
    blocks: nn.ModuleList, graph: ToyGraph, x: Tensor, w: Tensor, attr: Tensor, keep: List[Tensor]
) -> Tensor:
    ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    h = x * 1.0
    for block in blocks:
        h = block(graph, h, torch.tanh(x), None, w, attr, ones, gate=x, offset=0.0 * ones)
        keep.append(h)
    return h


def _freed(t: Tensor) -> bool:
    """Whether ``t``'s storage is freed and its object guarded (asked past the guard)."""
    with torch._C.DisableTorchFunctionSubclass():
        empty = t.untyped_storage().nbytes() == 0
    return empty and type(t) is _FreedOutput


def check_freed_outputs(device: Device = "cpu") -> CheckResult:
    """Block outputs are freed on the device, refuse every use with a clear error while freed, are
    refilled by backward with the forward's values, and ``keep_outputs`` changes no result."""
    blocks, graph, x, w, attr = _stack(device, torch.float64, 3)
    with torch.no_grad():  # no grad: nothing is freed, every output is there to compare with
        values: List[Tensor] = []
        _stack_forward(blocks, graph, x, w, attr, values)
    kept: List[Tensor] = []
    out = _stack_forward(blocks, graph, x, w, attr, kept)
    problems = []
    freed = [_freed(t) for t in kept]
    if freed != [True] * (len(kept) - 1) + [False]:
        problems.append(f"storage freed per output {freed} (all but the last)")
    for what, use in (
        ("arithmetic", lambda t: t + 1),
        ("torch.cat", lambda t: torch.cat([t, t], -1)),
        ("norm", lambda t: t.norm()),
    ):
        try:
            use(kept[0])
            problems.append(f"{what} on a freed output did not raise")
        except FreedOutputError:
            pass
    _loss(out).backward()
    refill = max(float((t - v).abs().max() / v.abs().max()) for t, v in zip(kept, values))
    on_device = all(t.device.type == torch.device(device).type and type(t) is Tensor for t in kept)
    if refill > 1e-13 or not on_device:
        problems.append(f"refilled outputs off by {refill:.1e} (plain tensors on the device: {on_device})")
    grads = [_present(p.grad).clone() for p in blocks.parameters()] + [_present(x.grad).clone()]
    # The opt-out: every output kept, readable at once, results unchanged.
    blocks.zero_grad(set_to_none=True)
    x.grad = None
    keep_outputs(blocks)
    kept_on: List[Tensor] = []
    out_on = _stack_forward(blocks, graph, x, w, attr, kept_on)
    readable = not any(_freed(t) for t in kept_on) and torch.cat(kept_on, -1).shape[-1] == 3 * x.shape[-1]
    _loss(out_on).backward()
    keep_outputs(blocks, False)
    grads_on = [_present(p.grad) for p in blocks.parameters()] + [_present(x.grad)]
    # Forward identical; gradients to the float64 check (a kept output is not overwritten by its
    # reconstruction, so the block before starts backward from the exact value: ulps apart).
    kept_mismatch = mismatch(grads_on, grads)
    same = torch.equal(out_on.detach(), out.detach()) and kept_mismatch <= 1.0
    if not (readable and same):
        problems.append(
            f"keep_outputs: outputs readable {readable}, forward identical and gradients within tolerance {same}"
        )
    detail = "; ".join(problems) or (
        f"outputs freed on {torch.device(device).type} and refused with FreedOutputError; refilled to {refill:.1e} "
        f"of their size; keep_outputs: all readable, same forward, gradients at {kept_mismatch:.1e} of the tolerance"
    )
    return CheckResult("freed block outputs: guarded, refilled on the device, opt-out", not problems, detail)


def _rel(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    """||a - b|| / ||b|| over all tensors together, in float64."""
    fa = torch.cat([t.double().flatten() for t in a])
    fb = torch.cat([t.double().flatten() for t in b])
    return float((fa - fb).norm() / fb.norm().clamp(min=1e-300))


#: Autocast: the memory-saving path's distance to ordinary autograd under the same autocast, at
#: most this fraction of ordinary autograd's own error against float64. Measured on CPU bf16 with
#: the settings replayed: 6e-7 (depth 2 and 8), 0.07 at depth 16 and 0.6 at 32, where a
#: reconstruction that is off by one float32 ulp starts to flip bf16 roundings; with the
#: recomputation in float32 (the settings not replayed): 0.75 to 2 at every depth.
AUTOCAST_FRACTION = 0.05


def check_autocast(device: Device = "cpu", dtype: torch.dtype = torch.bfloat16, depth: int = 4) -> CheckResult:
    """Under ``torch.autocast``: gradients of the memory-saving path against ordinary autograd under
    the same autocast, set against the error of the latter with respect to float64."""
    torch.manual_seed(0)
    width = 32
    rev = ToyModel(5, width, depth, 2, 0.2).to(device).train()
    plain = ToyModel(5, width, depth, 2, 0.2).to(device).train()
    plain.load_state_dict(rev.state_dict())
    plain.set_disable(True)
    truth = ToyModel(5, width, depth, 2, 0.2).to(device=device, dtype=torch.float64).train()
    truth.load_state_dict(rev.state_dict())
    truth.set_disable(True)
    case32 = _case(device, torch.float32, 64, 256, 5, width, 0.2)
    case64 = _Case(
        case32.graph,
        case32.x.double(),
        _present(case32.edge_weight).double(),
        _present(case32.edge_attr).double(),
        _present(case32.mask).double(),
    )
    _, g_rev = _run(rev, case32, seed=3, autocast=dtype)
    _, g_plain = _run(plain, case32, seed=3, autocast=dtype)
    _, g_truth = _run(truth, case64, seed=3)
    names = [n for n in g_truth if g_truth[n] is not None]
    rev_g, plain_g, truth_g = ([_present(g[n]) for n in names] for g in (g_rev, g_plain, g_truth))
    to_plain, plain_err, rev_err = _rel(rev_g, plain_g), _rel(plain_g, truth_g), _rel(rev_g, truth_g)
    name = f"autocast {str(dtype).replace('torch.', '')} on {device} (depth {depth})"
    detail = (
        f"memory-saving vs autograd under the same autocast {to_plain:.1e}; against float64: autograd {plain_err:.1e}, "
        f"memory-saving {rev_err:.1e} (pass: the first below {AUTOCAST_FRACTION} x autograd's error)"
    )
    return CheckResult(name, to_plain <= AUTOCAST_FRACTION * plain_err, detail)


#: Largest growth of a reversible step's peak (gradients excluded) from 4 to 32 blocks. The same
#: step on CPU (the profiler's allocator peak): x0.97 reversible, x7.2 with ordinary autograd.
MEMORY_GROWTH = 1.25


def _cuda_step_peak(device: torch.device, depth: int, disable: bool) -> float:
    torch.manual_seed(0)
    model = ToyModel(5, 64, depth, 2, 0.1).to(device).train()
    model.set_disable(disable)
    case = _case(device, torch.float32, 1024, 8192, 5, 64, 0.1)
    # The gradients (allocated during the step; the weights are in the baseline) grow with depth.
    grads = sum(p.numel() * p.element_size() for p in model.parameters())
    _run(model, case, seed=0)  # warm-up: lazy initialisation, allocator caches
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    _run(model, case, seed=0)
    torch.cuda.synchronize(device)
    return float(torch.cuda.max_memory_allocated(device) - base - grads)


def check_memory_flat(device: Device = "cuda") -> CheckResult:
    """CUDA: the peak of a reversible step (``torch.cuda.max_memory_allocated``) is flat from 4
    to 32 blocks, while ordinary autograd's grows (which shows the measurement sees activations)."""
    device = torch.device(device)
    if device.type != "cuda":
        return CheckResult("memory flat in depth (CUDA allocator)", False, f"needs a CUDA device, not {device}")
    rev4, rev32 = _cuda_step_peak(device, 4, False), _cuda_step_peak(device, 32, False)
    plain4, plain32 = _cuda_step_peak(device, 4, True), _cuda_step_peak(device, 32, True)
    growth, plain_growth = rev32 / max(rev4, 1.0), plain32 / max(plain4, 1.0)
    mib = 1024**2
    detail = (
        f"peak less gradients: {rev4 / mib:.1f} MiB at 4 blocks, {rev32 / mib:.1f} MiB at 32 (x{growth:.2f}, "
        f"flat means below x{MEMORY_GROWTH}); ordinary autograd x{plain_growth:.2f}"
    )
    return CheckResult("memory flat in depth (CUDA allocator)", growth <= MEMORY_GROWTH and plain_growth > 2.0, detail)


def engine_checks(device: Device = "cpu") -> List[Tuple[str, Callable[[], CheckResult]]]:
    """The engine's checks for ``device``: ``(name, check)`` pairs, so a caller can time each one.

    On CUDA: float64 gradients (2 and 3 groups), ``requires_grad`` switched, freed outputs,
    autocast bf16 and fp16, memory flat in depth; on CPU the same without fp16 (CPU autocast is
    bf16) and without the CUDA allocator's peak.
    """
    device = torch.device(device)
    checks: List[Tuple[str, Callable[[], CheckResult]]] = [
        ("gradients vs autograd (2 groups)", lambda: check_gradients(device)),
        ("gradients vs autograd (3 groups)", lambda: check_gradients(device, depth=3, groups=3)),
        ("requires_grad switched", lambda: check_requires_grad_toggle(device)),
        ("freed block outputs", lambda: check_freed_outputs(device)),
        ("autocast bfloat16", lambda: check_autocast(device, torch.bfloat16)),
    ]
    if device.type == "cuda":
        checks += [
            ("autocast float16", lambda: check_autocast(device, torch.float16)),
            ("memory flat in depth (CUDA allocator)", lambda: check_memory_flat(device)),
        ]
    return checks


def run_timed(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    """Run one check, say its line (``ok`` or ``FAILED``, what it measured, the seconds it took) on the
    package's logger (:mod:`revgnn_dgl.log`, standard output).

    A check that raises has failed, and its line says how.
    """
    tic = time.perf_counter()
    try:
        result = check()
    except Exception as err:  # noqa: BLE001  (a check that crashes has failed; say how)
        result = CheckResult(name, False, f"{type(err).__name__}: {' '.join(str(err).split())}")
    _log.info(
        f"  {'ok    ' if result.passed else 'FAILED'} {result.name}: {result.detail} [{time.perf_counter() - tic:.1f} s]"
    )
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m revgnn_dgl.testing.engine_checks [--device cuda]``: run the checks, one line each.

    For a machine with torch and nothing else (no DGL, no pytest): the same checks as the CUDA
    tier, ending with ``check: passed`` or what failed; the exit status is 0 only if all passed.
    """
    import argparse
    import platform

    parser = argparse.ArgumentParser(prog="python -m revgnn_dgl.testing.engine_checks", description=main.__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(parser.parse_args(argv).device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"engine checks on {device} ({name}); torch {torch.__version__}, CUDA {torch.version.cuda}")
    failed = [r.name for r in (run_timed(label, check) for label, check in engine_checks(device)) if not r.passed]
    print("check: passed" if not failed else "check: FAILED: " + "; ".join(failed))
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
