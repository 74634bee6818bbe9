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
