"""Evaluation with the paper's protocol: fixed random partitions, logits averaged over views."""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import dgl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import NodeDataset, evaluate_metric
from ..data.metrics import single_class_message, single_class_tasks
from ..data.partitions import PartitionedDataset
from ..errors import DatasetWarning
from ..files import whole_file
from .config import TrainConfig
from .data import DeviceData, random_parts, subgraph
from .inputs import predict

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
    config : TrainConfig, optional
        Its label-reuse settings apply (every training node shows its label).
    machines : list of arrays, optional
        The nodes of each machine of a DistDGL job over several (original ids, in the order of
        the partition's ids: :meth:`~revgnn_dgl.data.partitions.PartitionedDataset.machine_nodes`):
        then the protocol of :class:`~revgnn_dgl.train.distgraph.DistEvaluator`, each machine's
        nodes cut into its own random parts, so that a run's scores are reproduced in one process.
    """

    def __init__(
        self,
        data: DeviceData,
        parts: int,
        views: int,
        seed: int,
        amp: bool = False,
        config: Optional[TrainConfig] = None,
        machines: Optional[List[np.ndarray]] = None,
    ) -> None:
        self.data, self.amp, self.config = data, amp, config
        self.views: List[List[Tuple[dgl.DGLGraph, Optional[Tensor]]]]
        graph = data.graph
        _warn_single_class_tasks(data.dataset)
        if machines is not None and len(machines) > 1:
            drawn = []
            for m, nodes in enumerate(machines):  # as DistEvaluator on machine m: its stream, its nodes
                rng = np.random.default_rng([seed, EVAL_STREAM, m])
                if parts == 1:
                    drawn.append([[nodes]])
                else:
                    drawn.append([[nodes[ids] for ids in random_parts(nodes.size, parts, rng) if ids.size]
                                  for _ in range(views)])  # fmt: skip
            count = 1 if parts == 1 else views
            self.views = [[subgraph(graph, ids) for machine in drawn for ids in machine[v]] for v in range(count)]
        elif parts == 1:
            views = 1  # every view of an uncut graph is the same
            self.views = [[(graph, None)]]
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
                labels = self.data.labels if nodes is None else self.data.labels[nodes]
                train_mask = self.data.train_mask if nodes is None else self.data.train_mask[nodes]
                with autocast:
                    out, _ = predict(
                        model, sub, labels, train_mask, self.config, self.data.dataset.num_outputs, training=False
                    )
                out = out.float()
                if total is None:
                    total = torch.zeros(graph.num_nodes(), out.shape[1], device=out.device)
                if nodes is None:
                    total += out
                else:
                    total[nodes] += out
        assert total is not None, "an evaluation partition has at least one part"
        return total / len(self.views)

    def __call__(self, model: nn.Module) -> Dict[str, float]:
        """``{'val': score, 'test': score, 'val_loss': loss}``: the dataset's metric and the validation loss
        (:func:`validation_loss`; left out when there are no validation nodes)."""
        logits = self.logits(model)
        loss = validation_loss(logits, self.data.dataset)
        return {**self.scores(logits), **({} if loss is None else {"val_loss": loss})}

    def scores(self, logits: Tensor) -> Dict[str, float]:
        """``{'val': score, 'test': score}`` of ``(N, outputs)`` logits, on any device."""
        ds = self.data.dataset
        labels = ds.labels
        return {
            split: evaluate_metric(logits[idx], labels[idx], ds.task, warn_single_class=False)
            for split, idx in (("val", ds.val_idx), ("test", ds.test_idx))
        }


def validation_loss(logits: Tensor, dataset: NodeDataset) -> Optional[float]:
    """The validation nodes' plain loss: cross-entropy, binary for a multi-label task, without label
    smoothing, over the labelled nodes (what ``select: val_loss`` minimises); None without validation nodes."""
    idx = dataset.val_idx
    labels = dataset.labels[idx]
    out = logits[idx.to(logits.device)].float().cpu()
    if dataset.task == "multilabel":
        return float(F.binary_cross_entropy_with_logits(out, labels.float())) if idx.numel() else None
    keep = labels >= 0
    return float(F.cross_entropy(out[keep], labels[keep])) if bool(keep.any()) else None


def _warn_single_class_tasks(dataset: NodeDataset) -> None:
    """Once per evaluator (a run), not at every evaluation: the tasks that a split's labels leave
    out of the mean ROC-AUC."""
    if dataset.task != "multilabel":
        return
    found = {
        split: single_class_tasks(dataset.labels[idx])
        for split, idx in (("val", dataset.val_idx), ("test", dataset.test_idx))
    }
    found = {split: tasks for split, tasks in found.items() if tasks}
    if found:
        where = " and ".join(f"the {split} nodes" for split in found)
        tasks = sorted(set().union(*found.values()))
        warnings.warn(single_class_message(tasks, dataset.labels.shape[1], where), DatasetWarning, stacklevel=3)


def evaluate(
    model: nn.Module,
    dataset: NodeDataset,
    *,
    parts: int = 5,
    views: int = 1,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    amp: bool = False,
    return_logits: bool = False,
    config: Optional[TrainConfig] = None,
    full_graph: bool = False,
    memory_budget: Optional[int] = None,
    machines: Optional[List[np.ndarray]] = None,
) -> Dict[str, Any]:
    """Validation and test scores of a model, with the training runs' evaluation protocol.

    With ``full_graph``, also the model's exact answer on the whole graph, computed in blocks of
    destination nodes within ``memory_budget`` bytes (:mod:`revgnn_dgl.train.fullgraph`), under
    ``'full_graph'``: the two protocols side by side.

    Returns
    -------
    dict
        ``{'metric': name, 'val': score, 'test': score}`` (and ``'full_graph': {'val', 'test',
        'blocks', 'estimated_peak_bytes'}``), and with ``return_logits`` the ``(N, outputs)``
        float32 CPU ``logits`` the scores were computed from (the full graph's, when computed).
    """
    device = torch.device(device)
    model = model.to(device)
    data = DeviceData.on(dataset, device)
    evaluator = Evaluator(data, parts, views, seed, amp=amp, config=config, machines=machines)
    logits = evaluator.logits(model).cpu()
    result: Dict[str, Any] = {"metric": dataset.metric_name, **evaluator.scores(logits)}
    if full_graph:
        from .fullgraph import full_graph_logits, plan_for

        plan = plan_for(model, data, memory_budget)
        logits = full_graph_logits(model, data, config, plan=plan).cpu()
        result["full_graph"] = {**evaluator.scores(logits), "blocks": len(plan.blocks),
                                "estimated_peak_bytes": plan.peak_bytes}  # fmt: skip
    if return_logits:
        result["logits"] = logits
    return result


#: Split codes in a predictions file.
SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "none": -1}


def save_predictions(path: Union[str, Path], dataset: NodeDataset, logits: Tensor) -> Path:
    """Write every node's outputs to an ``.npz`` file (written whole, then renamed).

    Arrays: ``node_id`` (int64, N), ``split`` (int8, N: 0 train, 1 val, 2 test, -1 none),
    ``logits`` (float32, N x outputs), ``probabilities`` (float32: softmax over classes for a
    single-label task, a sigmoid per task for a multi-label one), ``labels`` (int64 class ids, or
    float32 0/1 per task), and the 0-d strings ``task`` and ``metric``.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    split = np.full(dataset.graph.num_nodes(), SPLIT_CODES["none"], dtype=np.int8)
    for name, idx in (("train", dataset.train_idx), ("val", dataset.val_idx), ("test", dataset.test_idx)):
        split[idx.numpy()] = SPLIT_CODES[name]
    probs = torch.sigmoid(logits) if dataset.task == "multilabel" else torch.softmax(logits, dim=-1)
    with whole_file(path, "wb", suffix=".npz") as fh:  # whole, and never through a link
        np.savez(
            fh, node_id=np.arange(dataset.graph.num_nodes(), dtype=np.int64), split=split,
            logits=logits.numpy().astype(np.float32), probabilities=probs.numpy().astype(np.float32),
            labels=dataset.labels.numpy(), task=np.array(dataset.task), metric=np.array(dataset.metric_name),
        )  # fmt: skip
    return path


def chance_level(dataset: NodeDataset) -> Optional[float]:
    """The validation score of a model that learned nothing: 0.5 ROC-AUC, or the accuracy of
    always predicting the most frequent validation class. None when the metric has no such level."""
    if isinstance(dataset, PartitionedDataset):  # worked out when the graph was partitioned
        return dataset.chance_level
    if dataset.metric_name == "rocauc":
        return 0.5
    if dataset.metric_name == "accuracy" and dataset.val_idx.numel():
        labels = dataset.labels[dataset.val_idx]
        return float(torch.bincount(labels[labels >= 0]).max()) / labels.numel()
    return None
