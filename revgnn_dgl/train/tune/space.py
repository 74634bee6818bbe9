"""The search space language: ``--space KEY=SPEC`` items and YAML files, parsed into a checked
:class:`SearchSpace` of :class:`Param` dimensions before any trial starts."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ...errors import ConfigError, RevGNNError
from ..config import TrainConfig
from ..settings import check_names
from .settings import _optuna

#: The kinds of a search dimension: ``KIND:LOW:HIGH`` (int also ``:STEP``) or ``choice:A,B,...``.
KINDS = ("float", "loguniform", "int", "logint", "choice")


#: TrainConfig keys a study may not search: they place, size or log the runs, not what they learn.
FIXED_KEYS = ("out", "runs", "nproc", "device", "threads", "save_every", "logger", "root", "dataset",
              "dataset_options", "model_args", "teacher")  # fmt: skip


#: The prefix of a model argument (``train --set KEY=VALUE``) in a search space.
MODEL_ARG = "model_args."


@dataclass(frozen=True)
class Param:
    """One dimension of the search: a TrainConfig key or ``model_args.NAME``, and its range or choices."""

    key: str
    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    step: Optional[int] = None
    choices: Tuple[Any, ...] = ()

    def describe(self) -> str:
        """The dimension as a ``--space`` item."""
        if self.kind == "choice":
            return f"{self.key}=choice:{','.join(str(c) for c in self.choices)}"
        return f"{self.key}={self.kind}:{self.low!r}:{self.high!r}" + (f":{self.step}" if self.step else "")

    def endpoints(self) -> Tuple[Any, ...]:
        """The values that must all be valid settings: the choices, or the range's ends."""
        if self.kind == "choice":
            return self.choices
        return (self.low, self.high)

    def distribution(self) -> Any:
        """The Optuna distribution of this dimension."""
        optuna = _optuna()
        dist = optuna.distributions
        if self.kind == "choice":
            return dist.CategoricalDistribution(list(self.choices))
        low, high = self.endpoints()
        if self.kind in ("int", "logint"):
            return dist.IntDistribution(int(low), int(high), log=self.kind == "logint", step=self.step or 1)
        return dist.FloatDistribution(low, high, log=self.kind == "loguniform")


@dataclass
class SearchSpace:
    """The dimensions of a study, in the order given."""

    params: Dict[str, Param] = field(default_factory=dict)

    def add(self, param: Param, source: str) -> None:
        if param.key in self.params:
            raise ConfigError(f"{source}: {param.key} is searched twice; give it once.")
        self.params[param.key] = param

    def to_dict(self) -> Dict[str, str]:
        return {key: p.describe() for key, p in self.params.items()}

    def distributions(self) -> Dict[str, Any]:
        return {key: p.distribution() for key, p in self.params.items()}

    def check(self, base: TrainConfig) -> None:
        """Refuse, before any trial, a dimension whose values the trainer would not take.

        Every choice and both ends of every range are set on ``base`` one at a time (TrainConfig's
        own checks: type, range), and a model argument is checked against each searched model's builder.
        """
        if not self.params:
            raise ConfigError("the search space is empty: give --space KEY=SPEC (e.g. --space lr=loguniform:1e-4:1e-1) "
                              "or --space-file FILE.")  # fmt: skip
        models = self.params["model"].choices if "model" in self.params else (base.model,)
        for param in self.params.values():
            for value in param.endpoints():
                try:
                    if param.key.startswith(MODEL_ARG):
                        from ..data import check_model_args  # loads DGL: only once the TrainConfig keys are fine

                        for model in models:
                            check_model_args(str(model), {param.key[len(MODEL_ARG) :]: value})
                    else:
                        base.updated({param.key: value}, "the search space")
                        if param.key == "model":
                            check_names(str(value), None)
                    _check_size(param.key, value)
                except RevGNNError as err:
                    raise ConfigError(f"--space {param.describe()}: {err}") from None

    def apply(self, base: TrainConfig, values: Mapping[str, Any], source: str) -> TrainConfig:
        """``base`` with one trial's values (model arguments added to its ``model_args``)."""
        plain = {k: v for k, v in values.items() if not k.startswith(MODEL_ARG)}
        extra = {k[len(MODEL_ARG) :]: v for k, v in values.items() if k.startswith(MODEL_ARG)}
        if extra:
            plain["model_args"] = {**base.model_args, **extra}
        return base.updated(plain, source)


def _check_size(key: str, value: Any) -> None:
    """A searched size (``num_layers``, ``hidden``, ``model_args.heads``...) within the model's bounds,
    so that a range past them is one line before the first trial, not a failure of every trial."""
    from ...limits import check_count
    from ...zoo.architectures import SIZE_ARGUMENTS

    name = key[len(MODEL_ARG) :] if key.startswith(MODEL_ARG) else key
    if name in SIZE_ARGUMENTS and value is not None:
        low, high = SIZE_ARGUMENTS[name]
        check_count(name, value, high, minimum=low)


def parse_space(items: Sequence[str], source: str = "--space") -> SearchSpace:
    """``KEY=SPEC`` items (``lr=loguniform:1e-4:1e-1``, ``num_layers=int:4:16``,
    ``model_args.conv=choice:gcn,gen``) into a :class:`SearchSpace`.

    >>> parse_space(["lr=loguniform:1e-4:1e-1", "model_args.conv=choice:gcn,gen"]).to_dict()
    {'lr': 'lr=loguniform:0.0001:0.1', 'model_args.conv': 'model_args.conv=choice:gcn,gen'}
    """
    space = SearchSpace()
    for item in items:
        key, sep, spec = item.partition("=")
        if not sep or not key.strip() or not spec.strip():
            raise ConfigError(f"{source} {item!r}: expected KEY=SPEC, e.g. lr=loguniform:1e-4:1e-1.")
        space.add(_parse_param(key.strip(), spec.strip(), f"{source} {item}"), source)
    return space


def read_space_file(path: str, space: Optional[SearchSpace] = None) -> SearchSpace:
    """A YAML search space: ``KEY: SPEC`` (the ``--space`` syntax) or ``KEY: {type, low, high, step, choices}``.

    Model arguments are ``model_args.NAME: ...`` or nested under ``model_args:``. The dimensions
    are added to ``space`` (a ``--space`` one searched again is refused).
    """
    from ..config import read_config_file

    data = read_config_file(path)
    space = space if space is not None else SearchSpace()
    entries = []
    for key, spec in data.items():
        if str(key) == "model_args" and isinstance(spec, dict):
            entries += [(f"{MODEL_ARG}{name}", value) for name, value in spec.items()]
        else:
            entries.append((str(key), spec))
    for key, spec in entries:
        where = f"{path}: {key}"
        if isinstance(spec, str):
            param = _parse_param(key, spec, where)
        elif isinstance(spec, dict):
            param = _param_from_mapping(key, spec, where)
        else:
            raise ConfigError(f"{where}: expected a spec like 'loguniform:1e-4:1e-1' or a mapping with type, "
                              f"low, high (or choices), got {spec!r}.")  # fmt: skip
        space.add(param, str(path))
    return space


def _param_from_mapping(key: str, spec: Mapping[str, Any], where: str) -> Param:
    fields = ("type", "low", "high", "step", "choices")
    for name in spec:
        if name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown field {name!r}{hint}; valid: {', '.join(fields)}.")
    kind = spec.get("type")
    if kind == "choice":
        choices = spec.get("choices")
        if not isinstance(choices, list):
            raise ConfigError(f"{where}: a choice needs choices: [A, B, ...], got {choices!r}.")
        return _make_param(key, "choice", where, choices=choices)
    _check_kind(kind, where)
    return _make_param(key, str(kind), where, low=spec.get("low"), high=spec.get("high"), step=spec.get("step"))


def _parse_param(key: str, spec: str, where: str) -> Param:
    kind, _, rest = spec.partition(":")
    kind = kind.strip()
    _check_kind(kind, where)
    if kind == "choice":
        from ..config import load_yaml  # the project's strict loader: no tags, aliases or deep nesting

        choices = [load_yaml(v, f"{where}: the choice {v.strip()!r}") for v in rest.split(",") if v.strip()]
        return _make_param(key, kind, where, choices=choices)
    bounds = rest.split(":")
    if len(bounds) not in (2, 3) or (len(bounds) == 3 and kind != "int"):
        form = f"{kind}:LOW:HIGH" + ("[:STEP]" if kind == "int" else "")
        raise ConfigError(f"{where}: expected {form}, got {spec!r}.")
    values = [_number(text.strip()) for text in bounds]
    return _make_param(key, kind, where, low=values[0], high=values[1], step=values[2] if len(values) == 3 else None)


def _number(text: str) -> Any:
    """``16`` -> 16, ``1e-4`` -> 0.0001 (YAML would read it as text), anything else stays text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _check_kind(kind: Any, where: str) -> None:
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: unknown kind {kind!r}{hint}; valid: {', '.join(KINDS)}.")


def _make_param(key: str, kind: str, where: str, low: Any = None, high: Any = None, step: Any = None,
                choices: Optional[List[Any]] = None) -> Param:  # fmt: skip
    """A checked dimension: a known key, a non-empty range of the kind's type, distinct choices."""
    key = _check_key(key, where)
    if kind == "choice":
        if not choices:
            raise ConfigError(f"{where}: a choice needs at least one value.")
        for value in choices:
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise ConfigError(f"{where}: a choice must be a number, string, true/false or null, got {value!r}.")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}: the choices {choices} repeat a value.")
        return Param(key, kind, choices=tuple(choices))
    integer = kind in ("int", "logint")
    for name, value in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        ok = isinstance(value, int) if integer or name == "step" else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or (isinstance(value, float) and not math.isfinite(value)):
            want = "an integer" if integer or name == "step" else "a finite number"
            raise ConfigError(f"{where}: {name} must be {want}, got {value!r}.")
    if not low < high:
        raise ConfigError(f"{where}: the range [{low}, {high}] is empty; LOW must be below HIGH.")
    if kind in ("loguniform", "logint") and low <= 0:
        raise ConfigError(f"{where}: a log range needs LOW > 0, got {low}.")
    if step is not None and (step < 1 or (high - low) % step):
        raise ConfigError(f"{where}: step {step} must be at least 1 and divide HIGH - LOW ({high - low}).")
    return Param(
        key, kind, low=float(low) if not integer else low, high=float(high) if not integer else high, step=step
    )


def _check_key(key: str, where: str) -> str:
    if key.startswith(MODEL_ARG) or key.startswith("set."):
        name = key.split(".", 1)[1]
        if not name:
            raise ConfigError(f"{where}: name the model argument, e.g. model_args.conv.")
        return MODEL_ARG + name  # checked against the builder once the model is known (SearchSpace.check)
    key = key.replace("-", "_")
    keys = [k for k in TrainConfig.keys() if k not in FIXED_KEYS]
    if key in FIXED_KEYS:
        raise ConfigError(f"{where}: {key} cannot be searched (it places or sizes the runs); give it as an option.")
    if key not in keys:
        close = difflib.get_close_matches(key, keys + [MODEL_ARG + "NAME"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: unknown option {key!r}{hint}; search a train option "
                          f"({', '.join(keys)}) or a model argument as model_args.NAME.")  # fmt: skip
    return key
