"""Which parts each process trains in each optimizer step, and the weight of each part's loss.

One process with one part per step (the paper's recipe) steps once per part with weight 1. In a
data-parallel job (:class:`~revgnn_dgl.train.distributed.Context`, ``W`` ranks) a step takes
``k * W`` parts, ``k`` on each rank; DDP averages the gradients over the ranks, so each part's loss
is weighted ``W / m`` for the mean over the step's ``m`` parts that hold training nodes. The ranks
that share a step's parts are every rank (copies of the graph) or one machine's trainers
(DistDGL, :meth:`DistData.slot <revgnn_dgl.train.distgraph.DistData.slot>`). A rank without a part
of its own joins the gradient reduction with an exact zero (weight 0).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch

from ..errors import TrainingError
from .distributed import Context


@dataclass
class StepPlan:
    """An epoch's optimizer steps on this rank: each a list of ``(part index, weight of its loss)``."""

    steps: List[List[Tuple[int, float]]]
    #: Whether each part's randomness is seeded by its index's seed (so that it does not depend on
    #: which rank computes it); False: the global generators, as the one-process recipe always did.
    seeded: bool


def plan_steps(ctx: Context, data: Any, counts: Sequence[int], per_process: int) -> StepPlan:
    """The steps over parts whose training nodes are ``counts``, ``per_process`` parts per rank and step.

    Raises
    ------
    TrainingError
        When this machine's nodes hold no training node at all (a DistDGL partition to redo).
    """
    slot, slots = data.slot(ctx.rank, ctx.world_size)
    per_step = per_process * slots
    if per_step == 1 and data.machines == 1:
        return StepPlan([[(i, 1.0)] for i, count in enumerate(counts) if count > 0], seeded=False)
    steps = [range(first, min(first + per_step, len(counts))) for first in range(0, len(counts), per_step)]
    lives = [[i for i in step if counts[i] > 0] for step in steps]
    # DDP averages over all ranks: a step's parts with training nodes, over every machine.
    totals = [len(live) for live in lives]
    if data.machines > 1:
        totals = [round(t / slots) for t in ctx.all_reduce_sum([float(t) for t in totals])]
    fallback = next((i for i, c in enumerate(counts) if c > 0), None)
    planned = []
    for step, live, live_total in zip(steps, lives, totals):
        if not live_total:  # tiny graphs can draw parts without training nodes
            continue
        mine = [i for i in step[slot * per_process : (slot + 1) * per_process] if counts[i] > 0]
        weight = ctx.world_size / live_total
        planned.append([(i, weight) for i in mine] or [_zero_part(live, fallback, data)])
    return StepPlan(planned, seeded=True)


def _zero_part(live: List[int], fallback: Optional[int], data: Any) -> Tuple[int, float]:
    """A part this rank forwards with weight 0, to take part in the step's gradient reduction."""
    if fallback is None:
        raise TrainingError(f"machine {getattr(data, 'machine', 0)}'s nodes hold no training node; partition again.")
    return (live[0] if live else fallback), 0.0


@contextmanager
def seeded_part(seed: int, device: torch.device) -> Iterator[None]:
    """Torch's CPU generator, and the CUDA one of ``device``, seeded inside the block and restored after it."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield
