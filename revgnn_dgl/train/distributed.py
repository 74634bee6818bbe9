r"""Data parallelism over graph partitions with ``torch.distributed``: one process per device, DDP.

The paper's recipe cuts every epoch into ``train_parts`` random parts of the graph and takes one
optimizer step per part. Parts are independent, so they are what data parallelism distributes:
with ``W`` processes (ranks), every rank draws the *same* partition of the epoch (it depends on
``(seed, epoch)`` only), and each optimizer step consumes ``W * parts_per_step`` consecutive
parts of the shuffled order, ``parts_per_step`` on each rank. ``DistributedDataParallel`` (DDP)
averages the gradients, so that

.. math::

    \nabla_\theta \frac{1}{m} \sum_{j \in \text{step}} \ell_j(\theta)

is the update's gradient on every rank, exactly what one process with ``parts_per_step * W``
parts per step computes (:func:`revgnn_dgl.train.train_epoch`). Each part's loss is the mean
over its training nodes, as in the one-part-per-step recipe, and :math:`m` counts the step's
parts that hold training nodes.

Uneven shares
    ``train_parts`` need not be a multiple of ``W * parts_per_step``: the last step of an epoch
    takes the parts left over, and a rank left without a part (or holding only parts without
    training nodes) still runs one forward and backward pass, on a part of the step, with its
    loss multiplied by 0. It so joins DDP's gradient all-reduce with an exact zero contribution,
    while every rank weights its parts by :math:`W / m`, so that DDP's average over the ``W``
    ranks is the mean over the :math:`m` parts. No rank waits for a step that never comes, and
    no part is dropped or counted twice. The price is one wasted pass per idle rank in the last
    step of an epoch; with ``train_parts`` a multiple of ``W * parts_per_step`` there is none.

Randomness
    When a step holds more than one part (``W * parts_per_step > 1``), each part's forward and
    backward pass runs with torch's generators seeded from the epoch's partition stream and the
    part's position in the epoch, so a part's dropout masks do not depend on which rank computes
    it, or after which other part. The global generators are left untouched (the one-part-per-step
    recipe keeps drawing from them, as before).

Gradient reduction
    DDP runs with ``find_unused_parameters=False``: every parameter must receive a gradient in
    every step. The reversible blocks' backward (:class:`revgnn_dgl.nn.GroupRevRes`) returns the
    parameters' gradients as outputs of one autograd node whose inputs they are, so DDP's
    per-parameter hook fires once per parameter per backward pass, also for WT-RevGNN, whose
    one block is applied by every layer (autograd sums the uses before the hook fires). After
    each step, a parameter without a gradient stops the run with its name, instead of DDP's
    delayed error at the next step.

What each rank does
    Every rank loads the dataset and builds the model (same seed; DDP broadcasts rank 0's weights
    anyway). Rank 0 alone evaluates (on the full graph, with the one-process :class:`Evaluator`,
    so the metric of a checkpoint is the same whoever trained it) and writes the run directory,
    the logs and the progress bar; the other ranks wait for it at the end of the epoch. On
    ``--resume``, rank 0 reads the saved state and sends it to the others, so the output
    directory need only exist on rank 0's machine. Buffers are not broadcast (``broadcast_buffers
    =False``): running statistics of batch norms (none of the zoo's cards use one) stay per rank,
    and checkpoints hold rank 0's.

Devices and backends
    The default process group is gloo: it carries the control messages (configuration, error
    flags, the epoch's loss) on CPU. On CUDA each process uses ``cuda:LOCAL_RANK`` and DDP
    reduces the gradients over a second, NCCL, group. ``--threads`` applies to each process.

Failures
    Collectives time out after ``timeout_s`` (default 1800 s, or ``$REVGNN_DGL_DIST_TIMEOUT``),
    so a lost process never hangs a job for ever; set it above the time rank 0 needs to evaluate.
    Errors in the phases without gradient traffic (reading the config and data, restoring a
    state, rank 0's evaluation and writing) are shared through a failure flag all-reduced at the
    phase's end: every rank stops, and one line names the failing rank and its error. An error in
    the middle of a step ends that process; the launcher (:func:`spawn`, or ``torchrun``) then
    stops the others, and the gloo peers also notice the closed connection at once.

Launching
    ``revgnn-dgl train --nproc N`` (or :func:`revgnn_dgl.train.launch`) starts ``N`` processes
    on this machine with :func:`spawn`; ``torchrun --nproc-per-node N [--nnodes M
    --rdzv-endpoint HOST:PORT ...] -m revgnn_dgl train ...`` starts one per device on each
    machine, and every process then reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR`` and ``MASTER_PORT`` from its environment (:func:`init_from_env`).

Test hook
    ``REVGNN_DGL_FAULT=rank1-epoch2:1:raise`` makes rank 1 raise an error at the start of epoch
    2's training (``:kill``: kill itself with SIGKILL), to check that a failure stops the whole
    job (:mod:`revgnn_dgl.faults`).

>>> ctx = Context()  # the one-process context: collectives are no-ops
>>> ctx.all_reduce_sum([2.0, 3.0]), ctx.broadcast({"a": 1}), ctx.is_main
([2.0, 3.0], {'a': 1}, True)
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any, Callable, ContextManager, Iterator, List, NoReturn, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError, DistributedError, PeerFailedError, is_user_error
from ..log import get_logger, set_rank
from ..processes import INTERRUPTED, Children, exit_reason, messages_to_parent, run_child
from ..signals import end_process, interrupt_exit_code, sigterm_as_interrupt
from .device import dgl_has_cuda, resolve_device
from .rendezvous import (
    DEFAULT_TIMEOUT_S,
    _check_port_free,
    _env_or,
    _rendezvous_timed_out,
    classify_error,
    describe_error,
    env_count,
    free_port,
    this_host,
    timeout_seconds,
)
from .settings import LAUNCHER_ENV  # what a launcher (torchrun, spawn) gives every process

log = get_logger(__name__)


class Context:
    """Who this process is in a data-parallel job, and the collectives the trainer needs.

    The default, ``Context()``, is one process alone: every collective is a no-op and
    :meth:`wrap` returns the model itself. :func:`init_from_env` returns the context of a
    process in a job, after joining the default (gloo) process group.

    Parameters
    ----------
    rank, world_size, local_rank : int
        This process's rank among ``world_size``, and its rank on its machine.
    timeout_s : float, optional
        Time limit of the collectives of the groups created later (the NCCL one).
    """

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        local_rank: int = 0,
        *,
        timeout_s: Optional[float] = None,
    ) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.timeout_s = timeout_s
        #: The device of this process, set by :meth:`use_device`.
        self.device: Optional[torch.device] = None
        #: Whether this context joined a process group (False: one process, collectives are no-ops).
        self.active = False
        #: The group DDP reduces gradients over (None: the default gloo group).
        self.grad_group: Optional[Any] = None
        #: Each rank's host, ``(hostname, address)``, by rank (set on joining a job; names a lost host).
        self.hosts: List[Tuple[str, str]] = []
        self._device_spec: Optional[str] = None

    def __repr__(self) -> str:
        return f"Context(rank={self.rank}, world_size={self.world_size}, local_rank={self.local_rank}, device={self.device})"

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that evaluates and writes."""
        return self.rank == 0

    # ------------------------------------------------------------------ devices and models
    def use_device(self, spec: str) -> torch.device:
        """The device of this process for a ``--device`` spec, and the gradient group for it.

        One process: :func:`revgnn_dgl.train.resolve_device`. In a job, rank 0 decides between
        CPU and CUDA (for ``auto``) so that all agree; each process then takes ``cuda:LOCAL_RANK``
        and DDP reduces over a new NCCL group, or the CPU and the default gloo group.
        Collective: every rank must call it.

        Raises
        ------
        ConfigError
            ``cuda:N`` (a job's processes take the GPU of their local rank), or fewer GPUs than
            processes on this machine.
        """
        if self.device is not None and spec == self._device_spec:
            return self.device  # a second run in the same job (runs > 1, or another train() call)
        if not self.active:
            self.device, self._device_spec = resolve_device(spec), spec
            return self.device
        if spec != "cpu" and self.local_rank < torch.cuda.device_count():
            # Before anything touches CUDA, so that no process opens a context on another's GPU.
            torch.cuda.set_device(self.local_rank)
        kind: Optional[str] = None
        with self.guard("choosing the device"):
            if self.is_main:
                if spec not in ("auto", "cpu", "cuda"):
                    raise ConfigError(
                        f"--device {spec}: each process of a data-parallel job uses the GPU of its local rank "
                        "(cuda:LOCAL_RANK); give --device cuda and choose the GPUs with CUDA_VISIBLE_DEVICES."
                    )
                kind = "cuda" if spec == "cuda" or (spec == "auto" and dgl_has_cuda()) else "cpu"
        kind = self.broadcast(kind)
        with self.guard("choosing the device"):
            if kind == "cpu":
                device = torch.device("cpu")
            else:
                count = torch.cuda.device_count()
                if self.local_rank >= count:
                    raise ConfigError(
                        f"the process of local rank {self.local_rank} has no GPU: {count} visible on this machine; "
                        f"start at most {count} processes per machine."
                    )
                device = torch.device("cuda", self.local_rank)
                resolve_device(str(device))  # the CUDA checks of one process (DGL's build), with their messages
        if kind == "cuda":
            self.grad_group = dist.new_group(
                backend="nccl", timeout=timedelta(seconds=self.timeout_s or DEFAULT_TIMEOUT_S)
            )
        self.device, self._device_spec = device, spec
        return device

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model for training: DDP around it in a job (``find_unused_parameters=False``), else itself."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device is not None and self.device.type == "cuda" else None
        return DistributedDataParallel(
            model,
            device_ids=device_ids,
            process_group=self.grad_group,
            broadcast_buffers=False,
            find_unused_parameters=False,
        )

    @staticmethod
    def no_sync(model: nn.Module) -> ContextManager[Any]:
        """DDP's ``no_sync`` (accumulate gradients locally) for a wrapped model, else nothing."""
        return model.no_sync() if hasattr(model, "no_sync") else nullcontext()

    def check_gradients(self, model: nn.Module) -> None:
        """After a step's backward passes: every trainable parameter got a gradient (DDP reduced it).

        Raises
        ------
        DistributedError
            Naming the parameters without one; DDP with ``find_unused_parameters=False`` would
            otherwise fail only at the next step, or leave them out of the reduction.
        """
        if not self.active:
            return
        module = getattr(model, "module", model)
        missing = [name for name, p in module.named_parameters() if p.requires_grad and p.grad is None]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise DistributedError(
                f"parameter(s) {shown} received no gradient in this step, so DDP could not reduce them; "
                "in data-parallel training every parameter must take part in every forward pass."
            )

    # ------------------------------------------------------------------ collectives
    def all_reduce_sum(self, values: Sequence[float]) -> List[float]:
        """Element-wise sum over the ranks (float64)."""
        if not self.active:
            return [float(v) for v in values]
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank (pickled: only for objects this package made)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def check(self, error: Optional[BaseException], what: str) -> None:
        """Share a failure: every rank calls it, with its own error or None.

        If any rank failed, the failing rank re-raises its error and the others raise
        :class:`PeerFailedError` naming the first failing rank and its error (one line). Never
        call it inside a section that itself runs collectives (a rank that failed before them
        would be out of step).
        """
        if not self.active:
            if error is not None:
                raise error
            return
        flag = torch.tensor([0.0 if error is None else 1.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() == 0:
            return
        messages: List[Optional[str]] = [None] * self.world_size
        dist.all_gather_object(messages, None if error is None else describe_error(error))
        if error is not None:
            error._revgnn_shared = True  # type: ignore[attr-defined]  # rank 0 reports it
            raise error
        rank = next(r for r, m in enumerate(messages) if m is not None)
        raise PeerFailedError(f"rank {rank} of {self.world_size} failed while {what}: {messages[rank]}", rank)

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Run a section that may fail on some ranks, then :meth:`check` (see its caveat)."""
        if not self.active:
            yield
            return
        error: Optional[BaseException] = None
        try:
            yield
        except Exception as err:  # noqa: BLE001  (shared, then re-raised)
            error = err
        self.check(error, what)

    def close(self) -> None:
        """Wait until every rank is done (a no-op for one process); then the process may end.

        The process group is not destroyed: on the pinned torch (2.2) gloo's destructor can
        deadlock (it joins a gloo thread that waits for the GIL its own thread holds). A rank
        that closed ends with :func:`end_process`, and the OS closes its sockets.
        """
        if self.active and dist.is_initialized():
            dist.barrier()  # rank 0 has written every file; nobody needs anybody any more
        self.active = False


# The signal helpers live in revgnn_dgl/signals.py, the one home of signal handling.


# ---------------------------------------------------------------------- starting a process


def init_from_env(timeout_s: Optional[float] = None) -> Context:
    """Join the job this process is a rank of (env ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_*``).

    Initialises the default process group with gloo and the collectives' timeout; the device
    (and a NCCL group for CUDA) comes later, from :meth:`Context.use_device`. From then on only
    rank 0's messages are printed (:func:`revgnn_dgl.log.set_rank`).

    Raises
    ------
    DistributedError
        When the environment lacks a launcher's variables.
    """
    missing = [key for key in LAUNCHER_ENV if key not in os.environ]
    if missing:
        raise DistributedError(
            f"not started by a launcher: {', '.join(missing)} unset; use torchrun or `revgnn-dgl train --nproc N`."
        )
    rank, world = env_count("RANK"), env_count("WORLD_SIZE", minimum=1)
    local_rank = env_count("LOCAL_RANK", str(rank))
    if rank >= world:
        raise DistributedError(f"RANK={rank} is not below WORLD_SIZE={world}; a launcher (torchrun) sets them.")
    seconds = timeout_seconds(timeout_s)
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    # The store's own timeout does not cover every wait (a port held by a program that is no torch
    # store leaves the client waiting for its handshake), so a watchdog bounds the rendezvous.
    if rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        _check_port_free(
            int(os.environ["MASTER_PORT"]), where
        )  # rank 0 hosts the store (torchrun's agent does it there)
    watchdog = threading.Timer(seconds + 5, _rendezvous_timed_out, args=(rank, world, where, seconds))
    watchdog.daemon = True
    watchdog.start()
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=seconds))
    except (RuntimeError, OSError, ValueError) as err:  # DistNetworkError and DistStoreError are RuntimeErrors
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise DistributedError(
            f"could not join the job at {where}: {first[:300]} "
            "(is the port taken by another program? choose another --master-port)"
        ) from None
    finally:
        watchdog.cancel()
    set_rank(rank)
    ctx = Context(rank, world, local_rank, timeout_s=seconds)
    ctx.active = True
    hosts: List[Any] = [None] * world
    dist.all_gather_object(hosts, this_host())  # once: so that a lost contact can name the host
    ctx.hosts = [tuple(h) for h in hosts]
    return ctx


def run_from_env(
    fn: Callable[..., Any],
    *args: Any,
    timeout_s: Optional[float] = None,
    on_result: Optional[Callable[[Any], None]] = None,
) -> "NoReturn":
    """Run ``fn(ctx, *args)`` as a rank of a job started by torchrun (or another launcher), then end the process.

    On success, once every rank is done, ``on_result(result)`` runs (to print it) and the
    process exits 0 (:func:`end_process`: never through gloo's destructor, which can hang).
    On failure, prints one ``Error: ...`` line to stderr: rank 0 for errors shared through
    :meth:`Context.check` (whichever rank had them), the failing rank itself otherwise (with the
    traceback first for errors that are not the user's to fix); then exits with status 1.
    Ctrl-C (or torchrun's SIGINT) exits 130, SIGTERM 143 (torchrun's own default kills at once).
    """
    ctx: Optional[Context] = None
    try:
        with sigterm_as_interrupt():
            ctx = init_from_env(timeout_s)
            result = fn(ctx, *args)
            ctx.close()
        if on_result is not None:
            on_result(result)
        end_process(0)
    except KeyboardInterrupt as err:
        end_process(interrupt_exit_code(err))
    except Exception as err:  # noqa: BLE001  (reported, then exit 1)
        rank = ctx.rank if ctx is not None else _env_or(("RANK", 0))
        world = ctx.world_size if ctx is not None else _env_or(("WORLD_SIZE", 1))
        kind, line = classify_error(err, rank, world, ctx.hosts if ctx is not None else ())
        shared = kind == "peer" or getattr(err, "_revgnn_shared", False)
        if kind == "error" and not is_user_error(err):
            traceback.print_exc()
        if not shared or rank == 0:
            print(f"Error: {line}", file=sys.stderr, flush=True)
        end_process(1)


# ---------------------------------------------------------------------- one machine, N processes
def spawn(
    fn: Callable[..., Any],
    nproc: int,
    *args: Any,
    threads: Optional[int] = None,
    timeout_s: Optional[float] = None,
    job: Optional[Tuple[int, int, str, int]] = None,
) -> List[Any]:
    """Run ``fn(ctx, *args)`` in ``nproc`` new processes on this machine, as the ranks of one job.

    The processes are started with ``torch.multiprocessing`` (``spawn``), talk over
    127.0.0.1 on a free port, and get the same environment as under torchrun (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). ``fn`` must be importable
    (a module-level function) and its arguments and results picklable.

    Parameters
    ----------
    fn : callable
        ``fn(ctx: Context, *args)``; its return value on each rank is collected.
    nproc : int
        Number of processes (the world size).
    threads : int, optional
        torch CPU threads of each process; default: this process's threads divided among them.
    timeout_s : float, optional
        The collectives' time limit (:func:`timeout_seconds`).
    job : (first_rank, world_size, master_addr, master_port), optional
        These processes are ranks ``first_rank`` to ``first_rank+nproc-1`` of a job of
        ``world_size`` ranks over several machines, whose rank 0 hosts the rendezvous at
        ``master_addr:master_port`` (:mod:`revgnn_dgl.train.machines`); default: the whole job,
        on 127.0.0.1 at a free port.

    Returns
    -------
    list
        ``fn``'s result on each rank, by rank.

    Raises
    ------
    DistributedError
        When a process fails: one line naming the first failing rank and its error (or the
        signal that killed it). The other processes are stopped first.
    """
    if nproc < 1:
        raise ConfigError(f"nproc must be at least 1, got {nproc}.")
    if threads is None:
        threads = max(1, torch.get_num_threads() // nproc)
    first, world, master, port = job if job is not None else (0, nproc, "127.0.0.1", free_port())
    # One pipe per rank, each with a single writer: no lock, so no semaphore that an interrupted
    # job could leave behind (a SimpleQueue's locks did).
    pipes = [multiprocessing.get_context("spawn").Pipe(duplex=False) for _ in range(nproc)]
    ranks = _Ranks([reader for reader, _ in pipes], nproc)
    writers = [writer for _, writer in pipes]
    # OpenMP reads OMP_NUM_THREADS when its library loads, before any set_num_threads: without it
    # each rank's OpenMP pools are as large as the machine and spin against the other ranks
    # (2 ranks on 2 cores: 1.07x the one-process epoch speed with it unset, 1.63x with it set).
    threads_env, seconds = {"OMP_NUM_THREADS": str(threads)}, timeout_seconds(timeout_s)
    with Children(grace_s=10.0) as group:  # Ctrl-C, SIGTERM, a failure: the ranks left are stopped
        for local_rank in range(nproc):
            arguments = (local_rank, (first, world, master), port, writers, fn, args, threads, seconds, os.getpid())
            group.start_function(_spawned, arguments, name=f"rank-{first + local_rank}", env=threads_env)
        failed = group.watch(poll_s=0.2, tick=ranks.drain)
        if failed is None:
            ranks.drain()
            return ranks.results
        group.end()  # the others, before their last words are read
        time.sleep(0.1)  # the last words of the stopped processes
        ranks.drain()
        if group.interrupted():
            raise KeyboardInterrupt from None  # Ctrl-C reached the processes first
        index = group.children.index(failed)
        code = int(failed.exitcode or 0)
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"  # as torch's spawn said it
        first_words = f"process {index} terminated with {how}"
        codes = [child.exitcode for child in group]
        raise DistributedError(_failure_line(first_words, codes, ranks.failures, world, first))


class _Ranks:
    """What the ranks of :func:`spawn` send their parent: rank 0's messages, results and failures."""

    def __init__(self, readers: List[Any], nproc: int) -> None:
        self.readers = readers
        self.results: List[Any] = [None] * nproc
        self.failures: List[Tuple[float, str, int, str]] = []

    def drain(self) -> None:
        from multiprocessing.connection import wait

        while self.readers:
            ready: List[Any] = wait(self.readers, timeout=0)
            if not ready:
                return
            for reader in ready:
                try:
                    tag, rank, *payload = reader.recv()
                except (EOFError, OSError):  # the rank is gone and said all it had to say
                    self.readers.remove(reader)
                    continue
                if tag == "log":  # a rank's message, printed here as this process prints its own
                    log.info(payload[0])
                elif tag == "result":
                    self.results[rank] = payload[0]
                else:
                    self.failures.append((float(payload[0]), str(payload[1]), int(rank), str(payload[2])))


def _failure_line(first_words: str, codes: Sequence[Optional[int]], failures: Sequence[Tuple[float, str, int, str]],
                  nproc: int, first: int = 0) -> str:  # fmt: skip
    """The first failure: a rank's own error, else a rank killed by a signal, else a lost contact."""
    own = sorted(f for f in failures if f[1] == "error")
    if own:
        return own[0][3]
    # A rank that aborts (SIGABRT) mostly does so because a peer vanished first: name that peer.
    for follow_up in ((signal.SIGTERM, signal.SIGABRT), (signal.SIGTERM,)):
        for rank, code in enumerate(codes):
            if code is not None and code < 0 and -code not in follow_up:
                return f"rank {first + rank} of {nproc} was {exit_reason(code)}"
    for kind in ("peer", "lost"):
        found = sorted(f for f in failures if f[1] == kind)
        if found:
            return found[0][3]
    return f"a process of the job failed: {' '.join(first_words.split())[:300]}"


def _spawned(
    local_rank: int,
    job: Tuple[int, int, str],
    port: int,
    writers: Sequence[Any],
    fn: Callable[..., Any],
    args: Tuple[Any, ...],
    threads: int,
    timeout_s: float,
    parent: int,
) -> None:
    """The body of a process started by :func:`spawn`; it ends when the launcher ``parent`` dies.
    ``job``: the rank of this machine's first process, the job's size and rank 0's address."""
    first, nproc, master = job
    os.environ.update(
        RANK=str(first + local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nproc),
        LOCAL_WORLD_SIZE=str(len(writers)), MASTER_ADDR=master, MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(threads)
    # Only rank 0 draws a progress bar: a thread lock will do, instead of tqdm's default named
    # semaphore, which a rank terminated by its launcher could not release.
    from tqdm import tqdm  # type: ignore[import-untyped]

    tqdm.set_lock(threading.RLock())
    out = writers[local_rank]  # this rank's own pipe to the parent
    messages_to_parent(out)  # rank 0's messages, printed by the launcher
    ctx: Optional[Context] = None

    def body() -> None:
        nonlocal ctx
        ctx = init_from_env(timeout_s)
        out.send(("result", local_rank, fn(ctx, *args)))
        ctx.close()

    def on_error(err: Exception) -> int:
        kind, line = classify_error(err, first + local_rank, nproc, ctx.hosts if ctx is not None else ())
        if kind == "error" and not is_user_error(err):
            traceback.print_exc()
        out.send(("failure", local_rank, time.time(), kind, line))
        return 1

    # A SIGKILLed launcher runs no cleanup: the OS then stops its ranks (SIGTERM, its default action).
    status, _ = run_child(parent, body, on_error, sigterm=False)
    end_process(130 if status in INTERRUPTED else status)  # never through gloo's destructor (see Context.close)
