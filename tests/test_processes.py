"""The supervisor of child processes (revgnn_dgl/processes.py): exit statuses, the rest stopped when one
fails, SIGTERM then SIGKILL within the grace, the environment a started function inherits, a child's frame."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from revgnn_dgl.processes import Children, exit_reason, run_child
from revgnn_dgl.signals import Terminated

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
DEAF = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)",
]


def test_every_child_ending_well_is_no_failure() -> None:
    with Children() as group:
        for code in (0, 0):
            group.start_command([sys.executable, "-c", f"raise SystemExit({code})"])
        assert group.watch(poll_s=0.05) is None
    assert [c.exitcode for c in group] == [0, 0]


def test_the_first_failure_is_named_and_the_rest_are_stopped_on_leaving() -> None:
    tic = time.monotonic()
    with Children(grace_s=5.0) as group:
        sleeper = group.start_command(SLEEP, name="sleeper")
        failing = group.start_command([sys.executable, "-c", "raise SystemExit(3)"], name="failing")
        assert group.watch(poll_s=0.05) is failing
        assert sleeper.exitcode is None  # still running: the block's end stops it
    assert sleeper.exitcode == -signal.SIGTERM and time.monotonic() - tic < 30
    assert (exit_reason(failing.exitcode), exit_reason(sleeper.exitcode)) == (
        "exit status 3",
        "killed by signal SIGTERM",
    )


def test_a_child_deaf_to_sigterm_is_killed_after_the_grace(tmp_path) -> None:
    out = open(tmp_path / "out", "w+")
    group = Children(grace_s=0.5)
    deaf = group.start_command(DEAF, stdout=out)
    while not (tmp_path / "out").read_text():  # its handler is in place
        time.sleep(0.05)
    tic = time.monotonic()
    group.end()
    assert deaf.exitcode == -signal.SIGKILL and 0.4 < time.monotonic() - tic < 10


def test_an_interrupt_while_watching_stops_every_child() -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with Children(grace_s=5.0) as group:
            child = group.start_command(SLEEP)
            group.watch(poll_s=0.05, tick=interrupt)
    assert child.exitcode == -signal.SIGTERM


def test_interrupted_children_are_told_apart() -> None:
    with Children() as group:
        group.start_command([sys.executable, "-c", "raise SystemExit(130)"])
        group.watch(poll_s=0.05)
    assert group.interrupted()


def _child_env(name: str) -> None:
    raise SystemExit(0 if os.environ.get(name) == "set" else 1)


def test_a_started_function_inherits_the_given_environment_which_is_then_restored() -> None:
    name = "REVGNN_DGL_TEST_SUPERVISOR"
    assert name not in os.environ
    with Children() as group:
        group.start_function(_child_env, (name,), env={name: "set"})
        assert group.watch(poll_s=0.05) is None
    assert name not in os.environ


def test_run_child_maps_the_endings_to_statuses(monkeypatch) -> None:
    import revgnn_dgl.processes

    # Not the OS's parent-death signal for the test runner itself: only whether the parent is there.
    monkeypatch.setattr(revgnn_dgl.processes, "end_with_parent", _gone_unless)
    parent = os.getppid()
    assert run_child(parent, lambda: 7, lambda err: 1) == (0, 7)
    assert run_child(parent, _raise(KeyboardInterrupt()), lambda err: 1) == (130, None)
    assert run_child(parent, _raise(Terminated()), lambda err: 1) == (143, None)
    assert run_child(parent, _raise(ValueError("bad")), lambda err: 5) == (5, None)
    assert run_child(os.getpid(), lambda: 7, lambda err: 1, sigterm=False)[0] == 143  # the parent is already gone


def _gone_unless(parent: int) -> None:
    if os.getppid() != parent:
        raise Terminated()


def _raise(err: BaseException):
    def body() -> None:
        raise err

    return body
