"""``revgnn-dgl info --check``: in under a minute, the checks that CI cannot run on a GPU.

CI has no GPU, so the CUDA paths of the reversible engine (the CUDA generator's state recorded
and replayed around dropout, the storage freed and refilled on the device), the CUDA memory
statistics and NCCL are only ever exercised on a user's machine. :func:`run_checks` runs, on the
chosen device:

1. **Reversible backward against ordinary autograd, dropout inside**: gradients of a small
   RevGNN (the paper's shared dropout mask) and of a stack of :class:`~revgnn_dgl.nn.GroupRevRes`
   blocks around ``nn.Dropout`` (random numbers replayed), with the memory-saving backward and
   with ``disable=True``; the relative error (largest difference over the largest gradient)
   must stay below ``1e-4``.
2. **Peak memory of a short stack at two depths**: one training step of a reversible stack at
   4 and 16 layers; the peak less the gradients (which grow with the parameters) must grow by
   less than 25 %: flat in depth.
3. **A 2-process step through the distributed path**, when more than one GPU is visible: one SGD
   step with DDP over NCCL (:mod:`revgnn_dgl.train.distributed`) against one process with two
   parts per step.
4. **The engine's own checks** (:func:`revgnn_dgl.testing.engine_checks.engine_checks`, the CUDA test
   tier's, torch only): float64 gradients equal to autograd's with ``nn.Dropout`` and
   ``SharedDropout`` inside and every kind of extra argument, a ``requires_grad`` switched
   before backward, freed outputs guarded and refilled on the device, autocast (bf16; fp16 and
   the CUDA allocator's peak flat in depth on CUDA).

It ends with one line: ``check: passed`` or ``check: FAILED: ...``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Tuple

import dgl
import numpy as np
import torch
from torch import Tensor, nn

from ..log import get_logger
from ..nn import GENConv, GroupRevRes
from ..testing.engine_checks import CheckResult, engine_checks, run_timed
from ..train.config import TrainConfig
from ..train.data import DeviceData, load_dataset_for, model_overrides
from ..train.device import resolve_device
from ..train.distributed import Context, DistributedError, spawn
from ..train.loop import TRAIN_STREAM, train_epoch
from ..zoo import create_model
from .profiling import measure_peak_memory
from .workload import make_batch

log = get_logger(__name__)

#: Largest relative gradient error accepted for the reversible backward.
GRAD_TOLERANCE = 1e-4
#: Largest growth of the step's peak (gradients excluded) from 4 to 16 reversible layers.
MEMORY_GROWTH = 1.25
#: Largest parameter difference accepted between 2 processes and one (float32, GPU reductions).
DDP_TOLERANCE = 1e-5


class _DropoutConv(nn.Module):
    """``GENConv(Dropout(x))``: a block function that draws random numbers inside ``f``."""

    def __init__(self, channels: int, p: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(p)
        self.conv = GENConv(channels, channels, aggregator="softmax")

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def forward(self, graph: dgl.DGLGraph, feat: Tensor) -> Tensor:
        return self.conv(graph, self.drop(feat))


def _gradients(model: nn.Module, run: Callable[[], Tensor], seed: int) -> List[Tensor]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    run().backward()
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


def _relative_error(a: List[Tensor], b: List[Tensor]) -> float:
    scale = max(float(t.abs().max()) for t in b)
    return max(float((x - y).abs().max()) for x, y in zip(a, b)) / max(scale, 1e-30)


def check_reversible_backward(device: torch.device) -> CheckResult:
    """Gradients of the memory-saving backward against ``disable=True``, dropout on."""
    batch = make_batch(600, 6000, device=device)
    model = create_model("wide", num_layers=4, hidden=32, dropout=0.3).to(device).train()

    def run_model() -> Tensor:
        return model(batch.graph, batch.feat, edge_feat=batch.edge_feat, species=batch.species).square().mean()

    errors = []
    model.set_disable(False)
    rev = _gradients(model, run_model, seed=1)
    model.set_disable(True)
    ref = _gradients(model, run_model, seed=1)
    errors.append(_relative_error(rev, ref))

    torch.manual_seed(0)
    blocks = nn.ModuleList(GroupRevRes(_DropoutConv(16, 0.3), groups=2) for _ in range(3)).to(device).train()
    x0 = torch.randn(batch.graph.num_nodes(), 32, device=device)

    def run_blocks() -> Tensor:
        h = x0 * 1.0
        for block in blocks:
            h = block(batch.graph, h)
        return h.square().mean()

    for block in blocks:
        block.disable = False
    rev = _gradients(blocks, run_blocks, seed=2)
    for block in blocks:
        block.disable = True
    ref = _gradients(blocks, run_blocks, seed=2)
    errors.append(_relative_error(rev, ref))
    passed = max(errors) <= GRAD_TOLERANCE
    detail = (
        f"relative error {errors[0]:.1e} (RevGNN, shared dropout mask), {errors[1]:.1e} (GroupRevRes around "
        f"nn.Dropout, random numbers replayed); tolerance {GRAD_TOLERANCE:.0e}"
    )
    return CheckResult("reversible backward vs autograd", passed, detail)


def _step_peak(device: torch.device, depth: int) -> float:
    """Peak bytes of one forward and backward pass of a reversible stack, less its gradients."""
    batch = make_batch(4000, 40000, device=device)
    torch.manual_seed(0)
    model = create_model("wide", num_layers=depth, hidden=64, dropout=0.1).to(device).train()
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    def step() -> None:
        out = model(batch.graph, batch.feat, edge_feat=batch.edge_feat, species=batch.species)
        loss = nn.functional.binary_cross_entropy_with_logits(out, batch.labels)
        del out
        loss.backward()

    step()  # warm-up: lazy initialisations, DGL formats
    model.zero_grad(set_to_none=True)
    stats = measure_peak_memory(step, device)
    return float(stats.peak_bytes - grad_bytes)


def check_memory_flat(device: torch.device) -> CheckResult:
    """The step's peak at 4 and 16 reversible layers, gradients excluded."""
    shallow, deep = _step_peak(device, 4), _step_peak(device, 16)
    growth = deep / max(shallow, 1.0)
    mib = 1024**2
    detail = (
        f"peak of one step less its gradients: {shallow / mib:.1f} MiB at 4 layers, {deep / mib:.1f} MiB at 16 "
        f"(x{growth:.2f}; flat means below x{MEMORY_GROWTH})"
    )
    return CheckResult("memory flat in depth", growth <= MEMORY_GROWTH, detail)


# ---------------------------------------------------------------------- the distributed step
_STEP: Dict[str, Any] = dict(
    model="wide", dataset="synthetic-proteins", dataset_options={"num_nodes": 600}, num_layers=3, hidden=32, dropout=0.2
)


def _one_step(ctx: Context, device_spec: str, parts_per_step: int, parts: int) -> Dict[str, np.ndarray]:
    """One plain SGD step (lr 1, no clipping) through ``train_epoch``; the parameters after it."""
    config = TrainConfig(**_STEP, device=device_spec)
    dataset = load_dataset_for(config)
    overrides, _ = model_overrides(config, dataset)
    device = ctx.use_device(device_spec)
    torch.manual_seed(0)
    model = create_model(config.model, **overrides).to(device)
    net = ctx.wrap(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    rng = np.random.default_rng([config.seed, TRAIN_STREAM, 1])
    train_epoch(
        net,
        optimizer,
        DeviceData.on(dataset, device),
        parts,
        rng,
        grad_clip=0.0,
        parts_per_step=parts_per_step,
        dist=ctx,
    )
    return {k: v.detach().cpu().numpy() for k, v in model.named_parameters()}


def check_distributed_step(device: torch.device, nproc: int = 2) -> CheckResult:
    """One step with ``nproc`` processes (DDP, NCCL on CUDA) against one process with ``nproc`` parts per step."""
    spec = "cuda" if device.type == "cuda" else "cpu"
    backend = "nccl" if spec == "cuda" else "gloo"
    try:
        ranks = spawn(_one_step, nproc, spec, 1, nproc, threads=1, timeout_s=120)
    except DistributedError as err:
        return CheckResult(f"distributed step ({nproc} processes, {backend})", False, str(err))
    single = _one_step(Context(), str(device), nproc, nproc)
    diff = max(float(np.abs(ranks[0][k] - single[k]).max()) for k in single)
    spread = max(float(np.abs(ranks[r][k] - ranks[0][k]).max()) for r in range(1, nproc) for k in single)
    detail = (
        f"|{nproc} processes - 1 process with {nproc} parts per step| = {diff:.1e} (tolerance {DDP_TOLERANCE:.0e}), "
        f"replicas differ by {spread:.1e}"
    )
    return CheckResult(
        f"distributed step ({nproc} processes, {backend})", diff <= DDP_TOLERANCE and spread == 0.0, detail
    )


def run_checks(device: str = "auto") -> bool:
    """Run the checks on ``device`` and print one line each, then ``check: passed`` or what failed.

    Returns
    -------
    bool
        Whether every check that ran passed.
    """
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the CPU memory profiler's progress lines
    torch_device = resolve_device(device)
    name = torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else "CPU"
    log.info(f"checking on {torch_device} ({name})")
    checks: List[Tuple[str, Callable[[], CheckResult]]] = [
        ("reversible backward vs autograd", lambda: check_reversible_backward(torch_device)),
        ("memory flat in depth", lambda: check_memory_flat(torch_device)),
    ]
    checks += [(f"engine: {name}", check) for name, check in engine_checks(torch_device)]
    gpus = torch.cuda.device_count() if torch_device.type == "cuda" else 0
    if gpus >= 2:
        checks.append(("distributed step", lambda: check_distributed_step(torch_device, 2)))
    results = [run_timed(name, check) for name, check in checks]
    if gpus < 2:
        where = "one GPU" if torch_device.type == "cuda" else "CPU"
        log.info(
            f"  skip   distributed step: {where}, not more than one device visible "
            "(tests/train/test_distributed.py covers 2 processes with gloo)"
        )
    failed = [r for r in results if not r.passed]
    log.info("check: passed" if not failed else "check: FAILED: " + "; ".join(f"{r.name} ({r.detail})" for r in failed))
    return not failed
