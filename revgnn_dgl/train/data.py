"""The dataset on the training device: model widths from the data, random node parts, subgraphs."""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import dgl
import numpy as np
import torch
from torch import Tensor, nn

from ..data import NodeDataset, load_dataset
from ..zoo import architecture_arguments, get_config
from .config import MODEL_OVERRIDES, WIDTH_ARGUMENTS, ConfigError, TrainConfig


def load_dataset_for(config: TrainConfig) -> Any:
    """The config's dataset; for a partitioned graph (``config.partitions``) its description only."""
    if config.partitions:
        from ..data.partitions import PartitionedDataset

        return PartitionedDataset(config.partitions)
    return load_dataset(config.dataset, root=config.root, **config.dataset_options)


def dataset_widths(dataset: NodeDataset, use_labels: bool = False) -> Dict[str, int]:
    """The model input and output widths a dataset needs (label reuse adds one input per class)."""
    species = dataset.species_feats
    return {
        "in_feats": dataset.num_node_feats + (dataset.num_outputs if use_labels else 0),
        "out_feats": dataset.num_outputs,
        "edge_feats": dataset.num_edge_feats,
        "species_feats": species,
    }


def check_model_args(model: str, model_args: Mapping[str, Any]) -> None:
    """Refuse ``model_args`` (``--set KEY=VALUE``) that the model's builder does not take.

    Raises
    ------
    ConfigError
        Naming the unknown key with the closest valid one, or a width argument (those always
        come from the dataset).
    """
    card = get_config(model)
    allowed = architecture_arguments(card["architecture"])
    for key in model_args:
        if key in WIDTH_ARGUMENTS:
            raise ConfigError(f"--set {key}: the model's input and output widths are taken from the dataset.")
        if allowed is not None and key not in allowed:
            valid = sorted(set(allowed) - set(WIDTH_ARGUMENTS))
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"--set {key}: not an argument of {card['name']!r} (architecture {card['architecture']!r}){hint}; "
                f"valid: {', '.join(valid)}."
            )
        _check_model_arg(key, model_args[key], card["arguments"].get(key, _builder_default(card["architecture"], key)))


def _builder_default(architecture: str, key: str) -> Any:
    """The default of ``key`` in the architecture's builder (None when it has none or takes **kwargs)."""
    from ..zoo.architectures import _ARCHITECTURES

    try:
        param = inspect.signature(_ARCHITECTURES[architecture]).parameters.get(key)
    except (KeyError, TypeError, ValueError):
        return None
    return None if param is None or param.default is param.empty else param.default


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _check_model_arg(key: str, value: Any, reference: Any) -> None:
    """A ``--set`` value of the type the card's (or the builder's) value has, and finite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"--set {key} must be a finite number, got {value!r}.")
    if value is None or reference is None:
        return
    kind = type(reference)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if kind in _KINDS and type(value) is not kind:
        raise ConfigError(f"--set {key} must be {_KINDS[kind]} (as in the model card), got {value!r:.60}.")


def check_parts(config: TrainConfig, dataset: NodeDataset) -> None:
    """Refuse more parts than the graph has nodes: a part would be empty."""
    nodes = dataset.num_nodes
    for key in ("train_parts", "eval_parts"):
        if getattr(config, key) > nodes:
            raise ConfigError(
                f"{key}={getattr(config, key)} is more than the {nodes} nodes of {dataset.name!r}; every part needs a node."
            )


def model_overrides(config: TrainConfig, dataset: NodeDataset) -> Tuple[Dict[str, Any], List[str]]:
    """Card-argument overrides for training ``config.model`` on ``dataset``.

    Returns
    -------
    overrides : dict
        The dataset's widths (for the width arguments the card has), the config's set
        overrides (dropout, num_layers, hidden, groups) and its ``model_args``.
    changes : list of str
        Human-readable ``key: card -> new`` lines for every argument that differs from the card.
    """
    check_model_args(config.model, config.model_args)
    card = get_config(config.model)["arguments"]
    if config.use_labels and dataset.task != "multiclass":
        raise ConfigError(f"--use-labels needs a single-label task; {dataset.name!r} is {dataset.task}.")
    if config.loss == "log_ce" and dataset.task != "multiclass":
        raise ConfigError(f"--loss log_ce needs a single-label task; {dataset.name!r} is {dataset.task}.")
    widths = dataset_widths(dataset, config.use_labels)
    overrides: Dict[str, Any] = {k: v for k, v in widths.items() if k in card}
    for key in MODEL_OVERRIDES:
        value = getattr(config, key)
        if value is not None and key in config.model_args and config.model_args[key] != value:
            raise ConfigError(f"{key} is set twice, to {value!r} and (--set) {config.model_args[key]!r}; give it once.")
    overrides.update(config.model_args)
    overrides.update({k: getattr(config, k) for k in MODEL_OVERRIDES if getattr(config, k) is not None})
    changes = [f"{k} {card.get(k)} -> {v}" for k, v in overrides.items() if card.get(k) != v]
    return overrides, changes


def check_model_fits(arguments: Mapping[str, Any], dataset: NodeDataset, what: str, use_labels: bool = False) -> None:
    """Raise :class:`ConfigError` when a model's widths do not match the dataset's."""
    widths = dataset_widths(dataset, use_labels)
    wrong = [
        f"{k}={arguments[k]} (dataset: {widths[k]})"
        for k in WIDTH_ARGUMENTS
        if k in arguments and arguments[k] != widths[k]
    ]
    if wrong:
        raise ConfigError(f"{what} does not fit dataset {dataset.name!r}: {', '.join(wrong)}.")


@dataclass
class DeviceData:
    """A dataset moved to the training device once, shared by every run."""

    dataset: NodeDataset
    graph: dgl.DGLGraph
    labels: Tensor
    train_mask: Tensor

    #: Data parallelism over copies: one "machine" whose nodes every rank sees.
    machines = 1
    stream: Tuple[int, ...] = ()

    @classmethod
    def on(cls, dataset: NodeDataset, device: torch.device) -> "DeviceData":
        graph = dataset.graph.to(device)
        train_mask = torch.zeros(graph.num_nodes(), dtype=torch.bool, device=device)
        train_mask[dataset.train_idx.to(device)] = True
        return cls(dataset, graph, dataset.labels.to(device), train_mask)

    @property
    def num_nodes(self) -> int:
        return int(self.graph.num_nodes())

    @property
    def device(self) -> torch.device:
        return self.graph.device

    def train_count(self, ids: Optional[np.ndarray]) -> int:
        """Training nodes among the nodes ``ids`` (None: the whole graph)."""
        if ids is None:
            return int(self.train_mask.sum())
        return int(self.train_mask[torch.from_numpy(ids).to(self.graph.device)].sum())

    def part(self, ids: Optional[np.ndarray]) -> Tuple[dgl.DGLGraph, Tensor, Tensor, Optional[Tensor]]:
        """The induced subgraph of nodes ``ids`` (None: the whole graph), its labels, training mask and node ids."""
        if ids is None:
            return self.graph, self.labels, self.train_mask, None
        sub, nodes = subgraph(self.graph, ids)
        return sub, self.labels[nodes], self.train_mask[nodes], nodes

    def slot(self, rank: int, world: int) -> Tuple[int, int]:
        """This rank's place among those that share a step's parts: all of them."""
        return rank, world


def random_parts(num_nodes: int, parts: int, rng: np.random.Generator) -> List[np.ndarray]:
    """Node ids of each part when every node goes uniformly at random to one of ``parts`` parts."""
    assign = rng.integers(parts, size=num_nodes)
    return [np.flatnonzero(assign == p) for p in range(parts)]


def subgraph(graph: dgl.DGLGraph, ids: np.ndarray) -> Tuple[dgl.DGLGraph, Tensor]:
    """The induced subgraph (node and edge features included) and its nodes' ids in ``graph``."""
    nodes = torch.from_numpy(ids).to(graph.device)
    return dgl.node_subgraph(graph, nodes), nodes


def forward(model: nn.Module, graph: dgl.DGLGraph) -> Tensor:
    """Logits of a model on a graph carrying ``ndata['feat']`` and optional species / edge features
    (passed only to a model whose ``forward`` takes them)."""
    takes = _forward_inputs(type(model))  # type: ignore[arg-type]  # a class hashes; mypy reads nn.Module.__hash__
    kwargs = {}
    if "feat" in graph.edata and "edge_feat" in takes:
        kwargs["edge_feat"] = graph.edata["feat"]
    if "species" in graph.ndata and "species" in takes:
        kwargs["species"] = graph.ndata["species"]
    return model(graph, graph.ndata["feat"], **kwargs)


@functools.lru_cache(maxsize=None)
def _forward_inputs(cls: Any) -> frozenset:
    params = inspect.signature(cls.forward).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return frozenset({"edge_feat", "species"})
    return frozenset(params)
