"""The data layer's error and warning types (importable without DGL or torch)."""
from __future__ import annotations


class DatasetError(ValueError):
    """A dataset could not be loaded or evaluated.

    The message says what was wrong and what to do about it.
    """


class DatasetWarning(UserWarning):
    """A dataset loaded, but part of what it holds is ignored or unusual.

    For example a DGL graph file with node or edge data under keys the loader
    does not read, or a class too small for the per-class split.
    """
