"""The default thread count: a rule of cores and load (not a timing), and its oversubscription note."""

from __future__ import annotations

import pytest

from revgnn_dgl.env import pick_threads, thread_note
from revgnn_dgl.limits import cpu_cores


@pytest.mark.parametrize(
    "cores, load, processes, expected",
    [
        (2, 0.0, 1, 2),  # an idle machine: every core
        (2, 0.4, 1, 2),
        (2, 0.6, 1, 1),  # half a core busy rounds to one taken
        (2, 1.0, 1, 1),  # one other CPU-bound job on 2 cores: 1 thread (torch's 2 ran 20-50x slower)
        (2, 7.5, 1, 1),  # never fewer than one
        (16, 3.2, 1, 13),
        (16, 0.0, 4, 4),  # shared among the processes of a job
        (2, 0.0, 4, 1),
        (1, 0.0, 1, 1),
    ],
)
def test_pick_threads_takes_the_free_cores(cores: int, load: float, processes: int, expected: int) -> None:
    assert pick_threads(cores, load, processes) == expected


def test_thread_note_only_when_oversubscribed() -> None:
    assert thread_note(threads=1, processes=1, cores=2, load=1.0) is None
    assert thread_note(threads=2, processes=1, cores=2, load=0.2) is None
    note = thread_note(threads=2, processes=1, cores=2, load=1.1)
    assert note is not None and "2 cores" in note and "load of 1.1" in note
    assert thread_note(threads=1, processes=4, cores=2, load=0.0) is not None


def test_cpu_cores_is_positive() -> None:
    assert cpu_cores() >= 1
