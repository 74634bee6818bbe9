"""The training recipe's knobs: optimizer, learning-rate schedule and per-step regularisation.

Everything here is a pure function of the configuration, the epoch and the global random
generators, whose states the training state saves: a resumed run draws exactly what the
uninterrupted one drew.
"""

from __future__ import annotations

import math
from typing import Iterable, Union

import dgl
import torch
from torch import Tensor, nn

from .config import TrainConfig


def make_optimizer(model: Union[nn.Module, Iterable[nn.Parameter]], config: TrainConfig) -> torch.optim.Optimizer:
    """``Adam`` (the paper's; ``weight_decay`` as L2), ``AdamW`` (decoupled weight decay) or
    ``RMSprop`` (the released RevGAT recipe; ``weight_decay`` as L2).

    Given a model and ``config.layer_weight_decay``, the parameters of the model's ``layers``
    (its blocks) form a second group with that weight decay, as GCNII trains (0.01 on the convs,
    5e-4 on the dense encoder and head); without it, one group.

    >>> net = nn.ModuleDict({"layers": nn.Linear(2, 2), "head": nn.Linear(2, 1)})
    >>> opt = make_optimizer(net, TrainConfig(weight_decay=5e-4, layer_weight_decay=0.01))
    >>> [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups]
    [(2, 0.01), (2, 0.0005)]
    """
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}[config.optimizer]
    if isinstance(model, nn.Module):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if config.layer_weight_decay is not None:
            layers = [p for n, p in named if n.split(".", 1)[0] == "layers"]
            if not layers:
                from ..errors import ConfigError

                raise ConfigError(
                    f"layer_weight_decay: {type(model).__name__} has no parameters under `layers`; use weight_decay."
                )
            rest = [p for n, p in named if n.split(".", 1)[0] != "layers"]
            groups = [{"params": layers, "weight_decay": config.layer_weight_decay}]
            if rest:
                groups.append({"params": rest, "weight_decay": config.weight_decay})
            return cls(groups, lr=config.lr)
        model = [p for _, p in named]
    return cls(model, lr=config.lr, weight_decay=config.weight_decay)


def lr_at(epoch: int, config: TrainConfig) -> float:
    r"""The learning rate of ``epoch`` (1-based).

    With :math:`w` warm-up epochs, epoch :math:`e \le w` uses :math:`\mathrm{lr}\cdot e/w`.
    After it, with :math:`t = e - w - 1` and :math:`T = \mathrm{epochs} - w`:

    - ``constant``: :math:`\mathrm{lr}`;
    - ``cosine``: :math:`\mathrm{min\_lr} + \tfrac12(\mathrm{lr}-\mathrm{min\_lr})(1+\cos(\pi t/T))`;
    - ``step``: :math:`\mathrm{lr}\cdot\gamma^{\lfloor t/\mathrm{step\_size}\rfloor}`.

    >>> config = TrainConfig(lr=1.0, epochs=10, schedule="cosine", warmup_epochs=2)
    >>> [round(lr_at(e, config), 3) for e in (1, 2, 3, 7, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.038]
    """
    warmup = config.warmup_epochs
    if epoch <= warmup:
        return config.lr * epoch / warmup
    t = epoch - warmup - 1
    if config.schedule == "cosine":
        total = max(config.epochs - warmup, 1)
        return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * t / total))
    if config.schedule == "step":
        return config.lr * config.gamma ** (t // config.step_size)
    return config.lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def drop_edges(graph: dgl.DGLGraph, p: float) -> dgl.DGLGraph:
    """DropEdge: the graph with each edge kept with probability ``1 - p`` (node ids unchanged).

    The returned graph is what the whole forward pass sees, so a reversible model's
    recomputation in the backward pass uses exactly the same edges.
    """
    if p == 0 or graph.num_edges() == 0:
        return graph
    keep = torch.rand(graph.num_edges(), device=graph.device) >= p
    return dgl.edge_subgraph(graph, keep.nonzero().squeeze(1), relabel_nodes=False, store_ids=False)


def drop_input(feat: Tensor, p: float) -> Tensor:
    """Dropout on the input node features (inverted: kept entries scaled by ``1 / (1 - p)``)."""
    return torch.nn.functional.dropout(feat, p=p, training=True) if p > 0 else feat
