"""``revgnn-dgl train`` and ``revgnn-dgl evaluate`` as library calls: the rules between their
options, then the one call that does the work.

The command line parses options and prints; :func:`train_command` and :func:`evaluate_run` hold
what the commands decide: a DGL graph server's role, ``--partitions`` against ``--dataset``, what
``--resume`` may change, the processes' options, OpenMP's thread count before torch loads,
SIGTERM as an interrupt; and the evaluation of a run, a checkpoint or a pretrained card. Options
that do not go together raise :class:`OptionError` (the command line's usage error, status 2).
Importing this module loads neither torch nor DGL.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from ..errors import ConfigError
from .config import TrainConfig
from .settings import RESUMABLE_OPTIONS, default_recipe, fixed_on_resume, resolve_train_config, under_launcher


class OptionError(ConfigError):
    """Options of a command that do not go together (the command line shows it as a usage error)."""


@dataclass
class TrainOutcome:
    """What :func:`train_command` trained: the run's config and summary; ``remote``: the address of
    rank 0's machine when another machine (``--ip-config``) wrote the run directory."""

    config: TrainConfig
    summary: Dict[str, Any]
    remote: Optional[str] = None


def train_command(
    given: Mapping[str, Any],
    on_result: Callable[[TrainOutcome], None],
    *,
    config_file: Optional[str] = None,
    resume: Optional[str] = None,
    recipe: Optional[str] = None,
    nproc: Optional[int] = None,
    dist_timeout: Optional[float] = None,
    overwrite: bool = False,
    ip_config: Optional[str] = None,
    master_port: Optional[int] = None,
    baseline: Optional[bool] = None,
    command: Optional[str] = None,
) -> None:
    """``revgnn-dgl train``: check the options, resolve the run's config, launch it, hand the outcome to ``on_result``.

    ``given`` holds the TrainConfig keys the command line set. Under torchrun (a launcher's
    environment) this process is one rank: rank 0 settles the configuration, every rank trains,
    ``on_result`` runs on rank 0, and the process ends here. A KeyboardInterrupt (Ctrl-C, or
    SIGTERM: :class:`~revgnn_dgl.signals.Terminated`) propagates once every process has stopped,
    with a ``note`` attribute saying what the run kept and how to go on.
    """
    if os.environ.get("DGL_ROLE") == "server":  # DGL's tools/launch.py runs the command as a graph server too
        from .distgraph import serve_if_server

        serve_if_server()
        return
    launched = under_launcher()  # a rank of a job torchrun started
    machines = _check_process_options(launched, nproc, ip_config, master_port)
    given = _with_partitioned_dataset(given)
    _check_resume_options(given, config_file, resume, overwrite)

    def settle() -> TrainConfig:
        kind = recipe or default_recipe(given, config_file, resume)
        if kind == "auto" and resume:
            raise OptionError("--resume continues a run with its saved settings; drop --recipe.")
        return resolve_train_config(given, config_file=config_file, resume=resume, nproc=nproc, recipe=kind)

    if launched:
        _train_as_rank(settle, on_result, bool(resume), dist_timeout, command, overwrite)
    config = settle()
    _threads_before_torch(config)
    from ..signals import sigterm_as_interrupt
    from .launcher import launch
    from .rundir import interruption_note

    try:
        with sigterm_as_interrupt():
            summary = launch(config, resume=bool(resume), timeout_s=dist_timeout, command=command,
                             overwrite=overwrite, machines=machines, baseline=baseline)  # fmt: skip
    except KeyboardInterrupt as err:  # every process has stopped, the files are whole
        setattr(err, "note", interruption_note(config))  # noqa: B010  (the line the command prints)
        raise
    remote = machines.master_addr if machines is not None and machines.machine != 0 else None
    on_result(TrainOutcome(config, summary, remote))


def _check_process_options(
    launched: bool, nproc: Optional[int], ip_config: Optional[str], master_port: Optional[int]
) -> Any:
    """Refuse process options that do not go together; the machines of ``--ip-config`` (or None)."""
    if master_port is not None and ip_config is None:
        raise OptionError("--master-port goes with --ip-config (a DistDGL job over several machines).")
    if ip_config is not None and launched:
        raise OptionError("--ip-config starts this machine's servers and trainers itself: run it without torchrun.")
    if launched and nproc is not None:
        raise OptionError(
            "--nproc starts processes on this machine; under torchrun the job's size comes from torchrun: drop --nproc."
        )
    if ip_config is None:
        return None
    from .machines import DEFAULT_MASTER_PORT, Machines

    return Machines.from_file(ip_config, master_port=master_port or DEFAULT_MASTER_PORT)


def _with_partitioned_dataset(given: Mapping[str, Any]) -> Dict[str, Any]:
    """``--partitions``: the partitioned graph's dataset and options, recorded in the run's config."""
    given = dict(given)
    if not given.get("partitions"):
        return given
    from ..data.partitions import PartitionedDataset

    described = PartitionedDataset(given["partitions"])
    if given.get("dataset", described.name) != described.name:
        raise OptionError(
            f"--dataset {given['dataset']} but {given['partitions']} holds {described.name}; drop --dataset."
        )
    given.setdefault("dataset", described.name)
    given.setdefault("dataset_options", described.meta.get("dataset_options") or {})
    return given


def _check_resume_options(
    given: Mapping[str, Any], config_file: Optional[str], resume: Optional[str], overwrite: bool
) -> None:
    """``--resume`` keeps the run's saved settings: only :data:`RESUMABLE_OPTIONS` may be given with it."""
    if resume and overwrite:
        raise OptionError("--overwrite replaces a run, --resume continues it: give one of them.")
    fixed = fixed_on_resume(given, config_file) if resume else []
    if fixed:
        names = ", ".join("--" + k.replace("_", "-") for k in fixed)
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUMABLE_OPTIONS)
        raise OptionError(
            f"--resume continues a run with its saved config.yaml; only {allowed} may change, not {names}."
        )


def _threads_before_torch(config: TrainConfig) -> None:
    """Check the thread count, and give it to OpenMP, which reads it when torch and DGL load."""
    from ..limits import check_threads

    check_threads(config.threads)  # before the launcher hands it to torch
    if config.threads is not None and config.nproc == 1 and "torch" not in sys.modules:
        os.environ.setdefault("OMP_NUM_THREADS", str(config.threads))


def _train_as_rank(
    settle: Callable[[], TrainConfig],
    on_result: Callable[[TrainOutcome], None],
    resume: bool,
    dist_timeout: Optional[float],
    command: Optional[str],
    overwrite: bool,
) -> None:
    """One rank of a job torchrun started: rank 0 settles the configuration and reports; the process ends here."""
    from .launcher import train_from_env

    settled: Dict[str, TrainConfig] = {}  # rank 0's

    def settle_on_rank_0() -> TrainConfig:
        settled["config"] = settle()
        return settled["config"]

    def report(summary: Dict[str, Any]) -> None:
        if "config" in settled:
            on_result(TrainOutcome(settled["config"], summary))

    # Every rank runs this; it ends the process (never through gloo's destructor, which can hang on this torch).
    train_from_env(settle_on_rank_0, resume=resume, timeout_s=dist_timeout, command=command, on_result=report,
                   overwrite=overwrite)  # fmt: skip


# ---------------------------------------------------------------------- evaluate
@dataclass
class Evaluation:
    """What :func:`evaluate_run` measured: ``result`` (``revgnn-dgl evaluate --json``'s object), the
    device it ran on and the dataset's number of nodes; :meth:`lines` is the command's text."""

    result: Dict[str, Any]
    device: str
    num_nodes: int

    def lines(self) -> List[str]:
        """The human-readable report of ``revgnn-dgl evaluate``."""
        result, lines = self.result, []
        if "predictions" in result:
            lines.append(f"predictions of {self.num_nodes} nodes in {result['predictions']}")
        lines.append(
            f"{result['model']} on {result['dataset']}: {result['eval_parts']} part(s) x {result['eval_views']} "
            f"view(s), seed {result['seed']}, device {self.device}"
        )
        whole = result.get("full_graph")
        for split in ("val", "test"):
            lines.append(
                f"{split} {result['metric']}: {result[split]:.6f}"
                + (f"   full graph: {whole[split]:.6f}" if whole else "")
            )
        if whole:
            lines.append(
                f"full graph: {whole['blocks']} block(s) of destination nodes, estimated peak "
                f"{whole['estimated_peak_bytes'] / 2**20:.0f} MiB; the partitioned scores drop the edges the parts cut"
            )
        card = result.get("card")
        if card:
            same = all(abs(result[k] - card[k]) < 5e-7 for k in ("val", "test"))
            verdict = "reproduced." if same else (
                "not reproduced on this machine (results are exact per machine, not across machines).")  # fmt: skip
            lines.append(f"the card says val {card['val']:.6f}, test {card['test']:.6f}: {verdict}")
        return lines


def evaluate_run(
    *,
    model: Optional[str] = None,
    pretrained: bool = False,
    checkpoint: Optional[str] = None,
    run_dir: Optional[str] = None,
    given: Optional[Mapping[str, Any]] = None,
    device: str = "auto",
    threads: Optional[int] = None,
    save_predictions: Optional[str] = None,
    allow_nonfinite: bool = False,
    foreign: bool = False,
    full_graph: bool = False,
    memory_budget: Optional[str] = None,
) -> Evaluation:
    """Validation and test scores of a pretrained card (``model``, ``pretrained``), a checkpoint
    (``checkpoint``, with ``model`` for a card's model sized for the dataset, ``foreign`` for a
    plain safetensors state dict) or a training run (``run_dir``), with the runs' protocol.

    ``given`` (TrainConfig keys: dataset, root, dataset_options, eval_parts, eval_views, seed,
    amp) overrides the settings the run, checkpoint or card brings. ``threads``: torch CPU
    threads (default: the cores other jobs leave free). ``save_predictions``: every node's
    outputs to this ``.npz`` file. ``full_graph``: also the exact whole-graph scores, in blocks
    sized for ``memory_budget`` (e.g. ``"4GB"``).

    >>> evaluation = evaluate_run(model="revgnn-deep", pretrained=True)  # doctest: +SKIP
    >>> evaluation.result["test"]  # doctest: +SKIP
    """
    _check_evaluate_options(model, pretrained, checkpoint, run_dir, foreign, full_graph, memory_budget)
    from . import check_model_fits, load_dataset_for, model_overrides, resolve_device
    from .data import check_parts
    from .evaluation import evaluate
    from .evaluation import save_predictions as write_predictions
    from .settings import evaluation_target

    _set_threads(threads)
    given = {k: v for k, v in (given or {}).items() if v is not None and v != {}}
    config, net, label = evaluation_target(model=model, pretrained=pretrained, checkpoint=checkpoint, run_dir=run_dir,
                                           given=given, device=device, allow_nonfinite=allow_nonfinite)  # fmt: skip
    torch_device = resolve_device(config.device)
    if config.amp and torch_device.type != "cuda":
        raise ConfigError("--amp needs a CUDA device.")
    dataset = load_dataset_for(config)
    if net is None:  # a card's model with --checkpoint FILE: the card's model, sized for this dataset
        from ..zoo import create_model

        assert model is not None and checkpoint is not None  # evaluation_target builds every other model

        overrides, _ = model_overrides(config, dataset)
        net = create_model(model, pretrained=checkpoint, allow_foreign=foreign, **overrides)
    check_model_fits(net.zoo_config["arguments"], dataset, label, config.use_labels)
    check_parts(config, dataset)
    budget = _memory_budget(memory_budget)
    scores = evaluate(
        net, dataset, parts=config.eval_parts, views=config.eval_views, seed=config.seed, device=torch_device,
        amp=config.amp, return_logits=bool(save_predictions), config=config, full_graph=full_graph,
        memory_budget=budget, machines=_machines_of_run(run_dir),
    )  # fmt: skip
    if save_predictions:
        write_predictions(save_predictions, dataset, scores.pop("logits"))
    result = {"model": label, "dataset": config.dataset, "eval_parts": config.eval_parts,
              "eval_views": config.eval_views, "seed": config.seed, **scores}  # fmt: skip
    if save_predictions:
        result["predictions"] = save_predictions
    card_metrics = _card_metrics(model) if pretrained and given.get("dataset") in (None, config.dataset) else None
    if card_metrics:
        result["card"] = card_metrics
    return Evaluation(result, str(torch_device), int(dataset.graph.num_nodes()))


def _check_evaluate_options(
    model: Optional[str], pretrained: bool, checkpoint: Optional[str], run_dir: Optional[str], foreign: bool,
    full_graph: bool, memory_budget: Optional[str],
) -> None:  # fmt: skip
    if run_dir and (model or checkpoint or pretrained):
        raise OptionError("--run DIR uses the run's own checkpoint; drop --model, --pretrained and --checkpoint.")
    if not (run_dir or model or checkpoint):
        raise OptionError("give --model NAME --pretrained, --checkpoint FILE or --run DIR.")
    if pretrained and not model:
        raise OptionError("--pretrained needs --model NAME.")
    if model and pretrained == bool(checkpoint):
        raise OptionError("with --model, give either --pretrained or --checkpoint FILE.")
    if memory_budget is not None and not full_graph:
        raise OptionError("--memory-budget sizes --full-graph's blocks: add --full-graph.")
    if foreign and not (model and checkpoint):
        raise OptionError("--foreign needs --model NAME --checkpoint FILE: the card says what the file must hold.")


def _set_threads(threads: Optional[int]) -> None:
    """torch's CPU threads: ``threads``, else the cores other jobs leave free (by the load average)."""
    import torch

    from ..env import load_average, pick_threads
    from ..limits import check_threads, cpu_cores

    check_threads(threads)
    torch.set_num_threads(threads if threads is not None else pick_threads(cpu_cores(), load_average()))


def _memory_budget(memory_budget: Optional[str]) -> Optional[int]:
    if memory_budget is None:
        return None
    from .fullgraph import parse_memory_budget

    return parse_memory_budget(memory_budget)


def _machines_of_run(run_dir: Optional[str]) -> Optional[List[Any]]:
    """The nodes of each machine of a run trained by DistDGL over several machines (its evaluation
    parts were drawn per machine), from the partition folder its config.yaml names; else None."""
    if not run_dir:
        return None
    from .rundir import CONFIG_FILE

    partitions = TrainConfig.from_file(Path(run_dir) / CONFIG_FILE).partitions
    if not partitions:
        return None
    from ..data.partitions import PartitionedDataset

    described = PartitionedDataset(partitions)
    return described.machine_nodes() if described.parts > 1 else None


def _card_metrics(name: Optional[str]) -> Optional[Dict[str, Any]]:
    """The val and test scores a bundled card records for its weights, or None."""
    from ..zoo import get_config

    metrics = (get_config(name) if name else {}).get("metrics") or {}
    if "val" not in metrics or "test" not in metrics:
        return None
    return {"metric": metrics.get("metric"), "val": float(metrics["val"]), "test": float(metrics["test"])}
