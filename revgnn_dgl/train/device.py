"""Devices and seeds: where a run computes, and how it is made reproducible."""

from __future__ import annotations

import random
from typing import Optional

import dgl
import numpy as np
import torch

from .config import ConfigError


def dgl_has_cuda() -> Optional[bool]:
    """Whether DGL can put a graph on the GPU; None when there is no GPU to try it on."""
    if not torch.cuda.is_available():
        return None
    try:
        dgl.graph(([0], [0])).to("cuda")
    except Exception:  # a CPU build of DGL raises its own error type here
        return False
    return True


def resolve_device(spec: str) -> torch.device:
    """The device for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    ``auto`` picks CUDA only when torch sees a GPU *and* DGL was built with CUDA.

    Raises
    ------
    ConfigError
        When CUDA is asked for but unusable.
    """
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "auto":
        return torch.device("cuda" if dgl_has_cuda() else "cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"--device {spec}: CUDA is not available (torch.cuda.is_available() is False); use --device cpu."
        )
    if not dgl_has_cuda():
        raise ConfigError(
            f"--device {spec}: this DGL build has no CUDA support; install a CUDA build of DGL or use --device cpu."
        )
    device = torch.device(spec)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible.")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's, torch's (CPU and CUDA) and DGL's generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dgl.seed(seed)
