"""What a ``train`` or ``evaluate`` command asks for, resolved into a :class:`TrainConfig`.

The command line only parses options; the rules that turn them into a run's settings live here:
a ``--config`` file under the given options, ``--resume`` continuing a run with its saved
configuration, the default output directory, and for ``evaluate`` the settings a run, a
checkpoint or a model card brings. Importing this module loads neither torch nor DGL (those
are imported by the functions that build a model), so bad settings are refused at once.
"""

from __future__ import annotations

import difflib
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import ConfigError, DatasetError, ZooError
from ..log import get_logger
from .config import RESUMABLE_KEYS, TrainConfig, read_config_file

__all__ = [
    "LAUNCHER_ENV",
    "NOT_RECIPE",
    "RESUMABLE_OPTIONS",
    "RECIPES",
    "auto_settings",
    "card_recipe",
    "dataset_has_card",
    "default_out",
    "default_recipe",
    "evaluation_target",
    "fixed_on_resume",
    "resolve_train_config",
    "under_launcher",
]

log = get_logger(__name__)

#: What torchrun (or another launcher) sets for each process it starts.
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
#: The options ``train --resume`` accepts: what may change, less ``out`` (the directory resumed).
RESUMABLE_OPTIONS = tuple(key for key in RESUMABLE_KEYS if key != "out")
#: What ``evaluate --run`` takes from the run's config.yaml.
_RUN_EVAL_KEYS = (
    "dataset",
    "root",
    "dataset_options",
    "eval_parts",
    "eval_views",
    "seed",
    "amp",
    "use_labels",
    "label_iters",
)
#: What ``evaluate --checkpoint`` takes from the checkpoint's metadata.
_CHECKPOINT_EVAL_KEYS = ("dataset", "dataset_options", "eval_parts", "eval_views", "seed", "use_labels", "label_iters")


#: Keys of a card's ``training`` section that are not its recipe: the run's bookkeeping, this
#: machine's settings, and the teacher (a run of the card's author, named by its card).
NOT_RECIPE = ("seed", "runs", "out", "device", "threads", "nproc", "teacher")


#: What ``train --recipe`` takes: ``auto`` (measured from the graph, :mod:`.auto_recipe`) or ``card``
#: (the named model card's recipe, or the ogbn-proteins defaults without a model).
RECIPES = ("auto", "card")


def dataset_has_card(dataset: Optional[str]) -> bool:
    """Whether some zoo card was trained on ``dataset`` (then its recipe, not auto, is the default)."""
    from ..zoo.registry import get_config, list_models

    return dataset is not None and any(get_config(name).get("dataset") == dataset for name in list_models())


def default_recipe(given: Mapping[str, Any], config_file: Optional[str], resume: Optional[str]) -> str:
    """``auto`` when nothing names a recipe (no ``--model``, ``--config`` or ``--resume``) for a dataset
    that no zoo card was trained on; else ``card`` (the behaviour before issue 39)."""
    if resume or config_file or given.get("model") or given.get("partitions"):
        return "card"
    return "card" if dataset_has_card(given.get("dataset", TrainConfig().dataset)) else "auto"


def auto_settings(given: Mapping[str, Any]) -> Dict[str, Any]:
    """The settings ``--recipe auto`` chooses for ``given``'s dataset (:func:`.auto_recipe.choose`).

    The dataset is loaded and measured (features, edges, training labels only); one line per
    choice is said (:mod:`revgnn_dgl.log`). ``given``'s depth sets GCNII's step.
    """
    from ..data import load_dataset
    from .auto_recipe import choose, measure

    if given.get("model"):
        raise ConfigError("--recipe auto chooses the model from the graph; drop --model (or use --recipe card).")
    dataset = given.get("dataset", TrainConfig().dataset)
    check_names(TrainConfig().model, dataset)
    options = dict(given.get("dataset_options") or {})
    loaded = load_dataset(dataset, root=given.get("root"), **options)
    choice = choose(measure(loaded, seed=int(given.get("seed", 0))), depth=given.get("num_layers"))
    for line in choice.lines():
        log.info(line)
    return choice.settings


#: A card's evaluation protocol, which belongs to its dataset (see :func:`card_recipe`).
_EVAL_PROTOCOL = ("eval_parts", "eval_views")


def card_recipe(model: str, dataset: Optional[str] = None) -> Dict[str, Any]:
    """The training recipe a model card brings: TrainConfig settings.

    Every TrainConfig key of the card's ``training`` section but :data:`NOT_RECIPE` (lr, epochs,
    parts, weight decay, schedule, regularisation...), and, unless ``dataset`` names another
    dataset, the card's dataset, its ``dataset_options`` (self-loops...) and its evaluation
    protocol (``eval_parts``, ``eval_views``: ogbn-proteins's 3 parts x 10 views), which belong to it.

    >>> card_recipe("gcn-2")
    {'epochs': 200, 'lr': 0.01, 'weight_decay': 0.0005, 'train_parts': 1, 'eval_parts': 1, 'dataset': 'cora'}
    >>> card_recipe("revgat-cora-16", dataset="citeseer")["patience"]
    100
    """
    from ..zoo.registry import get_config

    card = get_config(model)
    keys = set(TrainConfig.keys()) - set(NOT_RECIPE) - {"model", "dataset", "dataset_options"}
    recipe = {k: v for k, v in (card.get("training") or {}).items() if k in keys}
    own = card.get("dataset")
    if own and dataset in (None, own):
        recipe["dataset"] = own
        if card.get("dataset_options"):
            recipe["dataset_options"] = dict(card["dataset_options"])
    elif own:  # another dataset: its own evaluation protocol, not the card's
        for key in _EVAL_PROTOCOL:
            recipe.pop(key, None)
    return recipe


def _edge_feats_opt_out(given: Dict[str, Any]) -> None:
    """``--set edge_feats=0`` (the one width a user may set): ignore the graph's edge features,
    as ``--dataset-option edge_feats=false`` does (the dataset then has none)."""
    model_args = given.get("model_args") or {}
    if "edge_feats" not in model_args:
        return
    value = model_args["edge_feats"]
    if value not in (0, False):
        raise ConfigError(
            f"--set edge_feats={value!r}: the edge feature width comes from the dataset; only edge_feats=0 "
            "(ignore the graph's edge features, as --dataset-option edge_feats=false) may be set."
        )
    given["model_args"] = {k: v for k, v in model_args.items() if k != "edge_feats"}
    given["dataset_options"] = {**(given.get("dataset_options") or {}), "edge_feats": False}


def under_launcher() -> bool:
    """Whether a launcher (torchrun or the like) started this process as a rank of a job."""
    return all(key in os.environ for key in LAUNCHER_ENV)


def fixed_on_resume(given: Mapping[str, Any], config_file: Optional[str]) -> List[str]:
    """The given settings that ``--resume`` may not change (sorted), ``config`` for a ``--config`` file."""
    return sorted(set(given) - set(RESUMABLE_OPTIONS)) + (["config"] if config_file else [])


def default_out(config: TrainConfig) -> str:
    """``runs/MODEL-DATASET-TIME``, the output directory of a run started without ``--out``."""
    return f"runs/{config.model}-{Path(config.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve_train_config(
    given: Mapping[str, Any],
    *,
    config_file: Optional[str] = None,
    resume: Optional[str] = None,
    nproc: Optional[int] = None,
    jobs: int = 1,
    recipe: str = "card",
) -> TrainConfig:
    """The run's TrainConfig from the options given (``None`` values left out).

    Layers, each overriding the one before: TrainConfig's defaults (the paper's ogbn-proteins
    recipe), the training recipe of the model's card when a model is named (``--model`` or the
    ``--config`` file's ``model``; :func:`card_recipe`), or with ``recipe='auto'`` the settings
    :func:`auto_settings` measures from the dataset, the ``--config`` file, then ``given``. The
    default model, named by nobody, brings no recipe: its card's is the defaults'.

    ``given`` holds TrainConfig keys; its ``dataset_options`` and ``model_args`` add to (and
    override entries of) those of the card and the ``--config`` file. A config file's ``out`` is
    not used (a run's own config.yaml names its own folder): the new run goes to ``given['out']``
    or :func:`default_out`, and a line says so. Without ``threads``, the cores other jobs leave
    free (:func:`revgnn_dgl.env.pick_threads`), shared among the ``nproc`` processes of each of
    ``jobs`` runs at once (``tune --jobs``). ``model_args`` ``edge_feats=0`` becomes the dataset
    option ``edge_feats=false``. When the resolved ``train_parts`` is 1 and neither ``given`` nor
    the file sets ``eval_parts``, evaluation is on the whole graph too (``eval_parts`` 1).

    With ``resume`` the run's saved config.yaml is the base and only :data:`RESUMABLE_OPTIONS`
    may be given (see :func:`fixed_on_resume`); the directory may have moved since, and is where
    the run continues. Unknown models and datasets are refused here, before torch and DGL load.
    The settings the card's recipe supplied are named in one line (:mod:`revgnn_dgl.log`).

    Raises
    ------
    ConfigError, ZooError, DatasetError
        A bad setting, a directory that holds no run, or ``nproc`` other than the resumed run's.
    """
    if recipe not in RECIPES:
        raise ConfigError(f"recipe must be {' or '.join(RECIPES)}, got {recipe!r}.")
    notes: List[str] = []
    if resume:
        config = _resumed_config(given, resume, nproc)
    else:
        config = _fresh_config(dict(given), config_file, nproc, jobs, recipe == "auto", notes)
    check_names(config.model, config.dataset)
    for note in notes:
        log.info(note)
    return config


def _resumed_config(given: Mapping[str, Any], resume: str, nproc: Optional[int]) -> TrainConfig:
    """The saved config.yaml of the run in ``resume``, with the (resumable) settings given."""
    folder = Path(resume)
    if not folder.is_dir():
        raise ConfigError(f"--resume {resume}: no such directory.")
    if not (folder / "config.yaml").is_file():
        raise ConfigError(f"{resume} holds no config.yaml: it is not an output directory of `revgnn-dgl train`.")
    config = TrainConfig.from_file(folder / "config.yaml").updated({**given, "out": resume}, "the command line")
    if nproc is not None and nproc != config.nproc:
        raise ConfigError(
            f"{resume} was trained by {config.nproc} process(es); resume it with --nproc {config.nproc} "
            "(or without --nproc): another number would change what an optimizer step averages."
        )
    return config


def _fresh_config(
    given: Dict[str, Any], config_file: Optional[str], nproc: Optional[int], jobs: int, use_auto: bool,
    notes: List[str],
) -> TrainConfig:  # fmt: skip
    """A new run's config: defaults, the card's (or the auto) recipe, the file, the options; ``notes`` said after."""
    _edge_feats_opt_out(given)
    from_file = read_config_file(config_file) if config_file else {}
    from_file = {str(k).replace("-", "_"): v for k, v in from_file.items()}
    model = given.get("model") or from_file.get("model")
    base, recipe, given = _recipe_layer(given, model, from_file, use_auto, config_file)
    model = given.get("model") or model
    if config_file:
        if from_file.get("dataset_options") and "dataset_options" in recipe:
            from_file["dataset_options"] = {**recipe["dataset_options"], **from_file["dataset_options"]}
        base = base.updated(from_file, str(config_file))
        if base.out is not None and "out" not in given:
            log.info(f"note: {config_file} names out: {base.out}, another run's folder; this run gets its own "
                     "(--out DIR to choose it).")  # fmt: skip
            base = base.updated({"out": None})
    for key in ("dataset_options", "model_args"):
        if given.get(key):
            given[key] = {**getattr(base, key), **given[key]}
    if nproc is not None:
        given["nproc"] = nproc
    explicit = set(given) | set(from_file)
    whole_graph = given.get("train_parts", base.train_parts) == 1
    if whole_graph and "eval_parts" not in explicit and ("eval_parts" not in recipe or "train_parts" in explicit):
        given["eval_parts"] = 1  # trained on the whole graph: evaluated on it too
        if base.eval_parts != 1:
            notes.append(
                "eval_parts=1: trained on the whole graph (train_parts 1), so evaluated on it too (--eval-parts overrides)"
            )
    config = base.updated(given, "the command line")
    if config.out is None:
        config = config.updated({"out": default_out(config)})
    if config.threads is None:
        # The cores other jobs leave free, per process; stored in config.yaml, so that --resume
        # runs with the same count (results are exact for one thread count only).
        from ..env import load_average, pick_threads
        from ..limits import cpu_cores

        config = config.updated({"threads": pick_threads(cpu_cores(), load_average(), config.nproc * jobs)})
    taken = {k: getattr(config, k) for k in recipe if k not in explicit and k not in given}
    if taken:
        settings = ", ".join(f"{k}={v}" for k, v in taken.items())
        notes.insert(
            0, f"training recipe of model card {model!r}: {settings} (a flag or --config overrides any of them)"
        )
    return config


def _recipe_layer(
    given: Dict[str, Any], model: Optional[str], from_file: Mapping[str, Any], use_auto: bool,
    config_file: Optional[str],
) -> Tuple[TrainConfig, Dict[str, Any], Dict[str, Any]]:  # fmt: skip
    """The defaults under the card's recipe (or the auto recipe's settings); the card's recipe (empty
    for auto, whose lines said what it chose), and ``given`` (with auto's model)."""
    auto: Dict[str, Any] = {}
    if use_auto:
        if config_file:
            raise ConfigError(
                "--recipe auto chooses the settings from the graph; drop --config (or use --recipe card)."
            )
        auto = auto_settings(given)
        model = auto.pop("model")
        given = {**given, "model": model}
    recipe: Dict[str, Any] = {}
    base = TrainConfig()
    if model:
        check_names(model, None)
        recipe = card_recipe(model, given.get("dataset") or from_file.get("dataset"))
        base = base.updated(recipe, f"the training recipe of model card {model!r}")
    if auto:
        base = base.updated(auto, "the auto recipe")
        recipe = {}
    return base, recipe, given


def check_names(model: str, dataset: Optional[str]) -> None:
    """Refuse an unknown model or dataset name (with the valid ones), without loading torch or DGL."""
    from ..data.catalog import catalog_names
    from ..data.paths import is_graph_file_path
    from ..zoo.registry import resolve_name

    resolve_name(model)
    if dataset is not None and dataset not in catalog_names() and not is_graph_file_path(dataset):
        close = difflib.get_close_matches(dataset.lower(), catalog_names(), n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise DatasetError(
            f"unknown dataset {dataset!r}.{hint} Valid names are {', '.join(catalog_names())} "
            "(`revgnn-dgl data list`), or the path of a DGL graph file (PATH.bin)."
        )


# ---------------------------------------------------------------------- evaluate
def evaluation_target(
    *,
    model: Optional[str] = None,
    pretrained: bool = False,
    checkpoint: Optional[str] = None,
    run_dir: Optional[str] = None,
    given: Optional[Mapping[str, Any]] = None,
    device: str = "auto",
    allow_nonfinite: bool = False,
) -> Tuple[TrainConfig, Any, str]:
    """What ``evaluate`` scores, and how: ``(config, model or None, label)``.

    The evaluation settings come from the run (``run_dir``), the checkpoint's metadata, or the
    model card, and ``given`` (TrainConfig keys) overrides them. Another dataset than theirs
    drops their dataset options and root, which belong to their dataset. The model is None for
    ``model`` with ``checkpoint``: it is built for the dataset once that is loaded.
    """
    settings, net, label = _target(model, pretrained, checkpoint, run_dir, allow_nonfinite)
    given = dict(given or {})
    extra_options = given.pop("dataset_options", None)
    if given.get("dataset") not in (None, settings.get("dataset")):
        settings.pop("dataset_options", None)
        settings.pop("root", None)
    if extra_options:
        given["dataset_options"] = {**settings.get("dataset_options", {}), **extra_options}
    settings.update(given)
    return TrainConfig().updated({**settings, "device": device}, "the evaluation settings"), net, label


def _target(
    model: Optional[str], pretrained: bool, checkpoint: Optional[str], run_dir: Optional[str], allow_nonfinite: bool
) -> Tuple[Dict[str, Any], Any, str]:
    from ..zoo import create_model, get_config
    from ..zoo.checkpoint import build_from_checkpoint
    from .rundir import BEST_FILE, CONFIG_FILE

    if run_dir:
        run = Path(run_dir)
        if not (run / BEST_FILE).exists():
            subruns = sorted(p.name for p in run.glob("run-*") if (p / BEST_FILE).exists())
            if subruns:
                raise ConfigError(
                    f"{run} holds {len(subruns)} runs; evaluate one of them, e.g. --run {run / subruns[0]}."
                )
        config = TrainConfig.from_file(run / CONFIG_FILE)
        net = build_from_checkpoint(run / BEST_FILE, allow_nonfinite=allow_nonfinite)
        return {k: getattr(config, k) for k in _RUN_EVAL_KEYS}, net, str(run / BEST_FILE)
    if checkpoint and not model:
        net = build_from_checkpoint(checkpoint, allow_nonfinite=allow_nonfinite)
        meta = net.checkpoint_metadata
        settings = card_settings(net.zoo_config["name"])
        settings.update({k: meta[k] for k in _CHECKPOINT_EVAL_KEYS if k in meta})
        return settings, net, checkpoint
    if not model:
        raise ConfigError("give --model NAME --pretrained, --checkpoint FILE or --run DIR.")
    card = get_config(model)
    settings = {**card_settings(card["name"]), "model": card["name"]}
    if pretrained:
        return settings, create_model(model, pretrained=True), f"{card['name']} (pretrained)"
    # --model NAME --checkpoint FILE: the checkpoint knows what it was trained on, the card may not.
    from ..zoo.checkpoint import load_checkpoint

    meta = load_checkpoint(str(checkpoint)).metadata
    settings.update({k: meta[k] for k in _CHECKPOINT_EVAL_KEYS if k in meta})
    return settings, None, str(checkpoint)


def card_settings(name: Optional[str]) -> Dict[str, Any]:
    """Evaluation settings of a model card: its dataset, dataset_options and ``eval`` section
    (``parts``, ``views``, ``seed``), else the ``training`` section's ``eval_parts``/``eval_views``."""
    from ..zoo import get_config

    try:
        card = get_config(name) if name else {}
    except ZooError:  # a checkpoint of a model that is not (or no longer) in the zoo
        card = {}
    training = card.get("training") or {}
    evaluation = card.get("eval") or {}
    settings: Dict[str, Any] = {
        "dataset": card.get("dataset"),
        "dataset_options": card.get("dataset_options") or {},
        "eval_parts": evaluation.get("parts", training.get("eval_parts")),
        "eval_views": evaluation.get("views", training.get("eval_views")),
        "seed": evaluation.get("seed"),
        "use_labels": evaluation.get("use_labels", training.get("use_labels")),
        "label_iters": evaluation.get("label_iters", training.get("label_iters")),
    }
    return {k: v for k, v in settings.items() if v is not None}
