"""The project's exceptions and warnings: one root, one subclass per concern.

Every error the project raises on purpose is a :class:`RevGNNError`, so a caller can catch
them all in one clause; the ones about a bad value are also :class:`ValueError`, as callers
of a library expect. Each message is one line that says what was wrong and what to do.
This module imports nothing, so every layer (the torch-only engine included) can use it.

>>> from revgnn_dgl.errors import CheckpointError, RevGNNError, ZooError
>>> issubclass(CheckpointError, ZooError) and issubclass(ZooError, (RevGNNError, ValueError))
True
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "DatasetWarning",
    "DistributedError",
    "FreedOutputError",
    "GraphInputError",
    "GraphInputTypeError",
    "PeerFailedError",
    "RevGNNError",
    "TrainingDiverged",
    "TrainingError",
    "TrainingStateError",
    "UnsupportedGradientError",
    "ZooError",
    "is_user_error",
]


class RevGNNError(Exception):
    """The root of every error revgnn_dgl raises on purpose."""


class GraphInputError(RevGNNError, ValueError):
    """A graph, feature or argument that a layer or model cannot work with (:mod:`revgnn_dgl.nn`)."""


class FreedOutputError(RevGNNError, RuntimeError):
    """A reversible block's output was read after the next reversible block freed its memory.

    :class:`~revgnn_dgl.nn.GroupRevRes` frees the storage of its input when that input is another
    block's output (the memory-saving backward rebuilds it); ``keep_output=True`` on the block that
    made it, or :func:`~revgnn_dgl.nn.keep_outputs` on a whole model, keeps such outputs readable.
    """


class GraphInputTypeError(GraphInputError, TypeError):
    """An argument of a layer of a type it cannot take (still a :class:`TypeError`)."""


class UnsupportedGradientError(RevGNNError, RuntimeError):
    """A gradient the memory-saving backward cannot give (double backward through a reversible block)."""


class DatasetError(RevGNNError, ValueError):
    """A dataset or data file that could not be loaded or evaluated (:mod:`revgnn_dgl.data`)."""


class ZooError(RevGNNError, ValueError):
    """An unknown model, a bad card or architecture argument (:mod:`revgnn_dgl.zoo`)."""


class CheckpointError(ZooError):
    """A checkpoint that is missing, corrupted, of another model, or that cannot be saved."""


class ConfigError(RevGNNError, ValueError):
    """A training or evaluation setting that is unknown, malformed or impossible here."""


class TrainingError(RevGNNError):
    """A run that started but could not go on (:mod:`revgnn_dgl.train`)."""


class TrainingDiverged(TrainingError):
    """The loss or a gradient became NaN or infinite; the run stopped before the update."""


class TrainingStateError(TrainingError, ValueError):
    """A training state file that is missing, damaged or written by something else."""


class DistributedError(TrainingError):
    """A data-parallel job that cannot start, or that stopped because one of its processes failed."""


class PeerFailedError(DistributedError):
    """Raised on every rank but the failing one when a rank reports an error."""

    def __init__(self, message: str, rank: int) -> None:
        super().__init__(message)
        self.rank = rank


class DatasetWarning(UserWarning):
    """A dataset loaded, but part of what it holds is ignored or unusual.

    For example a DGL graph file with node or edge data under keys the loader does not read,
    or a class too small for the per-class split.
    """


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is the user's to fix, shown as its one-line message without a traceback.

    The project's own errors are; so are OS errors (an unreadable or unwritable path).
    """
    return isinstance(err, (RevGNNError, OSError))
