"""Normalisation layers by name."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError

NORMS = ("layer", "batch", "none")


def make_norm(kind: str, channels: int) -> nn.Module:
    """Build a norm over the last dimension: ``layer`` (LayerNorm), ``batch`` (BatchNorm1d) or ``none``."""
    if kind == "layer":
        return nn.LayerNorm(channels)
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    if kind in ("none", None):
        return nn.Identity()
    raise ConfigError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}.")


#: What a model may do to its raw node features before the encoder (``input_norm``).
INPUT_NORMS = ("none", "standardize")


def make_input_norm(kind: str, channels: int) -> nn.Module:
    """The node-feature normalisation before a model's encoder (issue 39).

    ``standardize``: every feature channel centred and scaled to unit variance, by a
    ``BatchNorm1d`` without affine weights whose running statistics are the cumulative average
    of the training forwards (``momentum=None``), so that evaluation uses the training graph's
    statistics (exactly those of the whole graph when a run trains on it in one part) and
    checkpoints carry them. Dense features of any scale and offset then reach the encoder at
    unit scale, as the sparse, row-normalised bags of words of the citation graphs never need.
    ``none``: the identity.

    >>> import torch
    >>> norm = make_input_norm("standardize", 3)
    >>> x = 50 + 20 * torch.randn(100, 3)
    >>> y = norm(x)
    >>> bool(y.mean(0).abs().max() < 1e-4), bool((y.std(0, unbiased=False) - 1).abs().max() < 1e-3)
    (True, True)
    """
    if kind == "standardize":
        return nn.BatchNorm1d(channels, affine=False, momentum=None)  # type: ignore[arg-type]  # None: the running mean of every batch
    if kind in ("none", None):
        return nn.Identity()
    raise ConfigError(f"unknown input_norm {kind!r}; choose one of {', '.join(INPUT_NORMS)}.")
