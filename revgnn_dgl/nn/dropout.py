"""Dropout whose mask is an explicit input, drawn once and shared by every layer."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..errors import ConfigError


class SharedDropout(nn.Module):
    r"""Dropout with an explicit, shared mask (the paper's choice for reversible stacks).

    :meth:`sample_mask` draws one Bernoulli mask, scaled by :math:`1/(1-p)`, per forward
    pass of a model; every layer then calls ``forward(x, mask)`` with the same mask (or its
    channel slice). Because the mask is an input rather than hidden random state, the
    backward pass of a reversible block recomputes exactly the same function without
    replaying the random-number generator.

    Parameters
    ----------
    p : float
        Drop probability, in ``[0, 1)``.

    Examples
    --------
    >>> import torch
    >>> drop = SharedDropout(0.5)
    >>> x = torch.ones(4, 6)
    >>> mask = drop.sample_mask(x)
    >>> torch.equal(drop(x, mask), x * mask)
    True
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"SharedDropout: p must be in [0, 1), got {p}.")
        self.p = p

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def sample_mask(self, like: Tensor) -> Optional[Tensor]:
        """A mask shaped like ``like``, or ``None`` when dropout is off (eval mode or ``p == 0``)."""
        if not self.training or self.p == 0.0:
            return None
        keep = 1.0 - self.p
        return torch.empty_like(like, memory_format=torch.contiguous_format).bernoulli_(keep).div_(keep)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        if mask is None or not self.training:
            return x
        if mask.shape != x.shape:
            raise ConfigError(
                f"SharedDropout: mask of shape {tuple(mask.shape)} does not match input {tuple(x.shape)}."
            )
        return x * mask
