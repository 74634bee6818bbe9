"""Starting a data-parallel training job: N processes on this machine, or one rank under torchrun.

:func:`launch` starts ``config.nproc`` processes here (:func:`revgnn_dgl.train.distributed.spawn`)
that each run :func:`revgnn_dgl.train.train` as one rank; :func:`train_from_env` is what every
process started by ``torchrun`` runs (``torchrun ... -m revgnn_dgl train ...``). Both end in
:func:`train_worker`: rank 0 settles the configuration and sends it to the others, then all train.

>>> from revgnn_dgl.train import TrainConfig, launch
>>> config = TrainConfig(model="wide", dataset="synthetic-proteins", dataset_options={"num_nodes": 300},
...                      num_layers=2, hidden=16, epochs=2, nproc=2, out="/tmp/revgnn-ddp", device="cpu")
>>> summary = launch(config, threads=1, echo=lambda line: None)  # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, NoReturn, Optional, Union

from .config import ConfigError, TrainConfig
from .distgraph import check_step_parts, disconnect, graph_servers, under_dgl_launcher
from .distributed import Context, Echo, run_from_env, spawn
from .loop import train

ConfigSource = Union[TrainConfig, Callable[[], TrainConfig]]


def launch(
    config: TrainConfig,
    *,
    resume: bool = False,
    threads: Optional[int] = None,
    timeout_s: Optional[float] = None,
    echo: Echo = print,
    progress: Optional[bool] = None,
    command: Optional[str] = None,
    baseline: Optional[bool] = False,
) -> Dict[str, Any]:
    """Train ``config`` with ``config.nproc`` processes on this machine (one process: in this one).

    Parameters
    ----------
    config : TrainConfig
        The run; ``nproc`` is the number of processes (the world size).
    resume : bool
        Continue the run in ``config.out`` (it must have been trained by as many processes).
    threads : int, optional
        torch CPU threads of each process; default: ``config.threads``, else this process's
        threads divided among them.
    timeout_s : float, optional
        Time limit of the collectives (default 1800 s or ``$REVGNN_DGL_DIST_TIMEOUT``).
    echo : callable
        Receives rank 0's progress lines, in this process.
    progress : bool, optional
        Rank 0's progress bar (None: when standard output is a terminal).
    command : str, optional
        The command line, recorded in ``summary.json``.
    baseline : bool, optional
        Fit the shallow baselines beside a one-process run (see :func:`revgnn_dgl.train.train`).

    Returns
    -------
    dict
        The summary, as :func:`revgnn_dgl.train.train` returns it.

    Raises
    ------
    DistributedError
        One line naming the failing rank and its error, after every process has stopped.
    """
    threads = threads if threads is not None else config.threads
    if config.partitions and not under_dgl_launcher():  # one machine: this command starts the graph servers
        check_step_parts(config, config.nproc)  # here, before any process starts: one line
        with graph_servers(config, echo):
            results = spawn(train_worker, config.nproc, config, resume, progress, command, threads=threads,
                            timeout_s=timeout_s, echo=echo)  # fmt: skip
        return results[0]
    if config.nproc == 1:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        return train(config, resume=resume, echo=echo, progress=progress, command=command, baseline=baseline)

    results = spawn(
        train_worker, config.nproc, config, resume, progress, command, threads=threads, timeout_s=timeout_s, echo=echo
    )
    return results[0]


def train_worker(
    ctx: Context, config: ConfigSource, resume: bool, progress: Optional[bool] = None, command: Optional[str] = None
) -> Dict[str, Any]:
    """One rank's share of a job: rank 0 settles ``config`` (a TrainConfig, or a function
    returning one, called on rank 0 only), every rank trains with it."""
    with ctx.guard("settling the configuration"):
        settled = (config() if callable(config) else config) if ctx.is_main else None
    settled = ctx.broadcast(settled)
    summary = train(settled, resume=resume, echo=ctx.echo_fn, progress=progress, command=command, dist=ctx)
    if settled.partitions:
        disconnect()  # every trainer is done with the graph servers, which then end
    return summary


def train_from_env(
    make_config: Callable[[], TrainConfig],
    *,
    resume: bool = False,
    timeout_s: Optional[float] = None,
    echo: Echo = print,
    command: Optional[str] = None,
    on_result: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> "NoReturn":
    """What each process started by torchrun runs: join the job, train as one rank, end the process.

    ``make_config`` runs on rank 0 only (the output directory, and on ``--resume`` its saved
    config, need only exist on rank 0's machine); its ``nproc`` must be 1 (not set) or the
    job's world size, and becomes the world size. Once every rank is done, ``on_result(summary)``
    runs and the process exits 0; errors print one line and exit with status 1, Ctrl-C 130
    (:func:`revgnn_dgl.train.distributed.run_from_env`).
    """
    world = int(os.environ["WORLD_SIZE"])

    def settle() -> TrainConfig:
        config = make_config()
        if config.nproc == world:
            return config
        if resume:
            raise ConfigError(
                f"{config.out} was trained by {config.nproc} process(es) and this job has {world}; "
                f"resume it with {config.nproc} in all (its optimizer steps average {config.nproc} x parts_per_step parts)."
            )
        if config.nproc != 1:
            raise ConfigError(f"the configuration sets nproc {config.nproc} but torchrun started {world} processes.")
        return config.updated({"nproc": world})

    run_from_env(train_worker, settle, resume, None, command, timeout_s=timeout_s, echo=echo, on_result=on_result)
