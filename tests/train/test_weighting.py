"""Which parts each process trains in each optimizer step, and the weight of each part's loss
(revgnn_dgl.train.weighting), without processes: the ranks and machines are stand-ins."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import pytest

from revgnn_dgl.errors import TrainingError
from revgnn_dgl.train.distributed import Context
from revgnn_dgl.train.weighting import plan_steps


class Copies:
    """Data parallelism over copies of the graph: every rank shares every step's parts."""

    machines = 1

    def slot(self, rank: int, world: int) -> Tuple[int, int]:
        return rank, world


class Machine:
    """One machine's trainers of a DistDGL job over ``machines`` machines."""

    def __init__(self, slot: int, slots: int, machines: int) -> None:
        self.trainer_slot, self.trainer_slots, self.machines, self.machine = slot, slots, machines, 1

    def slot(self, rank: int, world: int) -> Tuple[int, int]:
        return self.trainer_slot, self.trainer_slots


class Ranks(Context):
    """A rank of ``world`` whose all-reduce adds the other machines' ``others``."""

    def __init__(self, rank: int, world: int, others: Sequence[float] = ()) -> None:
        super().__init__(rank, world)
        self.others = list(others)

    def all_reduce_sum(self, values: Sequence[float]) -> List[float]:
        return [v + o for v, o in zip(values, self.others or [0.0] * len(values))]


def test_one_process_one_part_per_step_is_the_papers_recipe() -> None:
    plan = plan_steps(Context(), Copies(), [5, 0, 3], per_process=1)
    assert plan.steps == [[(0, 1.0)], [(2, 1.0)]] and not plan.seeded  # empty parts skipped, global generators


def test_parts_per_step_weight_the_mean_over_the_steps_live_parts() -> None:
    plan = plan_steps(Context(), Copies(), [5, 0, 3, 4, 2], per_process=2)
    assert plan.seeded
    assert plan.steps == [[(0, 1.0)], [(2, 0.5), (3, 0.5)], [(4, 1.0)]]


def test_two_ranks_share_each_step_and_ddp_averages_them() -> None:
    counts = [5, 2, 3, 4]
    rank0 = plan_steps(Ranks(0, 2), Copies(), counts, per_process=1)
    rank1 = plan_steps(Ranks(1, 2), Copies(), counts, per_process=1)
    # DDP averages over the 2 ranks: weight 2 / 2 makes each step the mean over its 2 parts.
    assert rank0.steps == [[(0, 1.0)], [(2, 1.0)]] and rank1.steps == [[(1, 1.0)], [(3, 1.0)]]


def test_a_rank_without_a_part_joins_the_step_with_weight_zero() -> None:
    rank1 = plan_steps(Ranks(1, 2), Copies(), [5, 0], per_process=1)
    assert rank1.steps == [[(0, 0.0)]]  # rank 0's part, forwarded for the gradient reduction only


def test_machines_count_the_live_parts_of_every_machine() -> None:
    # Two machines of one trainer each: this machine's step has 1 live part, the other machine's too.
    plan = plan_steps(Ranks(0, 2, others=[1.0]), Machine(0, 1, machines=2), [5], per_process=1)
    assert plan.steps == [[(0, 1.0)]]  # world 2 / 2 live parts over both machines


def test_a_machine_without_training_nodes_is_a_training_error() -> None:
    with pytest.raises(TrainingError, match="machine 1's nodes hold no training node; partition again"):
        plan_steps(Ranks(0, 2, others=[1.0]), Machine(0, 1, machines=2), [0], per_process=1)
