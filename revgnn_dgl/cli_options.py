"""The options of ``revgnn-dgl train``, ``tune`` and ``evaluate``, declared once.

Their defaults and ranges come from :class:`~revgnn_dgl.train.config.TrainConfig` (the defaults
shown in ``--help``) and :data:`~revgnn_dgl.train.config.MINIMUM` (the ranges), so that help,
validation and the docs cannot disagree. The options themselves default to None, meaning "not
given", so that a ``--config`` file may set them. ``train`` and ``tune`` share the training
options through :func:`train_options` (``tune`` without those that place, resume or launch one
training: a study decides them). Light at import: neither torch nor DGL.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Tuple, TypeVar

import click
import cloup

from .data.catalog import catalog_names
from .train.config import LOGGERS, LOSSES, MINIMUM, OPTIMIZERS, SCHEDULES, SELECTIONS, TrainConfig
from .train.machines import DEFAULT_MASTER_PORT
from .train.settings import RECIPES

F = TypeVar("F", bound=Callable[..., Any])

#: The defaults ``--help`` shows: TrainConfig's, which apply.
TRAIN_DEFAULTS = TrainConfig()

DEVICE_HELP = "auto (CUDA when torch and DGL can both use it), cpu, cuda or cuda:N."
AMP_HELP = "Evaluate under float16 autocast (CUDA only), as the official recipe does."
# One thread is as fast on small graphs and far steadier on a CPU shared with other jobs.
THREADS_HELP = "torch CPU threads, at most the cores [default: the cores other jobs leave free, by the load average]."


def default(key: str) -> str:
    """``[default: VALUE]`` of a TrainConfig key, for an option's help."""
    return f"[default: {getattr(TRAIN_DEFAULTS, key)}]"


def at_least(key: str) -> click.IntRange:
    """The range of an integer setting, from :data:`~revgnn_dgl.train.config.MINIMUM`."""
    return click.IntRange(min=MINIMUM[key])


class Option(NamedTuple):
    """A click option's decorator (each use makes a new option) and the parameter name it sets."""

    name: str
    decorator: Callable[[F], F]


def option(*decls: str, **attrs: Any) -> Option:
    """``click.option(*decls, **attrs)``, with the name of its parameter (as click derives it)."""
    named = [d for d in decls if d.isidentifier()]
    name = named[0] if named else max((d.split("/")[0] for d in decls), key=len).lstrip("-").replace("-", "_")
    return Option(name, click.option(*decls, **attrs))


def option_groups(
    groups: List[Tuple[str, List[Option]]], title: str = "{}", leave_out: Tuple[str, ...] = ()
) -> Callable[[F], F]:
    """A decorator giving a command ``groups`` of options (cloup's groups, in this order), less ``leave_out``."""

    def decorate(f: F) -> F:
        for name, options in reversed(groups):
            kept = [o.decorator for o in options if o.name not in leave_out]
            if kept:
                f = cloup.option_group(title.format(name), *kept)(f)
        return f

    return decorate


def _parse_options(ctx: click.Context, param: click.Parameter, values: Tuple[str, ...]) -> Dict[str, Any]:
    """``KEY=VALUE`` pairs into a dict, values parsed as YAML scalars (``300`` -> int).

    A value YAML cannot parse (a lone bracket, a tag, an alias) is a one-line ConfigError naming the key.
    """
    from .train.config import load_yaml

    options: Dict[str, Any] = {}
    flag = "--" + (param.name or "").replace("_", "-")
    flag = {"--model-args": "--set", "--dataset-options": "--dataset-option"}.get(flag, flag)
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}.", ctx=ctx, param=param)
        options[key.strip().replace("-", "_")] = load_yaml(value, f"{flag} {key.strip()}") if value else None
    return options


DATASET_OPTIONS = [
    option("--dataset", help=f"Dataset name ({', '.join(catalog_names())}; `revgnn-dgl data list`) "
           f"or a DGL graph file [train: {TRAIN_DEFAULTS.dataset}; evaluate: the run's or card's]."),
    option("--root", type=click.Path(file_okay=False), help="Folder the dataset lives in."),
    option("--dataset-option", "dataset_options", multiple=True, metavar="KEY=VALUE",
           callback=_parse_options, help="Option of the dataset loader, e.g. num_nodes=500 (repeatable)."),
]  # fmt: skip


# ------------------------------------------------------------------ train
TRAIN_GROUPS: List[Tuple[str, List[Option]]] = [
    (
        "Model",
        [
            option(
                "--recipe",
                type=click.Choice(RECIPES),
                help="auto: measure the graph (feature kind and scale, labels, edge features, degrees, isolated nodes, "
                "training-split homophily) and choose the model, depth, width, input normalisation and "
                "optimisation from docs/deep_recipe.md's table, one printed line per choice; card: the --model "
                "card's recipe [default: auto without --model/--config for a dataset no zoo card was trained on, "
                "else card].",
            ),
            option(
                "--model",
                help="Zoo model name or alias (see `revgnn-dgl zoo list`); a named card brings its own "
                "training recipe (its dataset, lr, epochs, parts, weight decay, ...; printed), which any flag overrides. "
                + default("model"),
            ),
            option(
                "--num-layers", type=at_least("num_layers"), help="Override the model card's depth L (at most 4096)."
            ),
            option(
                "--hidden",
                type=at_least("hidden"),
                help="Override the model card's width D (the memory it needs is checked first).",
            ),
            option(
                "--groups",
                type=at_least("groups"),
                help="Override the model card's number of groups C (at most D and 1024).",
            ),
            option("--dropout", type=float, help="Override the model card's dropout."),
            option(
                "--set",
                "model_args",
                multiple=True,
                metavar="KEY=VALUE",
                callback=_parse_options,
                help="Any other argument of the model's builder, e.g. conv=gcn, aggregator=softmax, learn_t=true, "
                "norm=batch (repeatable; `revgnn-dgl zoo show MODEL` lists a card's arguments); edge_feats=0 "
                "ignores the graph's edge features (as --dataset-option edge_feats=false).",
            ),
        ],
    ),
    (
        "Data",
        [
            *DATASET_OPTIONS,
        ],
    ),
    (
        "Recipe",
        [
            option("--epochs", type=at_least("epochs"), help="Training epochs. " + default("epochs")),
            option("--lr", type=float, help="Learning rate of the optimizer (--optimizer). " + default("lr")),
            option(
                "--optimizer",
                type=click.Choice(OPTIMIZERS),
                help="adam (L2 weight decay), adamw (decoupled) or rmsprop (RevGAT's). " + default("optimizer"),
            ),
            option("--weight-decay", type=float, help="Weight decay. " + default("weight_decay")),
            option(
                "--layer-weight-decay",
                type=float,
                help="Weight decay of the blocks' parameters (the model's layers), --weight-decay for the rest "
                "(GCNII: 0.01 and 5e-4) [default: --weight-decay for all].",
            ),
            option("--schedule", type=click.Choice(SCHEDULES), help="Learning-rate schedule. " + default("schedule")),
            option(
                "--warmup-epochs",
                type=at_least("warmup_epochs"),
                help="Linear learning-rate warm-up. " + default("warmup_epochs"),
            ),
            option("--min-lr", type=float, help="Final learning rate of the cosine schedule. " + default("min_lr")),
            option(
                "--step-size",
                type=at_least("step_size"),
                help="Epochs between decays of the step schedule. " + default("step_size"),
            ),
            option("--gamma", type=float, help="Decay factor of the step schedule. " + default("gamma")),
            option("--grad-clip", type=float, help="Max gradient norm, 0 for none. " + default("grad_clip")),
            option(
                "--train-parts",
                type=at_least("train_parts"),
                help="Random parts per epoch; 1 trains on the full graph. " + default("train_parts"),
            ),
            option(
                "--parts-per-step",
                type=at_least("parts_per_step"),
                help="Parts each process averages the loss over per optimizer step. " + default("parts_per_step"),
            ),
            option(
                "--patience",
                type=at_least("patience"),
                help="Early stopping after N evaluations without a better validation score (--select); 0 never. "
                + default("patience"),
            ),
            option(
                "--select",
                type=click.Choice(SELECTIONS),
                help="The best epoch (checkpoint, summary, patience): val, the highest validation score, or "
                "val_loss, the lowest validation loss (plain cross-entropy, BCE for multi-label, without label "
                "smoothing; GCNII's rule; not with --partitions). " + default("select"),
            ),
            option(
                "--input-dropout", type=float, help="Dropout on the input node features. " + default("input_dropout")
            ),
            option(
                "--edge-dropout",
                type=float,
                help="DropEdge: drop each edge with this probability, afresh every step. " + default("edge_dropout"),
            ),
            option(
                "--label-smoothing",
                type=float,
                help="Label smoothing (single-label tasks). " + default("label_smoothing"),
            ),
            option(
                "--loss",
                type=click.Choice(LOSSES),
                help="Cross-entropy, or RevGAT's log-CE (single-label). " + default("loss"),
            ),
        ],
    ),
    (
        "Label reuse and self-distillation (RevGAT's recipe)",
        [
            option(
                "--use-labels/--no-use-labels",
                default=None,
                help="Label reuse: training labels as extra inputs (single-label tasks; RevGAT's recipe) [default: off].",
            ),
            option(
                "--label-rate",
                type=float,
                help="Share of training nodes showing their label per step. " + default("label_rate"),
            ),
            option(
                "--label-iters",
                type=at_least("label_iters"),
                help="Rounds feeding predictions back as labels. " + default("label_iters"),
            ),
            option(
                "--teacher",
                type=click.Path(exists=True, file_okay=False),
                help="Self-distillation: a finished run (same dataset) whose best model teaches this one.",
            ),
            option("--kd-alpha", type=float, help="Weight of the distillation term. " + default("kd_alpha")),
            option("--kd-temp", type=float, help="Distillation temperature. " + default("kd_temp")),
        ],
    ),
    (
        "Evaluation",
        [
            option(
                "--eval-parts",
                type=at_least("eval_parts"),
                help="Parts of the fixed evaluation partition [default: 1 with --train-parts 1, else the card's "
                f"recipe or {TRAIN_DEFAULTS.eval_parts}].",
            ),
            option(
                "--eval-views",
                type=at_least("eval_views"),
                help="Evaluation partitions whose logits are averaged. " + default("eval_views"),
            ),
            option(
                "--eval-every",
                type=at_least("eval_every"),
                help="Evaluate every N epochs (and after the last). " + default("eval_every"),
            ),
            option("--amp/--no-amp", default=None, help=AMP_HELP),
        ],
    ),
    (
        "Run",
        [
            option(
                "--config",
                "config_file",
                type=click.Path(exists=True, dir_okay=False),
                help="YAML or JSON file of settings (keys as the options, e.g. train_parts); options given here override it.",
            ),
            option(
                "--resume",
                type=click.Path(file_okay=False),
                help="Continue the interrupted run(s) in this output directory with their saved config "
                "(under torchrun it need only exist on rank 0's machine).",
            ),
            option("--seed", type=int, help="Seed of the first run. " + default("seed")),
            option(
                "--save-every",
                type=at_least("save_every"),
                metavar="N",
                help="Write the resumable state and last checkpoint every N epochs (and at the end); the best "
                "checkpoint whenever it improves. " + default("save_every"),
            ),
            option(
                "--runs",
                type=at_least("runs"),
                help="Runs with seeds seed..seed+runs-1; mean ± std in summary.json. " + default("runs"),
            ),
        ],
    ),
    (
        "Device and processes",
        [
            option("--device", help=f"{DEVICE_HELP} {default('device')}"),
            option("--threads", type=at_least("threads"), help=THREADS_HELP + " Applies to each process."),
            option(
                "--nproc",
                type=at_least("nproc"),
                help="Data-parallel processes on this machine (DDP over the parts: each optimizer step averages "
                "nproc x parts-per-step parts); under torchrun, leave it out. " + default("nproc"),
            ),
            option(
                "--dist-timeout",
                type=click.FloatRange(min=0, min_open=True),
                metavar="SECONDS",
                help="Time limit of the processes' collectives; above rank 0's evaluation time [default: 1800].",
            ),
            option(
                "--partitions",
                type=click.Path(exists=True, dir_okay=False),
                metavar="DIR/NAME.json",
                help="Train on a graph `revgnn-dgl partition` wrote, through DGL's graph servers (DistDGL): no trainer "
                "holds the graph; with --nproc N this command starts the servers and N trainers here "
                "(docs/distributed.md).",
            ),
            option(
                "--servers",
                type=at_least("servers"),
                help="Graph servers this command starts for --partitions (one main, the rest its backups). "
                + default("servers"),
            ),
            option(
                "--ip-config",
                type=click.Path(exists=True, dir_okay=False),
                metavar="FILE",
                help="DGL's ip_config ('IP PORT' per machine): with --partitions, this machine's share of a job over "
                "the machines it names (run the same command on each; --nproc counts all their trainers).",
            ),
            option(
                "--master-port",
                type=click.IntRange(min=1, max=65535),
                metavar="PORT",
                help=f"With --ip-config: the port of the job's rendezvous on the first machine [default: {DEFAULT_MASTER_PORT}].",
            ),
        ],
    ),
    (
        "Output",
        [
            option(
                "--out", type=click.Path(file_okay=False), help="Output directory [default: runs/MODEL-DATASET-TIME]."
            ),
            option(
                "--overwrite",
                is_flag=True,
                help="Replace what --out holds of the files the trainer writes (a run, summary.json, checkpoints, "
                "this --runs' run-K folders) [default: refuse such a folder].",
            ),
            option(
                "--logger",
                "logger",
                multiple=True,
                type=click.Choice(LOGGERS),
                callback=lambda ctx, param, values: ",".join(dict.fromkeys(values)) or None,
                help="Also log each epoch for your own tools: csv (metrics.csv) or tensorboard (event files under "
                "tensorboard/; pip install 'revgnn_dgl[tensorboard]'). Repeatable.",
            ),
            option(
                "--json",
                "as_json",
                is_flag=True,
                help="Print only the summary, as one JSON object (progress goes to stderr).",
            ),
            option(
                "--baseline/--no-baseline",
                default=None,
                help="After the runs, also fit logistic regression on the features and a 2-layer GCN (gcn-2, 100 "
                "epochs) on the same split, record them in summary.json and warn if the deep model is below "
                "either [default: on for a run of at least 100 epochs on a dataset its model card was not "
                "trained on; one process only].",
            ),
        ],
    ),
]

#: train's options that place, resume or launch one training: a study decides those itself.
NOT_IN_TUNE = ("out", "overwrite", "resume", "as_json", "nproc", "dist_timeout", "partitions", "servers", "ip_config",
               "master_port", "baseline")  # fmt: skip

#: ``revgnn-dgl train``'s options.
train_options = option_groups(TRAIN_GROUPS)
#: ``train``'s options that every trial of a ``revgnn-dgl tune`` study trains with.
fixed_train_options = option_groups(TRAIN_GROUPS, "{} (fixed in every trial)", NOT_IN_TUNE)


# ------------------------------------------------------------------ tune
TUNE_GROUPS: List[Tuple[str, List[Option]]] = [
    (
        "Search space",
        [
            option(
                "--space",
                "space_items",
                multiple=True,
                metavar="KEY=SPEC",
                help="A searched setting: any train option or model argument (model_args.NAME, as --set), e.g. "
                "lr=loguniform:1e-4:1e-1, num_layers=int:4:16, dropout=float:0:0.5, "
                "model_args.conv=choice:gcn,gen (kinds: float, loguniform, int[:STEP], logint, choice; repeatable).",
            ),
            option(
                "--space-file",
                type=click.Path(exists=True, dir_okay=False),
                help="YAML file of KEY: SPEC lines (or KEY: {type, low, high, step, choices}); adds to --space.",
            ),
        ],
    ),
    (
        "Study",
        [
            option(
                "--out",
                type=click.Path(file_okay=False),
                help="Study folder: study.db, trials/trial-NNNN run directories, best.yaml, trials.csv, plots "
                "[default: runs/tune-MODEL-DATASET]. The same command again continues the study.",
            ),
            option(
                "--trials",
                type=click.IntRange(min=1),
                help="Trials the study should hold (a re-run continues up to N).",
            ),
            option(
                "--timeout",
                type=click.FloatRange(min=0, min_open=True),
                metavar="SECONDS",
                help="Start no new trial after this time (running ones finish).",
            ),
            option(
                "--budget",
                type=click.FloatRange(min=0, min_open=True),
                metavar="MINUTES",
                help="Wall time of the whole study: no trial starts after it, and a trial still running then is "
                "stopped at its next evaluation (recorded as pruned; train --resume would finish it).",
            ),
            option(
                "--jobs",
                type=click.IntRange(min=1),
                default=1,
                show_default=True,
                help="Trials at once, each in its own process (threads each: the free cores / N, or --threads).",
            ),
            option(
                "--storage",
                metavar="URL",
                help="Optuna RDB storage, any SQLAlchemy URL, shared by every process "
                "that tunes the same study [default: sqlite:///OUT/study.db].",
            ),
            option("--study-name", default="tune", show_default=True, help="The study's name in the storage."),
            option(
                "--pruner",
                type=click.Choice(["patient", "median", "hyperband", "none"]),
                default="patient",
                show_default=True,
                help="Stop unpromising trials early from their per-epoch validation scores. patient: only a trial "
                "whose best score has stopped rising for --prune-patience epochs and is below the median; "
                "median: below the median at the same epoch.",
            ),
            option(
                "--prune-startup",
                type=click.IntRange(min=0),
                default=4,
                show_default=True,
                metavar="N",
                help="Trials never pruned (patient, median), the pruner's baseline.",
            ),
            option(
                "--prune-warmup",
                type=click.IntRange(min=0),
                metavar="EPOCHS",
                help="Epochs of each trial before it may be pruned (hyperband: its minimum resource) [default: "
                "--warmup-epochs or a tenth of --epochs, whichever is longer].",
            ),
            option(
                "--prune-patience",
                type=click.IntRange(min=1),
                metavar="EPOCHS",
                help="patient: epochs without progress before a trial may be pruned [default: a tenth of --epochs, "
                "at least 5].",
            ),
            option("--sampler-seed", type=int, default=0, show_default=True, help="Seed of the TPE sampler."),
            option(
                "--top", type=click.IntRange(min=1), default=5, show_default=True, help="Rows of the best-trials table."
            ),
        ],
    ),
]
tune_options = option_groups(TUNE_GROUPS)


# ------------------------------------------------------------------ evaluate
EVALUATE_GROUPS: List[Tuple[str, List[Option]]] = [
    (
        "What to evaluate",
        [
            option("--model", help="Zoo model name or alias; with --pretrained or --checkpoint."),
            option("--pretrained", is_flag=True, help="Use the model card's weights and its evaluation settings."),
            option(
                "--checkpoint", type=click.Path(exists=True, dir_okay=False), help="A checkpoint file of this package."
            ),
            option(
                "--run",
                "run_dir",
                type=click.Path(exists=True, file_okay=False),
                help="A training output directory: its best checkpoint with its config.",
            ),
            option("--allow-nonfinite", is_flag=True, help="Load a checkpoint even if its weights hold NaN or inf."),
            option(
                "--foreign",
                is_flag=True,
                help="With --model NAME --checkpoint FILE: accept a plain safetensors state dict (no revgnn_dgl header, "
                "so no checksum) whose keys, dtypes and shapes are exactly the model's.",
            ),
        ],
    ),
    (
        "Data",
        [
            *DATASET_OPTIONS,
        ],
    ),
    (
        "Evaluation",
        [
            option(
                "--eval-parts",
                type=click.IntRange(min=1),
                help=f"Parts per view [default: from the run or card, else {TRAIN_DEFAULTS.eval_parts}].",
            ),
            option(
                "--eval-views",
                type=click.IntRange(min=1),
                help=f"Views averaged [default: from the run or card, else {TRAIN_DEFAULTS.eval_views}].",
            ),
            option(
                "--seed",
                type=int,
                help=f"Seed of the evaluation partitions [default: from the run or card, else {TRAIN_DEFAULTS.seed}].",
            ),
            option("--amp/--no-amp", default=None, help=AMP_HELP),
            option(
                "--full-graph",
                is_flag=True,
                help="Also score the model's exact answer on the whole graph (no partition cuts an edge), computed "
                "in blocks of destination nodes; --save-predictions then writes those logits.",
            ),
            option(
                "--memory-budget",
                metavar="SIZE",
                help="With --full-graph: the memory its blocks are sized for, e.g. 4GB [default: a quarter of "
                "this process's memory, at most 4 GiB]; too small for one node's in-edges is refused.",
            ),
        ],
    ),
    (
        "Device",
        [
            option("--device", default="auto", show_default=True, help=DEVICE_HELP),
            option("--threads", type=click.IntRange(min=1), help=THREADS_HELP),
        ],
    ),
    (
        "Output",
        [
            option("--json", "as_json", is_flag=True, help="Print the result as one JSON object."),
            option(
                "--save-predictions",
                type=click.Path(dir_okay=False),
                help="Write every node's outputs to this .npz file (see the README: node_id, split, logits, probabilities, labels).",
            ),
        ],
    ),
]
evaluate_options = option_groups(EVALUATE_GROUPS)
