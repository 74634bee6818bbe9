"""The training configuration: every setting of a run, validated, readable from YAML or JSON."""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union, get_type_hints

import yaml

from ..errors import ConfigError
from ..limits import MAX_RUNS

OPTIMIZERS = ("adam", "adamw", "rmsprop")
LOSSES = ("ce", "log_ce")
SCHEDULES = ("constant", "cosine", "step")
#: How a run picks its best epoch (best checkpoint, summary, early stopping): the highest
#: validation score, or the lowest validation loss (GCNII's rule).
SELECTIONS = ("val", "val_loss")
#: The experiment logs ``logger`` may name (comma-separated), besides metrics.jsonl.
LOGGERS = ("csv", "tensorboard")
#: Card arguments that must match the dataset, and so are always taken from it.
WIDTH_ARGUMENTS = ("in_feats", "out_feats", "edge_feats", "species_feats")
#: TrainConfig fields that override card arguments of the same name when set.
MODEL_OVERRIDES = ("dropout", "num_layers", "hidden", "groups")
#: The least value of each integer setting: :meth:`TrainConfig.validate` and the command line's
#: ranges both read it (``seed`` and ``runs`` have upper bounds too, checked by ``validate``).
MINIMUM = {
    "epochs": 1, "train_parts": 1, "parts_per_step": 1, "nproc": 1, "servers": 1, "eval_parts": 1,
    "eval_views": 1, "eval_every": 1, "runs": 1, "num_layers": 1, "hidden": 1, "groups": 1, "threads": 1,
    "warmup_epochs": 0, "step_size": 1, "patience": 0, "chance_patience": 0, "save_every": 1, "label_iters": 0,
}  # fmt: skip
#: What ``train --resume`` may change; everything else must stay as the run was started.
RESUMABLE_KEYS = ("epochs", "device", "threads", "save_every", "logger", "servers", "out")


@dataclass
class TrainConfig:
    r"""Everything that defines a training run; defaults follow the paper's ogbn-proteins recipe.

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
        Learning rate of the optimizer (``optimizer``).
    grad_clip : float
        Maximum gradient norm; 0 disables clipping.
    train_parts : int
        Random parts per training epoch; 1 trains on the full graph.
    parts_per_step : int
        Parts each process consumes per optimizer step: the step's loss is the mean over the
        ``parts_per_step * nproc`` parts' losses (1: one step per part, the paper's recipe). The
        last step of an epoch takes the parts left over.
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
    threads : int, optional
        torch CPU threads of each process (``torch.set_num_threads``); None leaves torch as the caller
        set it. ``revgnn-dgl train`` without ``--threads`` stores the cores other jobs leave free
        (:func:`revgnn_dgl.env.pick_threads`), so that ``--resume`` runs with the same count.
    model_args : dict
        Any further argument of the model's builder (``conv``, ``aggregator``, ``norm``,
        ``learn_t``...), as ``train --set KEY=VALUE`` gives them; checked against the builder.
    optimizer : str
        ``adam`` (the paper's), ``adamw`` (decoupled weight decay) or ``rmsprop`` (the released
        RevGAT recipe).
    weight_decay : float
        Weight decay; with ``adam`` it is L2 added to the gradient, with ``adamw`` decoupled.
    layer_weight_decay : float, optional
        Weight decay of the parameters of the model's blocks (``layers``), the others keeping
        ``weight_decay`` (GCNII's recipe: 0.01 on the convs, 5e-4 on the dense layers); None: one
        weight decay for all.
    schedule : str
        Learning-rate schedule over the epochs: ``constant``, ``cosine`` (to ``min_lr`` at the last
        epoch) or ``step`` (times ``gamma`` every ``step_size`` epochs).
    warmup_epochs : int
        Linear warm-up of the learning rate from ``lr / warmup_epochs`` over this many epochs.
    min_lr, step_size, gamma : float, int, float
        Parameters of the cosine and step schedules.
    patience : int
        Early stopping: stop when the validation metric has not improved for this many
        evaluations; 0 never stops early. The best checkpoint is kept either way.
    select : str
        Which evaluated epoch is the run's best (its checkpoint, its scores in the summary, and what
        ``patience`` waits for): ``val``, the highest validation score (the first on a tie), or
        ``val_loss``, the lowest validation loss (GCNII's rule; the plain cross-entropy, or binary
        cross-entropy for a multi-label task, without label smoothing; the first on a tie). Not
        with ``partitions``.
    input_dropout : float
        Dropout on the input node features, drawn afresh every step.
    edge_dropout : float
        DropEdge: every step trains on a fresh random subset keeping each edge with probability
        ``1 - edge_dropout``. The whole forward pass (and a reversible model's recomputation)
        sees the same subset.
    label_smoothing : float
        Label smoothing of the cross-entropy (single-label tasks only).
    loss : str
        ``ce`` (cross-entropy; binary for multi-label tasks) or ``log_ce``, the released RevGAT
        loss :math:`\log(\epsilon + \mathrm{CE}) - \log\epsilon` (single-label tasks).
    use_labels : bool
        Label reuse (single-label tasks): a random ``label_rate`` share of the training nodes
        shows its label as extra input channels, the loss is taken on the others; the model's
        ``in_feats`` grows by the number of classes.
    label_rate : float
        Share of the training nodes whose label is shown in a training step.
    label_iters : int
        Rounds in which the predictions of the nodes without a shown label are fed back.
    teacher : str, optional
        A finished run directory (same dataset) whose best model's logits the student is
        distilled from (self-knowledge distillation, the released RevGAT-KD).
    kd_alpha, kd_temp : float
        Weight of the distillation term and its temperature.
    chance_patience : int
        Warn when the validation metric stays at chance level (0.5 ROC-AUC, or the accuracy of
        always predicting the most frequent training class) for this many evaluations; 0: never.
    nproc : int
        Data-parallel processes (the world size) that train the run together, each on its
        share of every step's parts (see :mod:`revgnn_dgl.train.distributed`). A run with
        ``nproc`` W equals a one-process run with ``parts_per_step`` multiplied by W.
    save_every : int
        Write the resumable state and ``last.safetensors`` every this many epochs (and always
        after the last one); the best checkpoint is written whenever the validation score
        improves, the metrics line every epoch. An interrupted run resumes from the last state
        written and redoes the epochs after it, exactly.
    logger : str, optional
        Experiment logs besides ``metrics.jsonl``, comma-separated: ``csv`` (``metrics.csv``),
        ``tensorboard`` (event files under ``tensorboard/``; the ``tensorboard`` extra).
    partitions : str, optional
        Train on a graph partitioned by ``revgnn-dgl partition`` (its ``NAME.json``), through DGL's
        distributed graph: graph servers hold the graph, the ``nproc`` trainers fetch their parts
        (see :mod:`revgnn_dgl.train.distgraph`). ``dataset`` is then the partitioned one's.
    servers : int
        Graph servers per machine when the command starts them itself (one machine).
    """

    model: str = "revgnn-deep"
    dataset: str = "ogbn-proteins"
    root: Optional[str] = None
    dataset_options: Dict[str, Any] = field(default_factory=dict)
    epochs: int = 2000
    lr: float = 1e-3
    grad_clip: float = 1.0
    train_parts: int = 10
    parts_per_step: int = 1
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
    threads: Optional[int] = None
    model_args: Dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    weight_decay: float = 0.0
    layer_weight_decay: Optional[float] = None
    schedule: str = "constant"
    warmup_epochs: int = 0
    min_lr: float = 0.0
    step_size: int = 100
    gamma: float = 0.5
    patience: int = 0
    select: str = "val"
    input_dropout: float = 0.0
    edge_dropout: float = 0.0
    label_smoothing: float = 0.0
    loss: str = "ce"
    use_labels: bool = False
    label_rate: float = 0.5
    label_iters: int = 0
    teacher: Optional[str] = None
    kd_alpha: float = 0.95
    kd_temp: float = 0.7
    chance_patience: int = 20
    nproc: int = 1
    save_every: int = 1
    logger: Optional[str] = None
    partitions: Optional[str] = None
    servers: int = 1

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
            _least(self, "epochs"),
            # NaN fails every comparison, so these also refuse nan and inf.
            ("lr", 0 < self.lr < float("inf"), "a positive finite number"),
            ("grad_clip", 0 <= self.grad_clip < float("inf"), "0 (off) or a positive finite number"),
            _least(self, "train_parts"),
            _least(self, "parts_per_step"),
            _least(self, "nproc"),
            _least(self, "servers"),
            _least(self, "eval_parts"),
            _least(self, "eval_views"),
            _least(self, "eval_every"),
            ("runs", MINIMUM["runs"] <= self.runs <= MAX_RUNS, f"in [{MINIMUM['runs']}, {MAX_RUNS}]"),
            ("dropout", self.dropout is None or 0 <= self.dropout < 1, "in [0, 1)"),
            _least(self, "num_layers"),
            _least(self, "hidden"),
            _least(self, "groups"),
            ("device", re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None, "auto, cpu, cuda or cuda:N"),
            # numpy's and torch's generators take seeds in [0, 2**32) for every run's seed.
            ("seed", 0 <= self.seed and self.seed + self.runs - 1 < 2**32, f"in [0, {2**32 - self.runs}]"),
            _least(self, "threads"),
            ("optimizer", self.optimizer in OPTIMIZERS, " or ".join(OPTIMIZERS)),
            ("weight_decay", 0 <= self.weight_decay < float("inf"), "0 or positive"),
            (
                "layer_weight_decay",
                self.layer_weight_decay is None or 0 <= self.layer_weight_decay < float("inf"),
                "0 or positive",
            ),
            ("schedule", self.schedule in SCHEDULES, ", ".join(SCHEDULES)),
            _least(self, "warmup_epochs"),
            ("min_lr", 0 <= self.min_lr <= self.lr, "in [0, lr]"),
            _least(self, "step_size"),
            ("gamma", 0 < self.gamma <= 1, "in (0, 1]"),
            _least(self, "patience", "0 (off) or more"),
            ("select", self.select in SELECTIONS, " or ".join(SELECTIONS)),
            ("input_dropout", 0 <= self.input_dropout < 1, "in [0, 1)"),
            ("edge_dropout", 0 <= self.edge_dropout < 1, "in [0, 1)"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            _least(self, "chance_patience", "0 (off) or more"),
            _least(self, "save_every"),
            (
                "logger",
                self.logger is None or set(self.logger.split(",")) <= set(LOGGERS),
                f"a comma-separated list of {', '.join(LOGGERS)}",
            ),
            ("loss", self.loss in LOSSES, " or ".join(LOSSES)),
            ("label_rate", 0 < self.label_rate < 1, "in (0, 1)"),
            _least(self, "label_iters"),
            ("kd_alpha", 0 <= self.kd_alpha <= 1, "in [0, 1]"),
            ("kd_temp", 0 < self.kd_temp < float("inf"), "positive"),
        ]
        for key, ok, want in checks:
            if not ok:
                raise ConfigError(f"{key} must be {want}, got {getattr(self, key)!r} (in {source}).")
        if self.select == "val_loss" and self.partitions:
            raise ConfigError(
                f"select val_loss is not available with partitions (in {source}): the graph servers' evaluation "
                "computes no validation loss; use select val."
            )


def _least(config: TrainConfig, key: str, words: Optional[str] = None) -> Tuple[str, bool, str]:
    """The check of an integer setting against :data:`MINIMUM` (None passes: an optional one left unset)."""
    least, value = MINIMUM[key], getattr(config, key)
    return key, value is None or value >= least, words or (f"at least {least}" if least else "0 or more")


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


#: Nesting of YAML collections: a config is 2 deep; deeper is crafted.
MAX_YAML_DEPTH = 32


class _Refused(yaml.YAMLError):
    """A YAML construct :func:`load_yaml` does not accept."""


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` without aliases (no billion laughs, no recursive structures) and with bounded nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _Refused(f"YAML aliases (*{self.peek_event().anchor}) are not accepted; write the value out")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(f"collections nested more than {MAX_YAML_DEPTH} deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML (or JSON) with the safe loader, without aliases or deep nesting.

    Raises
    ------
    ConfigError
        One line naming ``source`` and what is wrong (a syntax error, a tag, an alias...).
    """
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError) as err:
        problem = getattr(err, "problem", None)
        why = " ".join(str(problem or err).split())[:200]
        raise ConfigError(f"{source} is not valid YAML or JSON: {why}.") from None
    finally:
        loader.dispose()


def read_config_file(path: Union[str, Path]) -> Dict[str, Any]:
    """A YAML or JSON file holding one mapping (YAML reads JSON too)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not valid YAML or JSON: {' '.join(str(err).split())}") from None
    data = load_yaml(text, str(path))
    if data is None:
        raise ConfigError(
            f"{path} is empty; it must hold a mapping of settings (an empty file is never read as the defaults)."
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not a {type(data).__name__}.")
    return data


def uses_big_defaults(config: TrainConfig) -> bool:
    """Whether the ogbn-proteins defaults (the default model) meet another dataset: the run is then
    told what that means, and the pace of its first epoch."""
    defaults = TrainConfig()
    return config.dataset != defaults.dataset and config.model == defaults.model
