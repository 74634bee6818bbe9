"""Evaluation with the paper's protocol: fixed random partitions, logits averaged over views."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Dict, List, Optional, Tuple, Union

import dgl
import numpy as np
import torch
from torch import Tensor, nn

from ..data import NodeDataset, evaluate_metric
from .data import DeviceData, forward, random_parts, subgraph

#: The random stream of the evaluation partitions (the training stream is 0): evaluation must
#: not depend on how many epochs ran.
EVAL_STREAM = 1


class Evaluator:
    """Validation and test scores with a fixed multi-view partition protocol.

    The ``views`` random partitions into ``parts`` parts are drawn once, from ``seed``, so the
    same model always gets the same score (evaluation is deterministic given the seed).

    Parameters
    ----------
    data : DeviceData
        The dataset on its device.
    parts, views : int
        Parts per view and number of views whose logits are averaged.
    seed : int
        Seed of the partitions.
    amp : bool
        Run under float16 autocast (CUDA only).
    """

    def __init__(self, data: DeviceData, parts: int, views: int, seed: int, amp: bool = False) -> None:
        self.data, self.amp = data, amp
        graph = data.graph
        if parts == 1:
            views = 1  # every view of an uncut graph is the same
            self.views: List[List[Tuple[dgl.DGLGraph, Optional[Tensor]]]] = [[(graph, None)]]
        else:
            rng = np.random.default_rng([seed, EVAL_STREAM])
            self.views = [
                [subgraph(graph, ids) for ids in random_parts(graph.num_nodes(), parts, rng) if ids.size]
                for _ in range(views)
            ]

    @torch.no_grad()
    def logits(self, model: nn.Module) -> Tensor:
        """``(N, outputs)`` float32 logits averaged over the views."""
        model.eval()
        graph = self.data.graph
        total: Optional[Tensor] = None
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()
        for view in self.views:
            for sub, nodes in view:
                with autocast:
                    out = forward(model, sub).float()
                if total is None:
                    total = torch.zeros(graph.num_nodes(), out.shape[1], device=out.device)
                if nodes is None:
                    total += out
                else:
                    total[nodes] += out
        return total / len(self.views)

    def __call__(self, model: nn.Module) -> Dict[str, float]:
        """``{'val': score, 'test': score}`` with the dataset's metric."""
        logits = self.logits(model).cpu()
        ds = self.data.dataset
        labels = ds.labels
        return {
            split: evaluate_metric(logits[idx], labels[idx], ds.task)
            for split, idx in (("val", ds.val_idx), ("test", ds.test_idx))
        }


def evaluate(
    model: nn.Module,
    dataset: NodeDataset,
    *,
    parts: int = 5,
    views: int = 1,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    amp: bool = False,
) -> Dict[str, Any]:
    """Validation and test scores of a model, with the training runs' evaluation protocol.

    Returns
    -------
    dict
        ``{'metric': name, 'val': score, 'test': score}``.
    """
    device = torch.device(device)
    model = model.to(device)
    scores = Evaluator(DeviceData.on(dataset, device), parts, views, seed, amp=amp)(model)
    return {"metric": dataset.metric_name, **scores}
