"""Starting a data-parallel training job: N processes on this machine, or one rank under torchrun.

:func:`launch` starts ``config.nproc`` processes here (:func:`revgnn_dgl.train.distributed.spawn`)
that each run :func:`revgnn_dgl.train.train` as one rank; :func:`train_from_env` is what every
process started by ``torchrun`` runs (``torchrun ... -m revgnn_dgl train ...``). Both end in
:func:`train_worker`: rank 0 settles the configuration and sends it to the others, then all train.

>>> from revgnn_dgl.train import TrainConfig, launch
>>> config = TrainConfig(model="wide", dataset="synthetic-proteins", dataset_options={"num_nodes": 300},
...                      num_layers=2, hidden=16, epochs=2, nproc=2, out="/tmp/revgnn-ddp", device="cpu")
>>> summary = launch(config, threads=1)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, NoReturn, Optional, Tuple, Union

from .config import ConfigError, TrainConfig
from .distgraph import check_step_parts, disconnect, graph_servers, under_dgl_launcher
from .distributed import Context, env_count, run_from_env, spawn
from .loop import train
from .machines import Machines
from .rundir import FreshStart

ConfigSource = Union[TrainConfig, Callable[[], TrainConfig]]


def launch(
    config: TrainConfig,
    *,
    resume: bool = False,
    threads: Optional[int] = None,
    timeout_s: Optional[float] = None,
    progress: Optional[bool] = None,
    command: Optional[str] = None,
    overwrite: bool = False,
    machines: Optional[Machines] = None,
    baseline: Optional[bool] = False,
) -> Dict[str, Any]:
    """Train ``config`` with ``config.nproc`` processes on this machine (one process: in this one).

    With ``machines`` (``--ip-config``, for ``--partitions``), this machine's share of a job over
    several: its graph servers and its ``nproc / machines.count`` trainers, ranks
    ``machine * T`` on (:mod:`revgnn_dgl.train.machines`); the same call runs on every machine.

    ``resume``, ``progress``, ``command``, ``overwrite`` and ``baseline`` (one process only) are
    :func:`revgnn_dgl.train.train`'s; a resumed run must have been trained by as many processes.
    ``threads``: torch CPU threads of each process (default: ``config.threads``, else this
    process's threads divided among them). ``timeout_s``: the collectives' time limit (default
    1800 s or ``$REVGNN_DGL_DIST_TIMEOUT``). Returns the summary, as ``train`` returns it.

    Raises :class:`~revgnn_dgl.errors.DistributedError`, one line naming the failing rank and its
    error, after every process has stopped.
    """
    from ..limits import check_processes

    threads = threads if threads is not None else config.threads
    if machines is not None and not config.partitions:
        raise ConfigError("--ip-config names the machines of a DistDGL job: give --partitions too (or use "
                          "torchrun's --nnodes for data parallelism over copies of the graph).")  # fmt: skip
    here = machines.trainers(config.nproc) if machines is not None else config.nproc  # this machine's trainers
    servers = config.servers if config.partitions and not under_dgl_launcher() else 0
    # Before any process starts: the ranks and the graph servers this command would start.
    check_processes(f"--nproc {here}" + (f" and --servers {servers}" if servers else ""), here + servers)
    if config.nproc == 1 and not servers:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        return train(config, resume=resume, progress=progress, command=command, overwrite=overwrite, baseline=baseline)
    # Only rank 0's machine writes the run directory (another machine's --out is never touched).
    start = None if resume or (machines is not None and machines.machine != 0) else FreshStart(config)
    try:
        results = _start_ranks(config, (resume, progress, command, overwrite), here, servers, threads, timeout_s,
                               machines)  # fmt: skip
    except BaseException:
        if start is not None:  # every rank has ended: undo what a rank 0 stopped by a signal could not
            start.undo_after_ranks()
        raise
    return results[0]


def _start_ranks(
    config: TrainConfig, args: Tuple[Any, ...], here: int, servers: int, threads: Optional[int],
    timeout_s: Optional[float], machines: Optional[Machines],
) -> List[Any]:  # fmt: skip
    """This machine's ``here`` ranks (:func:`train_worker` with ``args``), and its graph servers if any."""
    if machines is not None:  # this machine's servers and trainers, ranks machine * here on
        check_step_parts(config, here)
        job = (machines.first_rank(config.nproc), config.nproc, machines.master_addr, machines.master_port)
        with graph_servers(config, machines=machines):
            return spawn(train_worker, here, config, *args, threads=threads, timeout_s=timeout_s, job=job)
    if servers:  # one machine: this command starts the graph servers
        check_step_parts(config, config.nproc)  # here, before any process starts: one line
        with graph_servers(config):
            return spawn(train_worker, config.nproc, config, *args, threads=threads, timeout_s=timeout_s)
    return spawn(train_worker, config.nproc, config, *args, threads=threads, timeout_s=timeout_s)


def train_worker(
    ctx: Context,
    config: ConfigSource,
    resume: bool,
    progress: Optional[bool] = None,
    command: Optional[str] = None,
    overwrite: bool = False,
) -> Dict[str, Any]:
    """One rank's share of a job: rank 0 settles ``config`` (a TrainConfig, or a function
    returning one, called on rank 0 only), every rank trains with it, and resumes when rank 0 does."""
    with ctx.guard("settling the configuration"):
        settled = (config() if callable(config) else config) if ctx.is_main else None
    # Rank 0's word also on resuming (and overwriting): across machines the others may run their first command again.
    settled, resume, overwrite = ctx.broadcast((settled, resume, overwrite))
    summary = train(settled, resume=resume, progress=progress, command=command, dist=ctx, overwrite=overwrite)
    if settled.partitions:
        disconnect()  # every trainer is done with the graph servers, which then end
    return summary


def train_from_env(
    make_config: Callable[[], TrainConfig],
    *,
    resume: bool = False,
    timeout_s: Optional[float] = None,
    command: Optional[str] = None,
    on_result: Optional[Callable[[Dict[str, Any]], None]] = None,
    overwrite: bool = False,
) -> "NoReturn":
    """What each process started by torchrun runs: join the job, train as one rank, end the process.

    ``make_config`` runs on rank 0 only (the output directory, and on ``--resume`` its saved
    config, need only exist on rank 0's machine); its ``nproc`` must be 1 (not set) or the
    job's world size, and becomes the world size. Once every rank is done, ``on_result(summary)``
    runs and the process exits 0; errors print one line and exit with status 1, Ctrl-C 130
    (:func:`revgnn_dgl.train.distributed.run_from_env`).
    """
    world = env_count("WORLD_SIZE", minimum=1)
    env_count("RANK")  # one line now, not a traceback, when a launcher's variable is not a number

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

    run_from_env(train_worker, settle, resume, None, command, overwrite, timeout_s=timeout_s, on_result=on_result)
