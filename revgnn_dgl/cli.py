"""The ``revgnn-dgl`` command line: train, evaluate, the model zoo, benchmarks and environment info.

Heavy modules (torch, DGL, the package's models) are imported inside the commands, so that
``revgnn-dgl --help`` answers at once. Errors a user can fix (unknown model or dataset, bad
configuration, unusable checkpoint, unavailable device) print one ``Error: ...`` line and exit
with status 1 (2 for command-line usage errors); anything else is a bug and shows a traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import click
import cloup

from .data.catalog import catalog_names
from .errors import is_user_error
from .train.config import LOGGERS, OPTIMIZERS, SCHEDULES, TrainConfig
from .train.settings import RESUMABLE_OPTIONS, under_launcher

# The defaults shown in --help are TrainConfig's, which apply: the options themselves default to
# None, meaning "not given", so that a --config file may set them.
_TRAIN_DEFAULTS = TrainConfig()


def _default(key: str) -> str:
    return f"[default: {getattr(_TRAIN_DEFAULTS, key)}]"


_PLAIN_SHOW_WARNING = warnings.showwarning


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """The package's own warnings as one line, ``warning: ...`` (no source line); others as Python shows them."""
    if getattr(category, "__module__", "").startswith("revgnn_dgl."):
        click.echo(f"warning: {' '.join(str(message).split())}", err=True)
        return
    _PLAIN_SHOW_WARNING(message, category, filename, lineno, file, line)


class _Cli(click.Group):
    """The top-level group; its :meth:`invoke` is the error handler of every command."""

    def make_context(self, info_name: Optional[str], args: List[str], parent: Optional[click.Context] = None,
                     **extra: Any) -> click.Context:  # fmt: skip
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except KeyboardInterrupt as err:  # while the options parse (click's own answer would be "Aborted!", 1)
            click.echo("\nInterrupted.", err=True)
            raise click.exceptions.Exit(getattr(err, "exit_code", 130)) from None

    def invoke(self, ctx: click.Context) -> Any:
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as err:  # Ctrl-C (or SIGTERM where a command turned it into one)
            click.echo("\nInterrupted.", err=True)
            ctx.exit(getattr(err, "exit_code", 130))
        except BrokenPipeError:
            # The reader left (`revgnn-dgl zoo list | head -1`): not an error. stdout goes to
            # /dev/null so that the interpreter's last flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        except Exception as err:
            if isinstance(err, click.ClickException) or not is_user_error(err):
                raise
            raise click.ClickException(" ".join(str(err).split())) from err


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="revgnn_dgl", prog_name="revgnn-dgl")
def cli() -> None:
    """RevGNN in DGL: graph neural networks a thousand layers deep (Li et al., ICML 2021)."""


def main() -> None:
    """Console-script entry point (``revgnn-dgl``)."""
    cli(prog_name="revgnn-dgl")


# ------------------------------------------------------------------ shared options
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


_DATASET_OPTIONS = [
    click.option("--dataset", help=f"Dataset name ({', '.join(catalog_names())}; `revgnn-dgl data list`) "
                 f"or a DGL graph file [train: {_TRAIN_DEFAULTS.dataset}; evaluate: the run's or card's]."),
    click.option("--root", type=click.Path(file_okay=False), help="Folder the dataset lives in."),
    click.option("--dataset-option", "dataset_options", multiple=True, metavar="KEY=VALUE",
                 callback=_parse_options, help="Option of the dataset loader, e.g. num_nodes=500 (repeatable)."),
]  # fmt: skip


_DEVICE_HELP = "auto (CUDA when torch and DGL can both use it), cpu, cuda or cuda:N."
_AMP_HELP = "Evaluate under float16 autocast (CUDA only), as the official recipe does."
# One thread is as fast on small graphs and far steadier on a CPU shared with other jobs.
_THREADS_HELP = "torch CPU threads, at most the cores [default: the cores other jobs leave free, by the load average]."


def _set_threads(threads: Optional[int]) -> None:
    import torch

    from .env import load_average, pick_threads
    from .limits import check_threads, cpu_cores

    check_threads(threads)

    torch.set_num_threads(threads if threads is not None else pick_threads(cpu_cores(), load_average()))


# ------------------------------------------------------------------ train
@cli.command(cls=cloup.Command)
@cloup.option_group(
    "Model",
    click.option(
        "--recipe",
        type=click.Choice(["auto", "card"]),
        help="auto: measure the graph (feature kind and scale, labels, edge features, degrees, isolated nodes, "
        "training-split homophily) and choose the model, depth, width, input normalisation and "
        "optimisation from docs/deep_recipe.md's table, one printed line per choice; card: the --model "
        "card's recipe [default: auto without --model/--config for a dataset no zoo card was trained on, "
        "else card].",
    ),
    click.option(
        "--model",
        help="Zoo model name or alias (see `revgnn-dgl zoo list`); a named card brings its own "
        "training recipe (its dataset, lr, epochs, parts, weight decay, ...; printed), which any flag overrides. "
        + _default("model"),
    ),
    click.option("--num-layers", type=click.IntRange(min=1), help="Override the model card's depth L (at most 4096)."),
    click.option(
        "--hidden",
        type=click.IntRange(min=1),
        help="Override the model card's width D (the memory it needs is checked first).",
    ),
    click.option(
        "--groups",
        type=click.IntRange(min=1),
        help="Override the model card's number of groups C (at most D and 1024).",
    ),
    click.option("--dropout", type=float, help="Override the model card's dropout."),
    click.option(
        "--set",
        "model_args",
        multiple=True,
        metavar="KEY=VALUE",
        callback=_parse_options,
        help="Any other argument of the model's builder, e.g. conv=gcn, aggregator=softmax, learn_t=true, "
        "norm=batch (repeatable; `revgnn-dgl zoo show MODEL` lists a card's arguments); edge_feats=0 "
        "ignores the graph's edge features (as --dataset-option edge_feats=false).",
    ),
)
@cloup.option_group(
    "Data",
    *_DATASET_OPTIONS,
)
@cloup.option_group(
    "Recipe",
    click.option("--epochs", type=click.IntRange(min=1), help="Training epochs. " + _default("epochs")),
    click.option("--lr", type=float, help="Learning rate of the optimizer (--optimizer). " + _default("lr")),
    click.option(
        "--optimizer",
        type=click.Choice(OPTIMIZERS),
        help="adam (L2 weight decay), adamw (decoupled) or rmsprop (RevGAT's). " + _default("optimizer"),
    ),
    click.option("--weight-decay", type=float, help="Weight decay. " + _default("weight_decay")),
    click.option(
        "--layer-weight-decay",
        type=float,
        help="Weight decay of the blocks' parameters (the model's layers), --weight-decay for the rest "
        "(GCNII: 0.01 and 5e-4) [default: --weight-decay for all].",
    ),
    click.option("--schedule", type=click.Choice(SCHEDULES), help="Learning-rate schedule. " + _default("schedule")),
    click.option(
        "--warmup-epochs", type=click.IntRange(min=0), help="Linear learning-rate warm-up. " + _default("warmup_epochs")
    ),
    click.option("--min-lr", type=float, help="Final learning rate of the cosine schedule [default: 0]."),
    click.option(
        "--step-size", type=click.IntRange(min=1), help="Epochs between decays of the step schedule [default: 100]."
    ),
    click.option("--gamma", type=float, help="Decay factor of the step schedule [default: 0.5]."),
    click.option("--grad-clip", type=float, help="Max gradient norm, 0 for none. " + _default("grad_clip")),
    click.option(
        "--train-parts",
        type=click.IntRange(min=1),
        help="Random parts per epoch; 1 trains on the full graph. " + _default("train_parts"),
    ),
    click.option(
        "--parts-per-step",
        type=click.IntRange(min=1),
        help="Parts each process averages the loss over per optimizer step. " + _default("parts_per_step"),
    ),
    click.option(
        "--patience",
        type=click.IntRange(min=0),
        help="Early stopping after N evaluations without a better validation score; 0 never. " + _default("patience"),
    ),
    click.option(
        "--input-dropout", type=float, help="Dropout on the input node features. " + _default("input_dropout")
    ),
    click.option(
        "--edge-dropout",
        type=float,
        help="DropEdge: drop each edge with this probability, afresh every step. " + _default("edge_dropout"),
    ),
    click.option(
        "--label-smoothing", type=float, help="Label smoothing (single-label tasks). " + _default("label_smoothing")
    ),
    click.option(
        "--loss",
        type=click.Choice(["ce", "log_ce"]),
        help="Cross-entropy, or RevGAT's log-CE (single-label) [default: ce].",
    ),
)
@cloup.option_group(
    "Label reuse and self-distillation (RevGAT's recipe)",
    click.option(
        "--use-labels/--no-use-labels",
        default=None,
        help="Label reuse: training labels as extra inputs (single-label tasks; RevGAT's recipe) [default: off].",
    ),
    click.option(
        "--label-rate", type=float, help="Share of training nodes showing their label per step [default: 0.5]."
    ),
    click.option(
        "--label-iters", type=click.IntRange(min=0), help="Rounds feeding predictions back as labels [default: 0]."
    ),
    click.option(
        "--teacher",
        type=click.Path(exists=True, file_okay=False),
        help="Self-distillation: a finished run (same dataset) whose best model teaches this one.",
    ),
    click.option("--kd-alpha", type=float, help="Weight of the distillation term [default: 0.95]."),
    click.option("--kd-temp", type=float, help="Distillation temperature [default: 0.7]."),
)
@cloup.option_group(
    "Evaluation",
    click.option(
        "--eval-parts",
        type=click.IntRange(min=1),
        help="Parts of the fixed evaluation partition [default: 1 with --train-parts 1, else the card's "
        f"recipe or {_TRAIN_DEFAULTS.eval_parts}].",
    ),
    click.option(
        "--eval-views",
        type=click.IntRange(min=1),
        help="Evaluation partitions whose logits are averaged. " + _default("eval_views"),
    ),
    click.option(
        "--eval-every",
        type=click.IntRange(min=1),
        help="Evaluate every N epochs (and after the last). " + _default("eval_every"),
    ),
    click.option("--amp/--no-amp", default=None, help=_AMP_HELP),
)
@cloup.option_group(
    "Run",
    click.option(
        "--config",
        "config_file",
        type=click.Path(exists=True, dir_okay=False),
        help="YAML or JSON file of settings (keys as the options, e.g. train_parts); options given here override it.",
    ),
    click.option(
        "--resume",
        type=click.Path(file_okay=False),
        help="Continue the interrupted run(s) in this output directory with their saved config "
        "(under torchrun it need only exist on rank 0's machine).",
    ),
    click.option("--seed", type=int, help="Seed of the first run. " + _default("seed")),
    click.option(
        "--save-every",
        type=click.IntRange(min=1),
        metavar="N",
        help="Write the resumable state and last checkpoint every N epochs (and at the end); the best "
        "checkpoint whenever it improves. " + _default("save_every"),
    ),
    click.option(
        "--runs",
        type=click.IntRange(min=1),
        help="Runs with seeds seed..seed+runs-1; mean ± std in summary.json. " + _default("runs"),
    ),
)
@cloup.option_group(
    "Device and processes",
    click.option("--device", help=f"{_DEVICE_HELP} {_default('device')}"),
    click.option("--threads", type=click.IntRange(min=1), help=_THREADS_HELP + " Applies to each process."),
    click.option(
        "--nproc",
        type=click.IntRange(min=1),
        help="Data-parallel processes on this machine (DDP over the parts: each optimizer step averages "
        "nproc x parts-per-step parts); under torchrun, leave it out. " + _default("nproc"),
    ),
    click.option(
        "--dist-timeout",
        type=click.FloatRange(min=0, min_open=True),
        metavar="SECONDS",
        help="Time limit of the processes' collectives; above rank 0's evaluation time [default: 1800].",
    ),
    click.option(
        "--partitions",
        type=click.Path(exists=True, dir_okay=False),
        metavar="DIR/NAME.json",
        help="Train on a graph `revgnn-dgl partition` wrote, through DGL's graph servers (DistDGL): no trainer "
        "holds the graph; with --nproc N this command starts the servers and N trainers here "
        "(docs/distributed.md).",
    ),
    click.option(
        "--servers",
        type=click.IntRange(min=1),
        help="Graph servers this command starts for --partitions (one main, the rest its backups). "
        + _default("servers"),
    ),
    click.option(
        "--ip-config",
        type=click.Path(exists=True, dir_okay=False),
        metavar="FILE",
        help="DGL's ip_config ('IP PORT' per machine): with --partitions, this machine's share of a job over "
        "the machines it names (run the same command on each; --nproc counts all their trainers).",
    ),
    click.option(
        "--master-port",
        type=click.IntRange(min=1, max=65535),
        metavar="PORT",
        help="With --ip-config: the port of the job's rendezvous on the first machine [default: 29500].",
    ),
)
@cloup.option_group(
    "Output",
    click.option(
        "--out", type=click.Path(file_okay=False), help="Output directory [default: runs/MODEL-DATASET-TIME]."
    ),
    click.option(
        "--overwrite",
        is_flag=True,
        help="Replace what --out holds of the files the trainer writes (a run, summary.json, checkpoints, "
        "this --runs' run-K folders) [default: refuse such a folder].",
    ),
    click.option(
        "--logger",
        "logger",
        multiple=True,
        type=click.Choice(LOGGERS),
        callback=lambda ctx, param, values: ",".join(dict.fromkeys(values)) or None,
        help="Also log each epoch for your own tools: csv (metrics.csv) or tensorboard (event files under "
        "tensorboard/; pip install 'revgnn_dgl[tensorboard]'). Repeatable.",
    ),
    click.option(
        "--json", "as_json", is_flag=True, help="Print only the summary, as one JSON object (progress goes to stderr)."
    ),
    click.option(
        "--baseline/--no-baseline",
        default=None,
        help="After the runs, also fit logistic regression on the features and a 2-layer GCN (gcn-2, 100 "
        "epochs) on the same split, record them in summary.json and warn if the deep model is below "
        "either [default: on for a run of at least 100 epochs on a dataset its model card was not "
        "trained on; one process only].",
    ),
)
@click.pass_context
def train(
    ctx: click.Context,
    config_file: Optional[str],
    resume: Optional[str],
    recipe: Optional[str],
    as_json: bool,
    nproc: Optional[int],
    dist_timeout: Optional[float],
    overwrite: bool,
    ip_config: Optional[str],
    master_port: Optional[int],
    baseline: Optional[bool],
    **flags: Any,
) -> None:
    """Train a zoo model the paper's way: random node partitions, one optimizer step per part.

    Writes config.yaml, metrics.jsonl, best.safetensors, last.safetensors, a resumable
    state.safetensors and summary.json to the output directory. With --nproc N (or under
    torchrun) N processes train together, data-parallel over the parts; rank 0 writes. With
    --partitions the N trainers read a partitioned graph through DGL's graph servers.
    """
    if os.environ.get("DGL_ROLE") == "server":  # DGL's tools/launch.py runs the command as a graph server too
        from .train.distgraph import serve_if_server

        serve_if_server()
        return
    # Light modules only until the configuration is known to be valid: errors answer at once.
    from .train.settings import default_recipe, fixed_on_resume, resolve_train_config

    launched = under_launcher()  # a rank of a job torchrun started
    if master_port is not None and ip_config is None:
        raise click.UsageError("--master-port goes with --ip-config (a DistDGL job over several machines).", ctx=ctx)
    if ip_config is not None and launched:
        raise click.UsageError("--ip-config starts this machine's servers and trainers itself: run it without "
                               "torchrun.", ctx=ctx)  # fmt: skip
    machines = None
    if ip_config is not None:
        from .train.machines import DEFAULT_MASTER_PORT, Machines

        machines = Machines.from_file(ip_config, master_port=master_port or DEFAULT_MASTER_PORT)
    if launched and nproc is not None:
        raise click.UsageError("--nproc starts processes on this machine; under torchrun the job's size comes "
                               "from torchrun: drop --nproc.", ctx=ctx)  # fmt: skip
    given = {k: v for k, v in flags.items() if v is not None and v != {}}
    if given.get("partitions"):  # the partitioned graph's dataset, recorded in the run's config
        from .data.partitions import PartitionedDataset

        described = PartitionedDataset(given["partitions"])
        if given.get("dataset", described.name) != described.name:
            raise click.UsageError(f"--dataset {given['dataset']} but {given['partitions']} holds {described.name}; "
                                   "drop --dataset.", ctx=ctx)  # fmt: skip
        given.setdefault("dataset", described.name)
        given.setdefault("dataset_options", described.meta.get("dataset_options") or {})
    if resume and overwrite:
        raise click.UsageError("--overwrite replaces a run, --resume continues it: give one of them.", ctx=ctx)
    if resume:
        fixed = fixed_on_resume(given, config_file)
        if fixed:
            names = ", ".join("--" + k.replace("_", "-") for k in fixed)
            allowed = ", ".join("--" + k.replace("_", "-") for k in RESUMABLE_OPTIONS)
            raise click.UsageError(
                f"--resume continues a run with its saved config.yaml; only {allowed} may change, not {names}.", ctx=ctx
            )

    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo

    def settle() -> Any:
        """The run's TrainConfig (under torchrun: on rank 0 only, which alone need see --resume's directory)."""
        kind = recipe or default_recipe(given, config_file, resume)
        if kind == "auto" and resume:
            raise click.UsageError("--resume continues a run with its saved settings; drop --recipe.", ctx=ctx)
        return resolve_train_config(given, config_file=config_file, resume=resume, nproc=nproc, echo=echo, recipe=kind)

    command = " ".join(["revgnn-dgl", *map(shlex.quote, sys.argv[1:])]) if sys.argv[1:2] == ["train"] else None
    if launched:
        from .train.launcher import train_from_env

        settled: Dict[str, Any] = {}  # rank 0's

        def settle_on_rank_0() -> Any:
            settled["config"] = settle()
            return settled["config"]

        def report(summary: Dict[str, Any]) -> None:
            if "config" in settled:
                out = settled["config"].out
                click.echo(json.dumps({"out": out, **summary}) if as_json else f"outputs in {out}")

        # Every rank runs this; rank 0 settles the configuration and sends it to the others. It ends the
        # process (never through gloo's destructor, which can hang on this torch).
        train_from_env(settle_on_rank_0, resume=bool(resume), timeout_s=dist_timeout, echo=echo, command=command,
                       on_result=report, overwrite=overwrite)  # fmt: skip
    config = settle()
    from .limits import check_threads

    check_threads(config.threads)  # before the launcher hands it to torch
    if config.threads is not None and config.nproc == 1 and "torch" not in sys.modules:
        # Read by OpenMP when torch and DGL load (just below): its pools then match the threads.
        os.environ.setdefault("OMP_NUM_THREADS", str(config.threads))

    from .train.distributed import interrupt_exit_code, sigterm_as_interrupt
    from .train.launcher import launch
    from .train.rundir import interruption_note

    try:
        with sigterm_as_interrupt():
            summary = launch(config, resume=bool(resume), timeout_s=dist_timeout, echo=echo, command=command,
                             overwrite=overwrite, machines=machines, baseline=baseline)  # fmt: skip
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM: every process has stopped, the files are whole
        click.echo(f"\n{interruption_note(config)}", err=True)
        ctx.exit(interrupt_exit_code(err))
    if machines is not None and machines.machine != 0:  # rank 0's machine writes the run directory
        click.echo(f"done: rank 0's machine ({machines.master_addr}) wrote the run directory")
    elif as_json:
        click.echo(json.dumps({"out": config.out, **summary}))
    else:
        click.echo(f"outputs in {config.out}")


def _machines_of_run(run_dir: Optional[str]) -> Optional[List[Any]]:
    """The nodes of each machine of a run trained by DistDGL over several machines (its evaluation
    parts were drawn per machine), from the partition folder its config.yaml names; else None."""
    if not run_dir:
        return None
    from .train import CONFIG_FILE, TrainConfig

    partitions = TrainConfig.from_file(Path(run_dir) / CONFIG_FILE).partitions
    if not partitions:
        return None
    from .data.partitions import PartitionedDataset

    described = PartitionedDataset(partitions)
    return described.machine_nodes() if described.parts > 1 else None


# ------------------------------------------------------------------ tune
#: train's options that place, resume or launch one training: a study decides those itself.
_NOT_IN_TUNE = (
    "out",
    "overwrite",
    "resume",
    "as_json",
    "nproc",
    "dist_timeout",
    "partitions",
    "servers",
    "ip_config",
    "master_port",
    "baseline",
)


def _fixed_train_options(f: Any) -> Any:
    """Give a command ``train``'s options (less :data:`_NOT_IN_TUNE`), grouped as in ``train --help``:
    what every trial of a study trains with. Copies, so that new ``train`` options come along."""
    import copy

    groups: Dict[Any, Any] = {}
    clones = []
    for param in train.params:
        if param.name in _NOT_IN_TUNE:
            continue
        clone = copy.copy(param)
        group = getattr(param, "group", None)
        if group is not None:  # cloup's groups record their options: tune's need their own
            if group not in groups:
                groups[group] = cloup.OptionGroup(f"{group.title} (fixed in every trial)", help=group.help)
            clone.group = groups[group]
        clones.append(clone)
    # click lists __click_params__ in reverse; this decorator sits below the command's own options.
    f.__click_params__ = getattr(f, "__click_params__", []) + clones[::-1]
    return f


@cli.command(cls=cloup.Command)
@cloup.option_group(
    "Search space",
    click.option(
        "--space",
        "space_items",
        multiple=True,
        metavar="KEY=SPEC",
        help="A searched setting: any train option or model argument (model_args.NAME, as --set), e.g. "
        "lr=loguniform:1e-4:1e-1, num_layers=int:4:16, dropout=float:0:0.5, "
        "model_args.conv=choice:gcn,gen (kinds: float, loguniform, int[:STEP], logint, choice; repeatable).",
    ),
    click.option(
        "--space-file",
        type=click.Path(exists=True, dir_okay=False),
        help="YAML file of KEY: SPEC lines (or KEY: {type, low, high, step, choices}); adds to --space.",
    ),
)
@cloup.option_group(
    "Study",
    click.option(
        "--out",
        type=click.Path(file_okay=False),
        help="Study folder: study.db, trials/trial-NNNN run directories, best.yaml, trials.csv, plots "
        "[default: runs/tune-MODEL-DATASET]. The same command again continues the study.",
    ),
    click.option(
        "--trials", type=click.IntRange(min=1), help="Trials the study should hold (a re-run continues up to N)."
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        metavar="SECONDS",
        help="Start no new trial after this time (running ones finish).",
    ),
    click.option(
        "--budget",
        type=click.FloatRange(min=0, min_open=True),
        metavar="MINUTES",
        help="Wall time of the whole study: no trial starts after it, and a trial still running then is "
        "stopped at its next evaluation (recorded as pruned; train --resume would finish it).",
    ),
    click.option(
        "--jobs",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Trials at once, each in its own process (threads each: the free cores / N, or --threads).",
    ),
    click.option(
        "--storage",
        metavar="URL",
        help="Optuna RDB storage, any SQLAlchemy URL, shared by every process "
        "that tunes the same study [default: sqlite:///OUT/study.db].",
    ),
    click.option("--study-name", default="tune", show_default=True, help="The study's name in the storage."),
    click.option(
        "--pruner",
        type=click.Choice(["patient", "median", "hyperband", "none"]),
        default="patient",
        show_default=True,
        help="Stop unpromising trials early from their per-epoch validation scores. patient: only a trial "
        "whose best score has stopped rising for --prune-patience epochs and is below the median; "
        "median: below the median at the same epoch.",
    ),
    click.option(
        "--prune-startup",
        type=click.IntRange(min=0),
        default=4,
        show_default=True,
        metavar="N",
        help="Trials never pruned (patient, median), the pruner's baseline.",
    ),
    click.option(
        "--prune-warmup",
        type=click.IntRange(min=0),
        metavar="EPOCHS",
        help="Epochs of each trial before it may be pruned (hyperband: its minimum resource) [default: "
        "--warmup-epochs or a tenth of --epochs, whichever is longer].",
    ),
    click.option(
        "--prune-patience",
        type=click.IntRange(min=1),
        metavar="EPOCHS",
        help="patient: epochs without progress before a trial may be pruned [default: a tenth of --epochs, "
        "at least 5].",
    ),
    click.option("--sampler-seed", type=int, default=0, show_default=True, help="Seed of the TPE sampler."),
    click.option(
        "--top", type=click.IntRange(min=1), default=5, show_default=True, help="Rows of the best-trials table."
    ),
)
@_fixed_train_options
@click.pass_context
def tune(
    ctx: click.Context,
    space_items: Tuple[str, ...],
    space_file: Optional[str],
    out: Optional[str],
    trials: Optional[int],
    timeout: Optional[float],
    budget: Optional[float],
    jobs: int,
    storage: Optional[str],
    study_name: str,
    pruner: str,
    prune_startup: int,
    prune_warmup: Optional[int],
    prune_patience: Optional[int],
    sampler_seed: int,
    top: int,
    config_file: Optional[str],
    **flags: Any,
) -> None:
    """Search hyper-parameters with Optuna: each trial a normal training run, pruned from its epochs.

    The objective is the best validation score (mean over --runs). Without --space, a default
    space for the model and the kind of graph (printed). At the end: a table of the best trials,
    the best config and its 3-seed training command, best.yaml (for train --config), trials.csv,
    and optimization_history.png, param_importances.png and intermediate_values.png. Needs pip
    install 'revgnn_dgl[tune]'.
    """
    from .train.settings import resolve_train_config
    from .train.tune import TuneSettings, default_study_dir, parse_space, read_space_file
    from .train.tune import tune as run_study

    if trials is None and timeout is None and budget is None:
        raise click.UsageError("give --trials N, --timeout SECONDS or both, or --budget MINUTES: a study needs an end.",
                               ctx=ctx)  # fmt: skip
    search = parse_space(space_items)
    if space_file:
        read_space_file(space_file, search)
    given = {k: v for k, v in flags.items() if v is not None and v != {}}
    base = resolve_train_config(given, config_file=config_file, jobs=jobs, echo=click.echo)
    settings = TuneSettings(
        out=out or default_study_dir(base), trials=trials, timeout=timeout, budget=budget, jobs=jobs, storage=storage,
        study_name=study_name, pruner=pruner, prune_startup=prune_startup, prune_warmup=prune_warmup,
        prune_patience=prune_patience, sampler_seed=sampler_seed, top=top,
    )  # fmt: skip
    from .train.distributed import interrupt_exit_code, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # SIGTERM ends the workers too, as Ctrl-C does
            run_study(base, search, settings, echo=click.echo)
    except KeyboardInterrupt as err:
        click.echo("\nInterrupted; the finished trials are in the study: the same command continues it.", err=True)
        ctx.exit(interrupt_exit_code(err))


# ------------------------------------------------------------------ evaluate
@cli.command(cls=cloup.Command)
@cloup.option_group(
    "What to evaluate",
    click.option("--model", help="Zoo model name or alias; with --pretrained or --checkpoint."),
    click.option("--pretrained", is_flag=True, help="Use the model card's weights and its evaluation settings."),
    click.option(
        "--checkpoint", type=click.Path(exists=True, dir_okay=False), help="A checkpoint file of this package."
    ),
    click.option(
        "--run",
        "run_dir",
        type=click.Path(exists=True, file_okay=False),
        help="A training output directory: its best checkpoint with its config.",
    ),
    click.option("--allow-nonfinite", is_flag=True, help="Load a checkpoint even if its weights hold NaN or inf."),
    click.option(
        "--foreign",
        is_flag=True,
        help="With --model NAME --checkpoint FILE: accept a plain safetensors state dict (no revgnn_dgl header, "
        "so no checksum) whose keys, dtypes and shapes are exactly the model's.",
    ),
)
@cloup.option_group(
    "Data",
    *_DATASET_OPTIONS,
)
@cloup.option_group(
    "Evaluation",
    click.option(
        "--eval-parts", type=click.IntRange(min=1), help="Parts per view [default: from the run or card, else 5]."
    ),
    click.option(
        "--eval-views", type=click.IntRange(min=1), help="Views averaged [default: from the run or card, else 1]."
    ),
    click.option("--seed", type=int, help="Seed of the evaluation partitions [default: from the run or card, else 0]."),
    click.option("--amp/--no-amp", default=None, help=_AMP_HELP),
    click.option(
        "--full-graph",
        is_flag=True,
        help="Also score the model's exact answer on the whole graph (no partition cuts an edge), computed "
        "in blocks of destination nodes; --save-predictions then writes those logits.",
    ),
    click.option(
        "--memory-budget",
        metavar="SIZE",
        help="With --full-graph: the memory its blocks are sized for, e.g. 4GB [default: a quarter of "
        "this process's memory, at most 4 GiB]; too small for one node's in-edges is refused.",
    ),
)
@cloup.option_group(
    "Device",
    click.option("--device", default="auto", show_default=True, help=_DEVICE_HELP),
    click.option("--threads", type=click.IntRange(min=1), help=_THREADS_HELP),
)
@cloup.option_group(
    "Output",
    click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object."),
    click.option(
        "--save-predictions",
        type=click.Path(dir_okay=False),
        help="Write every node's outputs to this .npz file (see the README: node_id, split, logits, probabilities, labels).",
    ),
)
@click.pass_context
def evaluate(
    ctx: click.Context,
    model: Optional[str],
    pretrained: bool,
    checkpoint: Optional[str],
    run_dir: Optional[str],
    device: str,
    threads: Optional[int],
    as_json: bool,
    save_predictions: Optional[str],
    allow_nonfinite: bool,
    foreign: bool,
    full_graph: bool,
    memory_budget: Optional[str],
    **flags: Any,
) -> None:
    """Validation and test scores of a pretrained model, a checkpoint or a training run.

    Uses the training runs' protocol (eval-parts parts, eval-views views, logits averaged),
    which is deterministic given the seed.
    """
    if run_dir and (model or checkpoint or pretrained):
        raise click.UsageError(
            "--run DIR uses the run's own checkpoint; drop --model, --pretrained and --checkpoint.", ctx=ctx
        )
    if not (run_dir or model or checkpoint):
        raise click.UsageError("give --model NAME --pretrained, --checkpoint FILE or --run DIR.", ctx=ctx)
    if pretrained and not model:
        raise click.UsageError("--pretrained needs --model NAME.", ctx=ctx)
    if model and pretrained == bool(checkpoint):
        raise click.UsageError("with --model, give either --pretrained or --checkpoint FILE.", ctx=ctx)
    if memory_budget is not None and not full_graph:
        raise click.UsageError("--memory-budget sizes --full-graph's blocks: add --full-graph.", ctx=ctx)
    if foreign and not (model and checkpoint):
        raise click.UsageError(
            "--foreign needs --model NAME --checkpoint FILE: the card says what the file must hold.", ctx=ctx
        )

    from .errors import ConfigError
    from .train import check_model_fits, load_dataset_for, model_overrides, resolve_device
    from .train.evaluation import evaluate as run_evaluation
    from .train.evaluation import save_predictions as write_predictions
    from .train.settings import evaluation_target

    _set_threads(threads)
    given = {k: v for k, v in flags.items() if v is not None and v != {}}
    config, net, label = evaluation_target(
        model=model, pretrained=pretrained, checkpoint=checkpoint, run_dir=run_dir, given=given, device=device,
        allow_nonfinite=allow_nonfinite,
    )  # fmt: skip
    torch_device = resolve_device(config.device)
    if config.amp and torch_device.type != "cuda":
        raise ConfigError("--amp needs a CUDA device.")
    dataset = load_dataset_for(config)
    if net is None:  # --model NAME --checkpoint FILE: the card's model, sized for this dataset
        from .zoo import create_model

        overrides, _ = model_overrides(config, dataset)
        net = create_model(model, pretrained=checkpoint, allow_foreign=foreign, **overrides)
    check_model_fits(net.zoo_config["arguments"], dataset, label, config.use_labels)
    from .train.data import check_parts

    check_parts(config, dataset)
    budget = None
    if memory_budget is not None:
        from .train.fullgraph import parse_memory_budget

        budget = parse_memory_budget(memory_budget)
    machines = _machines_of_run(run_dir)
    scores = run_evaluation(
        net, dataset, parts=config.eval_parts, views=config.eval_views, seed=config.seed, device=torch_device,
        amp=config.amp, return_logits=bool(save_predictions), config=config, full_graph=full_graph,
        memory_budget=budget, machines=machines,
    )  # fmt: skip
    if save_predictions:
        write_predictions(save_predictions, dataset, scores.pop("logits"))
    result = {
        "model": label,
        "dataset": config.dataset,
        "eval_parts": config.eval_parts,
        "eval_views": config.eval_views,
        "seed": config.seed,
        **scores,
    }
    if save_predictions:
        result["predictions"] = save_predictions
    card_metrics = _card_metrics(model) if pretrained and given.get("dataset") in (None, config.dataset) else None
    if card_metrics:
        result["card"] = card_metrics
    if as_json:
        click.echo(json.dumps(result))
        return
    if save_predictions:
        click.echo(f"predictions of {dataset.graph.num_nodes()} nodes in {save_predictions}")
    click.echo(
        f"{label} on {config.dataset}: {config.eval_parts} part(s) x {config.eval_views} view(s), "
        f"seed {config.seed}, device {torch_device}"
    )
    for split in ("val", "test"):
        whole = scores.get("full_graph")
        click.echo(f"{split} {scores['metric']}: {scores[split]:.6f}"
                   + (f"   full graph: {whole[split]:.6f}" if whole else ""))  # fmt: skip
    if scores.get("full_graph"):
        whole = scores["full_graph"]
        click.echo(f"full graph: {whole['blocks']} block(s) of destination nodes, estimated peak "
                   f"{whole['estimated_peak_bytes'] / 2**20:.0f} MiB; the partitioned scores drop the edges the parts cut")  # fmt: skip
    if card_metrics:
        same = all(abs(scores[k] - card_metrics[k]) < 5e-7 for k in ("val", "test"))
        click.echo(f"the card says val {card_metrics['val']:.6f}, test {card_metrics['test']:.6f}: "
                   + ("reproduced." if same else "not reproduced on this machine (results are exact per machine, "
                                                  "not across machines)."))  # fmt: skip


def _card_metrics(name: Optional[str]) -> Optional[Dict[str, Any]]:
    """The val and test scores a bundled card records for its weights, or None."""
    from .zoo import get_config

    metrics = (get_config(name) if name else {}).get("metrics") or {}
    if "val" not in metrics or "test" not in metrics:
        return None
    return {"metric": metrics.get("metric"), "val": float(metrics["val"]), "test": float(metrics["test"])}


# ------------------------------------------------------------------ data
@cli.group()
def data() -> None:
    """The datasets the library reads."""


@data.command("list")
@click.option(
    "--root",
    type=click.Path(file_okay=False),
    help="Data root to report locations for [default: $REVGNN_DGL_DATA, else for each dataset "
    "~/.cache/revgnn_dgl/data if it holds it, else a checkout's ../shared/data].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list.")
def data_list(root: Optional[str], as_json: bool) -> None:
    """Name, size, task, metric and where each dataset is looked for (no dataset is loaded)."""
    from .data.catalog import dataset_catalog

    rows = dataset_catalog(root)
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = [("name", "nodes", "edges", "features", "task", "metric", "found", "where")]
    for row in rows:
        table.append((
            row["name"], f"{row['nodes']:,}", f"{row['edges']:,}", str(row["node_feats"]),
            f"{row['task']} ({row['outputs']})", row["metric"], "yes" if row["available"] else "no",
            row["location"] or "generated",
        ))  # fmt: skip
    _echo_table(table)
    from .data.paths import DATA_ENV_VAR, default_data_root, user_data_root

    where = root or default_data_root()
    click.echo(f"Data root: {where} (--root, else ${DATA_ENV_VAR}, else for each dataset {user_data_root()} "
               "if it holds it, else a checkout's ../shared/data).")  # fmt: skip
    click.echo("Any DGL graph file works too: --dataset PATH.bin (see the README, 'Your own graph').")


def _echo_table(rows: List[Tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


# ------------------------------------------------------------------ partition
@cli.command(cls=cloup.Command)
@click.argument("dataset")
@click.option("--parts", type=click.IntRange(min=1), required=True, help="Number of partitions (one per machine).")
@click.option(
    "--method",
    type=click.Choice(["metis", "random"]),
    default="metis",
    show_default=True,
    help="METIS (fewer edges cut) or random assignment of the nodes.",
)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="The folder to write (new or empty).")
@click.option("--name", help="The graph's name in the partition configuration [default: from the dataset].")
@_DATASET_OPTIONS[1]
@_DATASET_OPTIONS[2]
def partition(dataset: str, parts: int, method: str, out: str, name: Optional[str], root: Optional[str],
              dataset_options: Dict[str, Any]) -> None:  # fmt: skip
    """Cut DATASET into partitions with DGL's partitioner, for `train --partitions OUT/NAME.json`.

    Keeps every node's features, labels and split and every edge's features; prints the nodes, edges
    and edges cut of each partition (an edge is cut when its ends lie in different partitions).
    """
    from .data import load_dataset
    from .data.partitions import partition_dataset

    loaded = load_dataset(dataset, root=root, **dataset_options)
    summary = partition_dataset(loaded, parts, out, method=method, name=name, dataset_options=dataset_options)
    cells = ", ".join(f"{i}: {p['nodes']:,} nodes, {p['edges']:,} edges, {p['cut']:,} cut"
                      for i, p in enumerate(summary["partitions"]))  # fmt: skip
    click.echo(f"{summary['config']}: {summary['nodes']:,} nodes, {summary['edges']:,} edges in {parts} "
               f"partition(s) ({method}) [{cells}]")  # fmt: skip


# ------------------------------------------------------------------ plot
@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "-o",
    "--out",
    "output",
    type=click.Path(dir_okay=False),
    default="training-curves.png",
    show_default=True,
    help="The PNG file to write.",
)
def plot(runs: Tuple[str, ...], output: str) -> None:
    """Draw the training curves of one or more runs (loss, validation and test metric per epoch)."""
    from .train.plot import plot_runs

    click.echo(f"wrote {plot_runs(runs, output)}")


# ------------------------------------------------------------------ zoo
@cli.group()
def zoo() -> None:
    """The model zoo: list, show, download and import pretrained models."""


@zoo.command("list")
@click.option(
    "--markdown", is_flag=True, help="Print the table as Markdown (the text of the repository's zoo/README.md)."
)
def zoo_list(markdown: bool) -> None:
    """The registered models: size, the paper's score, the bundled weights' measured score."""
    from .zoo.registry import card_rows, zoo_index_markdown

    if markdown:
        click.echo(zoo_index_markdown(), nl=False)
        return
    rows = card_rows()
    _echo_table([tuple(rows[0])] + [tuple(row.values()) for row in rows])


@zoo.command("show")
@click.argument("name")
def zoo_show(name: str) -> None:
    """Print a model card."""
    import yaml

    from .zoo import get_config

    click.echo(yaml.safe_dump(get_config(name), sort_keys=False, allow_unicode=True).rstrip())


@zoo.command("download")
@click.argument("name")
def zoo_download(name: str) -> None:
    """Fetch a model's pretrained checkpoint into the cache and print its path."""
    from .zoo import get_config
    from .zoo.hub import pretrained_path

    click.echo(str(pretrained_path(get_config(name))))


@zoo.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--model",
    help="The card FILE belongs to (deep, wide, any RevGNN card) [default: inferred from FILE's keys and shapes].",
)
@click.option("--num-layers", type=click.IntRange(min=1), help="Override the card's depth.")
@click.option("--hidden", type=click.IntRange(min=1), help="Override the card's width.")
@click.option("--groups", type=click.IntRange(min=1), help="Override the card's number of groups.")
@click.option(
    "--out", type=click.Path(dir_okay=False), help="Where to write [default: the cache path of --pretrained]."
)
@click.option("--allow-nonfinite", is_flag=True, help="Convert weights holding NaN or inf instead of refusing them.")
@click.option("--force", is_flag=True, help="Replace a checkpoint already at the destination [default: refuse].")
def zoo_import(file: str, model: Optional[str], out: Optional[str], allow_nonfinite: bool, force: bool,
               **shape: Optional[int]) -> None:  # fmt: skip
    """Convert an official RevGNN checkpoint (revgnn_deep.pth, revgnn_wide.pth or any official-layout
    one) into this package's format; prints its sha256 and the card lines to paste. The file is
    read by our own reader, which never runs code from it."""
    from .zoo.convert import import_official_checkpoint

    overrides = {k: v for k, v in shape.items() if v is not None}
    import_official_checkpoint(file, model=model, out=out, allow_nonfinite=allow_nonfinite, force=force, verbose=True,
                               **overrides)  # fmt: skip


# ------------------------------------------------------------------ benchmark
#: The commands of :mod:`revgnn_dgl.bench.cli` and their one-line help, so that ``benchmark --help``
#: answers without loading torch (a test checks this table against the real group).
BENCHMARK_COMMANDS = {
    "memory": "Peak memory (allocator and RSS) and time of one step, each configuration in a fresh process.",
    "speed": "Time per step of execution variants side by side (one process, interleaved rounds).",
}


class _BenchmarkGroup(click.Group):
    """Stands for the group of :mod:`revgnn_dgl.bench.cli`, imported only when a command runs (it loads torch)."""

    @staticmethod
    def _group() -> click.Group:
        from .bench.cli import benchmark

        return benchmark

    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted(BENCHMARK_COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(sorted(BENCHMARK_COMMANDS.items()))

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        return self._group().get_command(ctx, name)


@cli.group(cls=_BenchmarkGroup)
def benchmark() -> None:
    """Peak memory and time of one training step against depth, width and graph size."""


# ------------------------------------------------------------------ info
@cli.command()
@click.option(
    "--check",
    is_flag=True,
    help="Also run, in under a minute, the checks CI cannot run on a GPU: the reversible backward "
    "against autograd, memory flat in depth, and a 2-process step when several GPUs are visible.",
)
@click.option("--device", default="auto", show_default=True, help=f"Where --check runs: {_DEVICE_HELP}")
def info(check: bool, device: str) -> None:
    """Versions of Python, torch and DGL, and whether they can use CUDA (--check: and whether it all works)."""
    import platform

    import dgl
    import torch

    from . import __version__
    from .train import dgl_has_cuda

    cuda = torch.cuda.is_available()
    dgl_cuda = dgl_has_cuda()
    click.echo(f"revgnn_dgl {__version__}")
    click.echo(f"python     {platform.python_version()} ({sys.executable})")
    click.echo(
        f"torch      {torch.__version__} (built with CUDA {torch.version.cuda or 'no'}; "
        f"CUDA available: {'yes, ' + str(torch.cuda.device_count()) + ' device(s)' if cuda else 'no'})"
    )
    click.echo(
        f"dgl        {dgl.__version__} (CUDA support: "
        f"{'unknown, no GPU to try' if dgl_cuda is None else 'yes' if dgl_cuda else 'no, a CPU build'})"
    )
    click.echo(f"threads    {torch.get_num_threads()}")
    if check:
        from .bench.selfcheck import run_checks

        if not run_checks(device, echo=click.echo):
            raise click.exceptions.Exit(1)


if __name__ == "__main__":
    main()
