"""Training and evaluation the paper's way, with runs that can be interrupted and resumed exactly.

Every epoch, each node is assigned uniformly at random to one of ``train_parts`` parts; each
part's induced subgraph is one batch (one Adam step, gradient norm clipped), in shuffled order.
Evaluation cuts the graph once, at the start, into ``eval_parts`` parts, ``eval_views`` times,
and averages the logits over the views. A run directory holds::

    config.yaml        the resolved TrainConfig (reusable with --config)
    metrics.jsonl      one line per epoch: epoch, loss, val, test, time (and solver convergence for DEQ-GNN)
    best.safetensors   the checkpoint with the best validation score (metrics in its metadata)
    last.safetensors   the latest checkpoint
    state.safetensors  model, optimizer and RNG states for --resume (no pickle)
    summary.json       best validation and its test score (mean ± std over runs)

>>> from revgnn_dgl.training import TrainConfig, train
>>> config = TrainConfig(model="revgnn-wide", dataset="synthetic-proteins",
...                      dataset_options={"num_nodes": 300}, num_layers=2, hidden=16,
...                      epochs=2, out="/tmp/revgnn-doctest", device="cpu")
>>> summary = train(config, echo=lambda line: None)  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import random
import re
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union, get_type_hints

import dgl
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from .checkpoint import save_checkpoint
from .data import NodeDataset, evaluate_metric, load_dataset
from .registry import ZooError, create_model, get_config
from .training_state import TrainingStateError, load_training_state, restore_rng, save_training_state

Echo = Callable[[str], None]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
BEST_FILE = "best.safetensors"
LAST_FILE = "last.safetensors"
STATE_FILE = "state.safetensors"
SUMMARY_FILE = "summary.json"

#: Card arguments that must match the dataset, and so are always taken from it.
WIDTH_ARGUMENTS = ("in_feats", "out_feats", "edge_feats", "species_feats")
#: TrainConfig fields that override card arguments of the same name when set.
MODEL_OVERRIDES = ("dropout", "num_layers", "hidden", "groups")

# Separate random streams: the evaluation partitions must not depend on how many epochs ran.
_TRAIN_STREAM, _EVAL_STREAM = 0, 1


class ConfigError(ZooError):
    """A training or evaluation setting that is unknown, malformed or impossible here."""


@dataclass
class TrainConfig:
    """Everything that defines a training run; defaults follow the paper's ogbn-proteins recipe.

    Parameters
    ----------
    model : str
        A model name or alias from the zoo (``revgnn-deep``, ``wide``, ...).
    dataset : str
        A dataset name for :func:`revgnn_dgl.data.load_dataset` or a DGL graph file.
    root : str, optional
        Where the dataset lives (``load_dataset``'s ``root``).
    dataset_options : dict
        Extra keyword options of the dataset loader (``num_nodes`` of synthetic-proteins, ...).
    epochs : int
        Number of epochs.
    lr : float
        Adam learning rate.
    grad_clip : float
        Maximum gradient norm; 0 disables clipping.
    train_parts : int
        Random parts per training epoch, one optimizer step each; 1 trains on the full graph.
    eval_parts, eval_views : int
        Evaluation cuts the graph into ``eval_parts`` parts, ``eval_views`` times, and averages
        the logits over the views.
    eval_every : int
        Evaluate every this many epochs (and after the last).
    dropout, num_layers, hidden, groups : optional
        Overrides of the model card's arguments.
    seed : int
        Seed of the (first) run.
    runs : int
        Independent runs with seeds ``seed .. seed + runs - 1``.
    out : str, optional
        Output directory (required by :func:`train`).
    device : str
        ``auto`` (CUDA when both torch and DGL can use it), ``cpu``, ``cuda`` or ``cuda:N``.
    amp : bool
        Evaluate under float16 autocast on CUDA, as the official recipe does.
    """

    model: str = "revgnn-deep"
    dataset: str = "ogbn-proteins"
    root: Optional[str] = None
    dataset_options: Dict[str, Any] = field(default_factory=dict)
    epochs: int = 2000
    lr: float = 1e-3
    grad_clip: float = 1.0
    train_parts: int = 10
    eval_parts: int = 5
    eval_views: int = 1
    eval_every: int = 1
    dropout: Optional[float] = None
    num_layers: Optional[int] = None
    hidden: Optional[int] = None
    groups: Optional[int] = None
    seed: int = 0
    runs: int = 1
    out: Optional[str] = None
    device: str = "auto"
    amp: bool = False

    @classmethod
    def keys(cls) -> List[str]:
        """The valid configuration keys."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "the configuration") -> "TrainConfig":
        """Build and validate a config; keys may use ``-`` or ``_``.

        Raises
        ------
        ConfigError
            Naming the first unknown key (with the closest valid one) or ill-typed value.
        """
        return cls().updated(data, source)

    @classmethod
    def from_file(cls, path: Union[str, Path]) -> "TrainConfig":
        """Read a YAML or JSON file (a mapping of config keys)."""
        return cls.from_mapping(read_config_file(path), source=str(path))

    def updated(self, data: Mapping[str, Any], source: str = "the configuration") -> "TrainConfig":
        """A validated copy with the entries of ``data`` replacing this config's."""
        hints = get_type_hints(type(self))
        values = self.to_dict()
        for raw_key, value in data.items():
            key = str(raw_key).replace("-", "_")
            if key not in hints:
                close = difflib.get_close_matches(key, hints, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown key {raw_key!r} in {source}{hint}; valid keys: {', '.join(hints)}.")
            values[key] = _coerce(key, value, hints[key], source)
        config = type(self)(**values)
        config.validate(source)
        return config

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self, source: str = "the configuration") -> None:
        """Check ranges; raise :class:`ConfigError` naming the offending key."""
        checks = [
            ("epochs", self.epochs >= 1, "at least 1"),
            ("lr", self.lr > 0, "positive"),
            ("grad_clip", self.grad_clip >= 0, "0 (off) or positive"),
            ("train_parts", self.train_parts >= 1, "at least 1"),
            ("eval_parts", self.eval_parts >= 1, "at least 1"),
            ("eval_views", self.eval_views >= 1, "at least 1"),
            ("eval_every", self.eval_every >= 1, "at least 1"),
            ("runs", self.runs >= 1, "at least 1"),
            ("dropout", self.dropout is None or 0 <= self.dropout < 1, "in [0, 1)"),
            ("num_layers", self.num_layers is None or self.num_layers >= 1, "at least 1"),
            ("hidden", self.hidden is None or self.hidden >= 1, "at least 1"),
            ("groups", self.groups is None or self.groups >= 1, "at least 1"),
            ("device", re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None, "auto, cpu, cuda or cuda:N"),
        ]
        for key, ok, want in checks:
            if not ok:
                raise ConfigError(f"{key} must be {want}, got {getattr(self, key)!r} (in {source}).")


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """Check a value from a file or flag against the field's type (ints are accepted as floats)."""
    optional = getattr(hint, "__args__", None) is not None and type(None) in hint.__args__
    base = next(a for a in hint.__args__ if a is not type(None)) if optional else getattr(hint, "__origin__", hint)
    if value is None and optional:
        return None
    if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if base in (str, bool, dict) and isinstance(value, base):
        return dict(value) if base is dict else value
    expected = {float: "a number", int: "an integer", str: "a string", bool: "true or false", dict: "a mapping"}[base]
    raise ConfigError(f"{key} must be {expected}{' or null' if optional else ''}, got {value!r} (in {source}).")


def read_config_file(path: Union[str, Path]) -> Dict[str, Any]:
    """A YAML or JSON file holding one mapping (YAML reads JSON too)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid YAML or JSON: {' '.join(str(err).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not a {type(data).__name__}.")
    return data


# ------------------------------------------------------------------ environment
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
        raise ConfigError(f"--device {spec}: CUDA is not available (torch.cuda.is_available() is False); use --device cpu.")
    if not dgl_has_cuda():
        raise ConfigError(f"--device {spec}: this DGL build has no CUDA support; install a CUDA build of DGL or use --device cpu.")
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


# ------------------------------------------------------------------ model and data
def dataset_widths(dataset: NodeDataset) -> Dict[str, int]:
    """The model input and output widths a dataset needs."""
    species = int(dataset.graph.ndata["species"].shape[1]) if dataset.has_species else 0
    return {
        "in_feats": dataset.num_node_feats,
        "out_feats": dataset.num_outputs,
        "edge_feats": dataset.num_edge_feats,
        "species_feats": species,
    }


def model_overrides(config: TrainConfig, dataset: NodeDataset) -> Tuple[Dict[str, Any], List[str]]:
    """Card-argument overrides for training ``config.model`` on ``dataset``.

    Returns
    -------
    overrides : dict
        The dataset's widths (for the width arguments the card has) and the config's set
        overrides (dropout, num_layers, hidden, groups).
    changes : list of str
        Human-readable ``key: card -> new`` lines for every argument that differs from the card.
    """
    card = get_config(config.model)["arguments"]
    widths = dataset_widths(dataset)
    overrides: Dict[str, Any] = {k: v for k, v in widths.items() if k in card}
    overrides.update({k: getattr(config, k) for k in MODEL_OVERRIDES if getattr(config, k) is not None})
    changes = [f"{k} {card.get(k)} -> {v}" for k, v in overrides.items() if card.get(k) != v]
    return overrides, changes


def check_model_fits(arguments: Mapping[str, Any], dataset: NodeDataset, what: str) -> None:
    """Raise :class:`ConfigError` when a model's widths do not match the dataset's."""
    widths = dataset_widths(dataset)
    wrong = [f"{k}={arguments[k]} (dataset: {widths[k]})" for k in WIDTH_ARGUMENTS if k in arguments and arguments[k] != widths[k]]
    if wrong:
        raise ConfigError(f"{what} does not fit dataset {dataset.name!r}: {', '.join(wrong)}.")


@dataclass
class _Data:
    """A dataset moved to the training device once, shared by every run."""

    dataset: NodeDataset
    graph: dgl.DGLGraph
    labels: Tensor
    train_mask: Tensor

    @classmethod
    def on(cls, dataset: NodeDataset, device: torch.device) -> "_Data":
        graph = dataset.graph.to(device)
        train_mask = torch.zeros(graph.num_nodes(), dtype=torch.bool, device=device)
        train_mask[dataset.train_idx.to(device)] = True
        return cls(dataset, graph, dataset.labels.to(device), train_mask)


def random_parts(num_nodes: int, parts: int, rng: np.random.Generator) -> List[np.ndarray]:
    """Node ids of each part when every node goes uniformly at random to one of ``parts`` parts."""
    assign = rng.integers(parts, size=num_nodes)
    return [np.flatnonzero(assign == p) for p in range(parts)]


def _subgraph(graph: dgl.DGLGraph, ids: np.ndarray) -> Tuple[dgl.DGLGraph, Tensor]:
    """The induced subgraph (node and edge features included) and its nodes' ids in ``graph``."""
    nodes = torch.from_numpy(ids).to(graph.device)
    return dgl.node_subgraph(graph, nodes), nodes


def forward(model: nn.Module, graph: dgl.DGLGraph) -> Tensor:
    """Logits of a model on a graph carrying ``ndata['feat']`` and optional species / edge features."""
    kwargs = {}
    if "feat" in graph.edata:
        kwargs["edge_feat"] = graph.edata["feat"]
    if "species" in graph.ndata:
        kwargs["species"] = graph.ndata["species"]
    return model(graph, graph.ndata["feat"], **kwargs)


def _loss(logits: Tensor, labels: Tensor, task: str) -> Tensor:
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.cross_entropy(logits, labels)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: _Data,
    parts: int,
    rng: np.random.Generator,
    grad_clip: float = 1.0,
) -> float:
    """One epoch: a fresh random partition, one optimizer step per part in shuffled order.

    Returns
    -------
    float
        The loss averaged over the epoch's training nodes.
    """
    model.train()
    graph = data.graph
    if parts == 1:
        batches: List[Tuple[np.ndarray, ...]] = [()]  # the full graph
    else:
        node_parts = random_parts(graph.num_nodes(), parts, rng)
        batches = [(node_parts[p],) for p in rng.permutation(parts)]
    total, count = 0.0, 0
    for batch in batches:
        if batch:
            sub, nodes = _subgraph(graph, batch[0])
            labels, mask = data.labels[nodes], data.train_mask[nodes]
        else:
            sub, labels, mask = graph, data.labels, data.train_mask
        n = int(mask.sum())
        if n == 0:  # tiny graphs can draw a part without training nodes
            continue
        loss = _loss(forward(model, sub)[mask], labels[mask], data.dataset.task)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        total += loss.item() * n
        count += n
    return total / max(count, 1)


class Evaluator:
    """Validation and test scores with a fixed multi-view partition protocol.

    The ``views`` random partitions into ``parts`` parts are drawn once, from ``seed``, so the
    same model always gets the same score (evaluation is deterministic given the seed).

    Parameters
    ----------
    data : _Data
        The dataset on its device.
    parts, views : int
        Parts per view and number of views whose logits are averaged.
    seed : int
        Seed of the partitions.
    amp : bool
        Run under float16 autocast (CUDA only).
    """

    def __init__(self, data: _Data, parts: int, views: int, seed: int, amp: bool = False) -> None:
        self.data, self.amp = data, amp
        graph = data.graph
        if parts == 1:
            views = 1  # every view of an uncut graph is the same
            self.views: List[List[Tuple[dgl.DGLGraph, Optional[Tensor]]]] = [[(graph, None)]]
        else:
            rng = np.random.default_rng([seed, _EVAL_STREAM])
            self.views = [
                [_subgraph(graph, ids) for ids in random_parts(graph.num_nodes(), parts, rng) if ids.size]
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
    scores = Evaluator(_Data.on(dataset, device), parts, views, seed, amp=amp)(model)
    return {"metric": dataset.metric_name, **scores}


# ------------------------------------------------------------------ runs
def run_dirs(config: TrainConfig) -> List[Path]:
    """The run directories of a config: ``out`` itself for one run, ``out/run-I`` for several."""
    out = Path(config.out)
    return [out] if config.runs == 1 else [out / f"run-{i}" for i in range(config.runs)]


def load_dataset_for(config: TrainConfig) -> NodeDataset:
    return load_dataset(config.dataset, root=config.root, **config.dataset_options)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    echo: Echo = print,
    progress: Optional[bool] = None,
) -> Dict[str, Any]:
    """Train ``config.runs`` runs and write their outputs and ``summary.json`` to ``config.out``.

    Parameters
    ----------
    config : TrainConfig
        The run's settings; ``out`` must be set.
    resume : bool
        Continue the runs in ``config.out`` from their saved states (runs not started yet start
        fresh, finished ones are kept). With the same config the result equals an uninterrupted run.
    echo : callable
        Receives the human-readable progress lines.
    progress : bool, optional
        Show a tqdm bar per run; None: only when stderr is a terminal.

    Returns
    -------
    dict
        The summary: per-run best validation score and its test score, and their mean and std.

    Raises
    ------
    ConfigError
        When ``out`` is missing, or already holds a run and ``resume`` is False.
    """
    if not config.out:
        raise ConfigError("no output directory: set out (--out DIR).")
    out = Path(config.out)
    if not resume and ((out / CONFIG_FILE).exists() or (out / METRICS_FILE).exists()):
        raise ConfigError(f"{out} already holds a run; continue it with --resume {out} or choose another --out.")
    device = resolve_device(config.device)
    if config.amp and device.type != "cuda":
        raise ConfigError("--amp needs a CUDA device; mixed precision is not used on CPU.")
    echo(f"device: {device}" + (" (picked by --device auto)" if config.device == "auto" else ""))
    dataset = load_dataset_for(config)
    overrides, changes = model_overrides(config, dataset)
    if changes:
        echo(f"model {config.model}, from dataset {dataset.name} and overrides: {', '.join(changes)}")
    out.mkdir(parents=True, exist_ok=True)
    _write_yaml(out / CONFIG_FILE, config.to_dict())
    data = _Data.on(dataset, device)

    results = []
    for i, run_dir in enumerate(run_dirs(config)):
        run_config = dataclasses.replace(config, seed=config.seed + i, runs=1, out=str(run_dir))
        results.append(_train_run(run_config, data, overrides, device, resume, echo, progress))
    summary = summarize(results, dataset.metric_name)
    _write_json(out / SUMMARY_FILE, summary)
    for split in ("val", "test"):
        stats = summary[split]
        echo(f"{split} {summary['metric']}: {stats['mean']:.4f} ± {stats['std']:.4f} ({len(results)} run(s))")
    return summary


def _train_run(
    config: TrainConfig,
    data: _Data,
    overrides: Dict[str, Any],
    device: torch.device,
    resume: bool,
    echo: Echo,
    progress: Optional[bool],
) -> Dict[str, Any]:
    """One seeded run in ``config.out``; returns its best epoch, validation and test scores."""
    from tqdm.auto import tqdm

    run_dir = Path(config.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    model = create_model(config.model, **overrides).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    evaluator = Evaluator(data, config.eval_parts, config.eval_views, config.seed, amp=config.amp)
    dataset = data.dataset

    best: Dict[str, Any] = {"epoch": None, "val": None, "test": None}
    start = 0
    state_path = run_dir / STATE_FILE
    if resume and state_path.exists():
        state = load_training_state(state_path)
        try:
            model.load_state_dict(state.model)
        except RuntimeError as err:
            raise TrainingStateError(f"{state_path} does not fit model {config.model!r}: {str(err).splitlines()[0]}") from None
        optimizer.load_state_dict(state.optimizer)
        restore_rng(state.rng)
        start, best = state.epoch, state.extra["best"]
        _truncate_metrics(run_dir / METRICS_FILE, start)
        echo(f"resuming {run_dir} after epoch {start}")
    else:
        (run_dir / METRICS_FILE).write_text("")
    _write_yaml(run_dir / CONFIG_FILE, config.to_dict())
    if start == 0:
        params = sum(p.numel() for p in model.parameters())
        echo(f"run {run_dir} (seed {config.seed}): {params:,} parameters, {config.epochs} epochs")

    metric = dataset.metric_name
    meta = {
        "dataset": config.dataset,
        "dataset_options": config.dataset_options,
        "metric": metric,
        "seed": config.seed,
        "eval_parts": config.eval_parts,
        "eval_views": config.eval_views,
    }
    bar = tqdm(
        total=config.epochs,
        initial=start,
        desc=f"seed {config.seed}",
        unit="epoch",
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
    )
    with bar:
        for epoch in range(start + 1, config.epochs + 1):
            tic = time.perf_counter()
            # The partitions depend on (seed, epoch) only, so a resumed run draws the same ones.
            rng = np.random.default_rng([config.seed, _TRAIN_STREAM, epoch])
            loss = train_epoch(model, optimizer, data, config.train_parts, rng, config.grad_clip)
            record: Dict[str, Any] = {"epoch": epoch, "loss": loss, "val": None, "test": None}
            solver = solver_report(model)  # read before evaluation runs new solves
            if solver:
                record["solver"] = solver
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                record.update(evaluator(model))
                if best["val"] is None or record["val"] > best["val"]:
                    best = {"epoch": epoch, "val": record["val"], "test": record["test"]}
                    save_checkpoint(run_dir / BEST_FILE, model, metadata={**meta, **best, "loss": loss})
            record["time"] = time.perf_counter() - tic
            with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            save_checkpoint(run_dir / LAST_FILE, model, metadata={**meta, **record})
            save_training_state(state_path, model=model, optimizer=optimizer, epoch=epoch, extra={"best": best})
            bar.set_postfix(loss=f"{loss:.4f}", val="-" if best["val"] is None else f"{best['val']:.4f}")
            bar.update()
    # The last epoch is always evaluated, so every finished run has a best epoch.
    echo(f"seed {config.seed}: best val {metric} {best['val']:.4f} at epoch {best['epoch']}, test {best['test']:.4f}")
    return {"seed": config.seed, **best}


def solver_report(model: nn.Module) -> Optional[Dict[str, Any]]:
    """The last training step's fixed-point solves (DEQ-GNN), for the epoch's metrics line.

    ``None`` for models without a solver. Non-convergence also warns, with the same numbers.
    """
    report = {}
    for phase in ("forward", "backward"):
        info = getattr(model, f"last_{phase}_info", None)
        if info is not None:
            report[phase] = {"iterations": info.iterations, "rel_residual": info.rel_residual, "converged": info.converged}
    return report or None


def summarize(results: List[Dict[str, Any]], metric: str) -> Dict[str, Any]:
    """Mean and (sample) standard deviation of the runs' best validation and matching test scores."""
    summary: Dict[str, Any] = {"metric": metric, "runs": results}
    for split in ("val", "test"):
        values = [r[split] for r in results]
        summary[split] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return summary


def read_metrics(run_dir: Union[str, Path]) -> List[Dict[str, Any]]:
    """The records of a run's ``metrics.jsonl``."""
    with open(Path(run_dir) / METRICS_FILE, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _truncate_metrics(path: Path, last_epoch: int) -> None:
    """Drop records past the saved state (written before an interruption, and about to be redone)."""
    records = read_metrics(path.parent) if path.exists() else []
    path.write_text("".join(json.dumps(r) + "\n" for r in records if r["epoch"] <= last_epoch))


def _write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

