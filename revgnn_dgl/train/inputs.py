"""What a model sees in one step: its inputs (label reuse included) and which nodes are supervised.

Label reuse (Wang et al., 2021; the released RevGAT recipe for ogbn-arxiv) appends a one-hot of
the labels to the node features. In training a random ``label_rate`` share of the training
nodes shows its label and the loss is taken on the others; in evaluation every training node
shows its label. With ``label_iters`` rounds, the predicted class distribution of the nodes whose
label is hidden is fed back as their label channels and the model is run again.
"""

from __future__ import annotations

from typing import Optional, Tuple

import dgl
import torch
from torch import Tensor, nn

from ..models.revgat import add_label_feats, refill_label_feats
from .config import TrainConfig
from .data import forward


def predict(
    model: nn.Module,
    graph: dgl.DGLGraph,
    labels: Tensor,
    train_mask: Tensor,
    config: Optional[TrainConfig],
    n_classes: int,
    training: bool,
) -> Tuple[Tensor, Tensor]:
    """The model's logits on ``graph`` and the mask of the nodes the loss is taken on.

    Without label reuse: ``forward(model, graph)`` and ``train_mask``. With it: see the module
    docstring. Random draws use the global torch generator (saved with the training state).
    """
    if config is None or not config.use_labels:
        return forward(model, graph), train_mask
    train_ids = train_mask.nonzero().squeeze(1)
    if training:
        shown = torch.rand(train_ids.numel(), device=train_ids.device) < config.label_rate
        shown_ids, supervised_ids = train_ids[shown], train_ids[~shown]
    else:
        shown_ids, supervised_ids = train_ids, train_ids
    g = graph.local_var()
    g.ndata["feat"] = add_label_feats(graph.ndata["feat"], labels, shown_ids, n_classes)
    if config.label_iters:
        with torch.no_grad():  # only the last round's graph is back-propagated
            logits = forward(model, g)
        hidden = torch.ones(graph.num_nodes(), dtype=torch.bool, device=train_ids.device)
        hidden[shown_ids] = False
        hidden_ids = hidden.nonzero().squeeze(1)
        for _ in range(config.label_iters):
            g.ndata["feat"] = refill_label_feats(g.ndata["feat"].clone(), logits, hidden_ids, n_classes)
            logits = forward(model, g)
    else:
        logits = forward(model, g)
    supervised = torch.zeros_like(train_mask)
    supervised[supervised_ids] = True
    return logits, supervised
