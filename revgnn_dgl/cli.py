"""The ``revgnn-dgl`` command line: train, evaluate, the model zoo, benchmarks and environment info.

Heavy modules (torch, DGL, the package's models) are imported inside the commands, so that
``revgnn-dgl --help`` answers at once. Errors a user can fix (unknown model or dataset, bad
configuration, unusable checkpoint, unavailable device) print one ``Error: ...`` line and exit
with status 1 (2 for command-line usage errors); anything else is a bug and shows a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

import click
import cloup

from .cli_options import (
    DATASET_OPTIONS,
    DEVICE_HELP,
    at_least,
    evaluate_options,
    fixed_train_options,
    train_options,
    tune_options,
)
from .errors import is_user_error
from .signals import interrupt_exit_code

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


# ------------------------------------------------------------------ train
@cli.command(cls=cloup.Command)
@train_options
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
    from .train.command import OptionError, TrainOutcome, train_command

    results: TextIO = sys.stdout  # with --json the progress lines go to stderr, the summary alone here

    def report(outcome: TrainOutcome) -> None:
        if outcome.remote is not None:  # rank 0's machine writes the run directory
            click.echo(f"done: rank 0's machine ({outcome.remote}) wrote the run directory", file=results)
        elif as_json:
            click.echo(json.dumps({"out": outcome.config.out, **outcome.summary}), file=results)
        else:
            click.echo(f"outputs in {outcome.config.out}", file=results)

    command = " ".join(["revgnn-dgl", *map(shlex.quote, sys.argv[1:])]) if sys.argv[1:2] == ["train"] else None
    try:
        with _stdout_to_stderr() if as_json else contextlib.nullcontext(sys.stdout) as results:
            train_command(_given(flags), report, config_file=config_file, resume=resume, recipe=recipe, nproc=nproc,
                          dist_timeout=dist_timeout, overwrite=overwrite, ip_config=ip_config,
                          master_port=master_port, baseline=baseline, command=command)  # fmt: skip
    except OptionError as err:
        raise click.UsageError(str(err), ctx=ctx) from None
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM: every process has stopped, the files are whole
        click.echo(f"\n{getattr(err, 'note', 'Interrupted.')}", err=True)
        ctx.exit(interrupt_exit_code(err))


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[TextIO]:
    """``--json``: what is written to standard output meanwhile goes to stderr, the ranks' processes
    included (their file descriptor 1 too); yields where the summary goes, the real standard output."""
    real = sys.stdout
    try:
        fd, err_fd = real.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (click's test runner): Python's streams only
        with contextlib.redirect_stdout(sys.stderr):
            yield real
        return
    real.flush()
    saved = os.dup(fd)
    os.dup2(err_fd, fd)
    try:
        with open(os.dup(saved), "w", encoding="utf-8") as result, contextlib.redirect_stdout(sys.stderr):
            yield result
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)


def _given(flags: Dict[str, Any]) -> Dict[str, Any]:
    """The options given on the command line (those left out are None, or an empty mapping)."""
    return {k: v for k, v in flags.items() if v is not None and v != {}}


# ------------------------------------------------------------------ tune
@cli.command(cls=cloup.Command)
@tune_options
@fixed_train_options
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
    base = resolve_train_config(_given(flags), config_file=config_file, jobs=jobs)
    settings = TuneSettings(
        out=out or default_study_dir(base), trials=trials, timeout=timeout, budget=budget, jobs=jobs, storage=storage,
        study_name=study_name, pruner=pruner, prune_startup=prune_startup, prune_warmup=prune_warmup,
        prune_patience=prune_patience, sampler_seed=sampler_seed, top=top,
    )  # fmt: skip
    from .signals import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # SIGTERM ends the workers too, as Ctrl-C does
            run_study(base, search, settings)
    except KeyboardInterrupt as err:
        click.echo("\nInterrupted; the finished trials are in the study: the same command continues it.", err=True)
        ctx.exit(interrupt_exit_code(err))


# ------------------------------------------------------------------ evaluate
@cli.command(cls=cloup.Command)
@evaluate_options
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
    from .train.command import OptionError, evaluate_run

    try:
        evaluation = evaluate_run(
            model=model, pretrained=pretrained, checkpoint=checkpoint, run_dir=run_dir, given=flags, device=device,
            threads=threads, save_predictions=save_predictions, allow_nonfinite=allow_nonfinite, foreign=foreign,
            full_graph=full_graph, memory_budget=memory_budget,
        )  # fmt: skip
    except OptionError as err:
        raise click.UsageError(str(err), ctx=ctx) from None
    if as_json:
        click.echo(json.dumps(evaluation.result))
        return
    for line in evaluation.lines():
        click.echo(line)


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


def _echo_table(rows: Sequence[Tuple[str, ...]]) -> None:
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
@DATASET_OPTIONS[1].decorator
@DATASET_OPTIONS[2].decorator
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
@click.option("--num-layers", type=at_least("num_layers"), help="Override the card's depth.")
@click.option("--hidden", type=at_least("hidden"), help="Override the card's width.")
@click.option("--groups", type=at_least("groups"), help="Override the card's number of groups.")
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
@click.option("--device", default="auto", show_default=True, help=f"Where --check runs: {DEVICE_HELP}")
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

        if not run_checks(device):
            raise click.exceptions.Exit(1)


if __name__ == "__main__":
    main()
