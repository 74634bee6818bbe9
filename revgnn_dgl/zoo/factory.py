"""``create_model``: a card's architecture, built with its arguments, optionally with weights."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .architectures import build_from_config
from .registry import get_config

if TYPE_CHECKING:
    from torch import nn


def create_model(
    name: str, pretrained: Union[bool, str, Path] = False, *, allow_foreign: bool = False, **overrides: Any
) -> "nn.Module":
    """Build a registered model, optionally with weights.

    Parameters
    ----------
    name : str
        A model name or alias (see :func:`revgnn_dgl.list_models`).
    pretrained : bool or path
        ``True``: the card's checkpoint, from the cache (downloaded and verified if the card has a
        URL). A path: a local checkpoint file in this package's format.
    allow_foreign : bool
        With a path: also accept a plain safetensors state dict (no revgnn_dgl header) whose
        keys, dtypes and shapes are exactly the model's.
    **overrides
        Architecture arguments replacing the card's (e.g. ``num_layers=8`` for a quick test).
        Overrides that change the architecture cannot be combined with ``pretrained``.

    Examples
    --------
    >>> model = create_model("revgnn-deep", num_layers=2)
    >>> sum(p.numel() for p in model.parameters())
    51384
    """
    config = get_config(name)
    arguments = {**config["arguments"], **overrides}
    model = build_from_config(config["architecture"], arguments)
    model.zoo_config = {"name": config["name"], "architecture": config["architecture"], "arguments": arguments}  # type: ignore[assignment]
    if pretrained is not False and pretrained is not None:
        # Imported here: they load torch's file machinery, which listing models does not need.
        from .checkpoint import load_weights
        from .hub import pretrained_path

        path = pretrained_path(config) if pretrained is True else Path(pretrained)
        # The card's sha256 pins the whole file, so its own weights may be in an older format.
        pinned = (config.get("checkpoint") or {}).get("sha256") if pretrained is True else None
        load_weights(model, path, expected_architecture=config["architecture"], expected_arguments=arguments,
                     pinned_sha256=pinned, allow_foreign=allow_foreign and pretrained is not True)  # fmt: skip
    return model
