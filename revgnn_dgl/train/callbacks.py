"""Callbacks of a training run, Lightning's way: objects called, in order, at the start of each seeded
run, after each epoch and at its end.

:func:`revgnn_dgl.train.train` takes ``callbacks=[...]``; they run on rank 0, after the epoch's
files are written (so what one raises leaves a run that ``resume`` continues), and
:meth:`Callback.on_train_end` runs however the run ended. The progress report
(:class:`~revgnn_dgl.train.progress.ProgressReport`) comes first; ``train(on_epoch=fn)`` is
:class:`EpochHook` last.

>>> class Losses(Callback):
...     def __init__(self): self.losses = []
...     def on_epoch_end(self, run, record): self.losses.append(record["loss"])
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Sequence


class Callback:
    """A hook into each seeded run; every method does nothing unless overridden.

    ``run`` is the seeded run (its ``config``, ``run_dir``, ``best``, ``metric``, ``start_epoch``,
    ``stopped``, ``model``); ``record`` the epoch's metrics record as ``metrics.jsonl`` has it.
    """

    def on_train_start(self, run: Any) -> None:
        """Before the first epoch this command trains (after a resume's restore)."""

    def on_epoch_end(self, run: Any, record: Dict[str, Any]) -> None:
        """After each epoch's files are written."""

    def on_train_end(self, run: Any) -> None:
        """After the last epoch, an early stop, or an error (then the error propagates after it)."""


class EpochHook(Callback):
    """``train(on_epoch=fn)``: ``fn`` gets a copy of each epoch's record and the run's ``seed``."""

    def __init__(self, fn: Callable[[Dict[str, Any]], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, run: Any, record: Dict[str, Any]) -> None:
        self.fn({**record, "seed": run.config.seed})


class CallbackList(Callback):
    """Callbacks called in their order; every ``on_train_end`` runs even if one before it raised."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, run: Any) -> None:
        for callback in self.callbacks:
            callback.on_train_start(run)

    def on_epoch_end(self, run: Any, record: Dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(run, record)

    def on_train_end(self, run: Any) -> None:
        error = None
        for callback in self.callbacks:
            try:
                callback.on_train_end(run)
            except Exception as err:  # noqa: BLE001  (the others still end; the first error propagates)
                error = error or err
        if error is not None:
            raise error
