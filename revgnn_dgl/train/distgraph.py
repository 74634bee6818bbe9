r"""Training on a partitioned graph through DGL's distributed graph (DistDGL).

``revgnn-dgl partition`` cuts a graph into partitions (:mod:`revgnn_dgl.data.partitions`); DGL's
graph servers then hold them, and the trainers read what each step needs through
:class:`dgl.distributed.DistGraph`. A trainer never holds the graph: per step it fetches the
paper's batch, a random part of its machine's nodes with the part's induced subgraph (node
features, edge features, labels, the training mask), so its memory is one part's, not the
graph's. Gradients are averaged with DDP exactly as in :mod:`revgnn_dgl.train.distributed`.

The layout is DistDGL's: one partition per machine, ``DGL_NUM_SERVER`` graph servers on each
(one main, the others its backups), and the trainers of machine ``m`` (ranks ``m*T`` to
``m*T+T-1`` of the job, ``T`` trainers per machine) train on partition ``m``'s nodes; every
trainer of a machine draws the same random parts of those nodes each epoch (from the seed and
the epoch), and each optimizer step takes one part per trainer (``parts_per_step`` each), as the
data-parallel recipe does. On one machine, a run therefore takes the same steps as the
one-process run with ``parts_per_step * nproc`` parts per step (tested, in float64, on the
weights after a step).

Evaluation is collective: the evaluation parts of each machine's nodes are shared among its
trainers, each scores its parts, and rank 0 gathers the validation and test nodes' logits and
computes the metric. Rank 0 alone writes the run directory, as in every multi-process run.

Why one partition per machine: DGL 2.1 finds a process's machine by its IP address, and its
servers name the shared memory that holds a partition's features after the feature alone
(``node~_N~feat-kvdata-``), so two partitions served on one machine would read each other's
data. For the same reason two jobs cannot run on one machine at the same time; the command that
starts the servers refuses a second one.

Starting it
    ``revgnn-dgl train --partitions DIR/NAME.json --nproc N`` on one machine starts
    ``--servers`` graph servers and N trainers itself (:func:`graph_servers`); across machines,
    DGL's ``tools/launch.py`` starts them (``docs/distributed.md``), setting ``DGL_ROLE`` and
    the other ``DGL_*`` variables this module reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import dgl
import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..data import evaluate_metric
from ..data.partitions import PartitionedDataset
from ..errors import ConfigError, DistributedError
from ..files import acquire_lock, open_nofollow, release_lock
from ..processes import Children, environment, exit_reason, kill_started_functions
from .config import TrainConfig
from .data import random_parts
from .inputs import predict

#: The variables DGL's servers and clients read (set by tools/launch.py, or by :func:`graph_servers`).
DGL_CLIENT_ENV = ("DGL_DIST_MODE", "DGL_IP_CONFIG", "DGL_NUM_SERVER")
#: Host-wide: DGL's shared-memory names do not tell two jobs apart.
HOST_LOCK = Path(tempfile.gettempdir()) / "revgnn-dgl-distgraph.lock"
#: Where DGL's servers keep their shared memory (POSIX shared memory on Linux).
SHARED_MEMORY = Path("/dev/shm")
#: The pid of the command that started a graph server: its death ends the server.
PARENT_ENV = "REVGNN_DGL_PARENT_PID"
_SPLITS = {"val": 1, "test": 2}


def under_dgl_launcher() -> bool:
    """Whether DGL's launcher (tools/launch.py) or :func:`graph_servers` set up this process."""
    return all(key in os.environ for key in DGL_CLIENT_ENV) and os.environ.get("DGL_DIST_MODE") == "distributed"


def serve_if_server() -> None:
    """Under DGL's launcher a machine's server processes run the training command too: serve, then exit."""
    if os.environ.get("DGL_ROLE") == "server":
        dgl.distributed.initialize(os.environ["DGL_IP_CONFIG"])  # serves until the trainers leave, then exits


def check_step_parts(config: TrainConfig, trainers_per_machine: int) -> None:
    """Refuse fewer parts than a step of a machine's trainers takes: a trainer would fetch a whole part
    in every step for nothing (the data-parallel rule for a rank without a part of its own)."""
    per_step = config.parts_per_step * trainers_per_machine
    if config.train_parts < per_step:
        raise ConfigError(
            f"--train-parts {config.train_parts} is fewer than the {per_step} parts a step of a machine's "
            f"{trainers_per_machine} trainer(s) takes (--parts-per-step {config.parts_per_step} each); give "
            f"--train-parts {per_step} or more."
        )


# ---------------------------------------------------------------------- a trainer's view of the graph
class DistData:
    """A trainer's access to the partitioned graph: its machine's nodes, and each part fetched on demand.

    It has what :func:`revgnn_dgl.train.train_epoch` asks of a
    :class:`~revgnn_dgl.train.data.DeviceData` (``num_nodes``, ``train_count``, ``part``), with
    the node positions ``0..num_nodes-1`` meaning this machine's nodes.
    """

    def __init__(self, dataset: PartitionedDataset, graph: Any, rank: int, world: int, device: torch.device) -> None:
        self.dataset, self.graph, self.device = dataset, graph, device
        book = graph.get_partition_book()
        self.machines = int(book.num_partitions())
        if world % self.machines:
            raise ConfigError(
                f"{world} trainer(s) cannot be shared evenly by the {self.machines} partitions; start a multiple of "
                f"{self.machines} (the same number on every machine)."
            )
        per_machine = world // self.machines
        self.machine, self.trainer_slot, self.trainer_slots = rank // per_machine, rank % per_machine, per_machine
        self.nodes: Tensor = torch.as_tensor(book.partid2nids(self.machine)).long()  # new ids, one contiguous range
        self.train_mask: Tensor = graph.ndata["train_mask"][self.nodes].bool()
        # Read once, not at every evaluation: per node 1 validation, 2 test, 0 neither.
        self.split_codes: Tensor = (graph.ndata["val_mask"][self.nodes].to(torch.int8) * _SPLITS["val"]
                                    + graph.ndata["test_mask"][self.nodes].to(torch.int8) * _SPLITS["test"])  # fmt: skip
        # Each machine's trainers draw their own parts; one machine keeps the one-process stream.
        self.stream: Tuple[int, ...] = (self.machine,) if self.machines > 1 else ()

    @classmethod
    def connect(cls, dataset: PartitionedDataset, rank: int, world: int, device: torch.device) -> "DistData":
        """Join the graph servers (``DGL_IP_CONFIG``) and open the distributed graph."""
        if not under_dgl_launcher():
            raise DistributedError(
                "--partitions trains through DGL's graph servers: start it with `revgnn-dgl train --partitions ... "
                "--nproc N` (which starts them) or with DGL's tools/launch.py."
            )
        dgl.distributed.initialize(os.environ["DGL_IP_CONFIG"])
        graph = dgl.distributed.DistGraph(dataset.graph_name, part_config=str(dataset.config))
        if graph.num_nodes() != dataset.num_nodes or graph.num_edges() != dataset.num_edges:
            raise DistributedError(
                f"the graph servers hold {graph.num_nodes()} nodes and {graph.num_edges()} edges, not the "
                f"{dataset.num_nodes} and {dataset.num_edges} of {dataset.config}."
            )
        data = cls(dataset, graph, rank, world, device)
        found = int(dgl.distributed.rpc.get_machine_id())  # DGL's, from this machine's address in ip_config
        if found != data.machine:  # its local partition (shared memory) would not be the nodes it trains on
            raise DistributedError(
                f"rank {rank} of {world} trains on partition {data.machine} but runs on machine {found} of "
                f"{os.environ['DGL_IP_CONFIG']} (found by its address): start machine m's trainers (ranks "
                f"m*{data.trainer_slots} to m*{data.trainer_slots}+{data.trainer_slots - 1}) on the machine of line m+1."
            )
        return data

    @property
    def num_nodes(self) -> int:
        return int(self.nodes.numel())

    def slot(self, rank: int, world: int) -> Tuple[int, int]:
        """This trainer's place among those that share a step's parts: its machine's trainers."""
        return self.trainer_slot, self.trainer_slots

    def train_count(self, ids: Optional[np.ndarray]) -> int:
        return int(self.train_mask.sum() if ids is None else self.train_mask[torch.from_numpy(ids)].sum())

    def part(self, ids: Optional[np.ndarray]) -> Tuple[dgl.DGLGraph, Tensor, Tensor, Tensor]:
        """The induced subgraph of the machine's nodes at positions ``ids`` (None: all), its labels,
        training mask and the nodes' ids in the distributed graph.

        The subgraph's edges are in the order of their ids, as :func:`dgl.node_subgraph` keeps them.
        """
        positions = torch.arange(self.num_nodes) if ids is None else torch.from_numpy(ids)
        nodes = self.nodes[positions]
        # All in-edges of the part's nodes (fanout -1), then those whose source is in the part too.
        frontier = dgl.distributed.sample_neighbors(self.graph, nodes, -1)
        src, dst = frontier.edges()
        eids = frontier.edata[dgl.EID]
        n = nodes.numel()
        at = torch.searchsorted(nodes, src).clamp_(max=n - 1)
        inside = nodes[at] == src
        order = torch.argsort(eids[inside])
        eids = eids[inside][order]
        sub = dgl.graph((at[inside][order], torch.searchsorted(nodes, dst[inside][order])), num_nodes=n)
        data = self.graph.ndata
        sub.ndata["feat"] = data["feat"][nodes]
        if self.dataset.has_species:
            sub.ndata["species"] = data["species"][nodes]
        if self.dataset.num_edge_feats:
            sub.edata["feat"] = self.graph.edata["feat"][eids]
        labels = data["label"][nodes]
        return sub.to(self.device), labels.to(self.device), self.train_mask[positions].to(self.device), nodes

    def labels_of(self, nodes: Tensor, chunk: int = 1 << 14) -> Tensor:
        """The labels of ``nodes``, pulled in chunks; 0/1 multi-label targets as int8 (8x less than int64)."""
        label = self.graph.ndata["label"]
        pieces = []
        for start in range(0, nodes.numel(), chunk):
            piece = label[nodes[start : start + chunk]]
            multilabel = self.dataset.task == "multilabel" and not piece.is_floating_point()
            pieces.append(piece.to(torch.int8) if multilabel else piece)
        if not pieces:
            return label[nodes]
        return torch.cat(pieces)


class DistEvaluator:
    """The evaluation protocol of :class:`~revgnn_dgl.train.evaluation.Evaluator` on a partitioned graph.

    Every trainer of a machine draws the same ``views`` random partitions of the machine's nodes
    into ``parts`` parts (from ``seed``) and scores every ``slots``-th part; rank 0 gathers the
    validation and test nodes' logits, averages them over the views and returns the scores.
    Collective: every rank calls it, rank 0 gets the scores, the others None.
    """

    def __init__(self, data: DistData, parts: int, views: int, seed: int, config: Optional[TrainConfig] = None) -> None:
        from .evaluation import EVAL_STREAM

        self.data, self.config = data, config
        rng = np.random.default_rng([seed, EVAL_STREAM, *data.stream])
        if parts == 1:
            self.views: List[List[Optional[np.ndarray]]] = [[None]]
        else:
            self.views = [[ids for ids in random_parts(data.num_nodes, parts, rng) if ids.size] for _ in range(views)]

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> Optional[Dict[str, float]]:
        model.eval()
        data = self.data
        nodes_seen: List[Tensor] = []
        splits: List[Tensor] = []
        outputs: List[Tensor] = []
        for view in self.views:
            for j, ids in enumerate(view):
                if j % data.trainer_slots != data.trainer_slot:
                    continue
                sub, labels, mask, nodes = data.part(ids)
                out, _ = predict(model, sub, labels, mask, self.config, data.dataset.num_outputs, training=False)
                split = data.split_codes if ids is None else data.split_codes[torch.from_numpy(ids)]
                keep = split > 0
                nodes_seen.append(nodes[keep])
                splits.append(split[keep])
                outputs.append(out.float().cpu()[keep])
                del sub, labels, mask, out
        # Only the validation and test nodes' ids and logits travel, split by split, as tensors straight
        # into rank 0's arrays (no pickled copies); rank 0 reads their labels itself.
        width = data.dataset.num_outputs
        nodes = torch.cat(nodes_seen) if nodes_seen else torch.zeros(0, dtype=torch.long)
        split = torch.cat(splits) if splits else torch.zeros(0, dtype=torch.int8)
        logits = torch.cat(outputs) if outputs else torch.zeros(0, width)
        del nodes_seen, splits, outputs
        world, main = dist.get_world_size(), dist.get_rank() == 0
        scores: Dict[str, float] = {}
        for name, code in _SPLITS.items():
            chosen = split == code
            mine = (nodes[chosen], logits[chosen])
            sizes = [torch.zeros(1, dtype=torch.long) for _ in range(world)]
            dist.all_gather(sizes, torch.tensor([mine[0].numel()]))
            if not main:
                for tensor in mine:
                    dist.send(tensor.contiguous(), dst=0)
                continue
            counts = [int(size) for size in sizes]
            every = (torch.empty(sum(counts), dtype=torch.long), torch.empty(sum(counts), width))
            start = 0
            for rank, count in enumerate(counts):
                for part, whole in zip(mine, every):
                    if rank == 0:
                        whole[start : start + count] = part
                    else:
                        dist.recv(whole[start : start + count], src=rank)
                start += count
            del mine
            node_ids, scored = every
            del every
            if len(self.views) > 1:  # a node in every view: the mean of its logits
                node_ids, where = torch.unique(node_ids, return_inverse=True)
                scored = torch.zeros(node_ids.numel(), width).index_add_(0, where, scored) / len(self.views)
            scores[name] = evaluate_metric(scored, data.labels_of(node_ids), data.dataset.task)
            del node_ids, scored
        return scores if main else None


def disconnect() -> None:
    """Leave the graph servers (every trainer, once training is done; the servers then end)."""
    dgl.distributed.exit_client()


# ---------------------------------------------------------------------- servers on this machine
@contextmanager
def graph_servers(config: TrainConfig, machines: Optional[Any] = None) -> Iterator[None]:
    """Start ``config.servers`` graph servers of ``config.partitions`` on 127.0.0.1 for ``config.nproc``
    trainers started in the block (they inherit the ``DGL_*`` variables set here).

    With ``machines`` (a :class:`~revgnn_dgl.train.machines.Machines`: this machine is one of
    the job's), the servers are this machine's (DGL ids ``m*S`` to ``m*S+S-1``, serving partition
    m) at its address in the job's ip_config, for the job's ``config.nproc`` trainers on all machines.

    When a server ends before the trainers, the trainers are stopped and one line says which
    server and why. On leaving, every server has ended (the trainers' :func:`disconnect` ends
    them; any left are terminated, then killed), and the temporary files are gone.
    """
    if config.partitions is None:
        raise ConfigError("graph servers serve a partitioned graph: give --partitions DIR/NAME.json.")
    dataset = PartitionedDataset(config.partitions)
    if machines is not None and dataset.parts != machines.count:
        raise ConfigError(
            f"{dataset.config} has {dataset.parts} partition(s) and {machines.ip_config} names {machines.count} "
            "machine(s): DGL serves one partition per machine; partition with --parts "
            f"{machines.count} or name {dataset.parts} machine(s)."
        )
    if dataset.parts != 1 and machines is None:
        raise ConfigError(
            f"{dataset.config} has {dataset.parts} partitions, and DGL serves one partition per machine (it tells "
            "machines apart by their IP address, and names a partition's shared memory after its features only); "
            "on one machine partition with --parts 1, or run the command on each machine with --ip-config "
            "(docs/distributed.md)."
        )
    with _host_lock():
        _remove_orphaned_folders()  # a command killed by SIGKILL ran no cleanup: its folder goes now
        folder = Path(tempfile.mkdtemp(prefix=SERVERS_PREFIX))
        (folder / OWNER_FILE).write_text(f"{os.getpid()}\n")
        common = _dgl_environment(config, dataset, folder, machines)
        servers = Children(grace_s=5.0)
        shared_before = _shared_memory()
        graceful = False
        try:
            server_ids = list(range(config.servers)) if machines is None else machines.server_ids(config.servers)
            logs = [_start_server(servers, i, common, folder) for i in server_ids]
            with environment({**common, "DGL_ROLE": "client"}):  # what the trainers started in the block inherit
                _watched(servers, logs, folder)
                yield
            graceful = True
        finally:
            _record_shared_memory(servers, folder)
            # Every server ended: the trainers' goodbye ends them; any left are terminated, then killed.
            servers.end(wait_s=10.0 if graceful else 0.1)
            # A server stopped by a signal leaves its shared memory behind: remove what these servers made,
            # by their exact names (those they mapped, new since they started), never another program's.
            _remove_shared_memory(_recorded_names(folder) - shared_before)
            shutil.rmtree(folder, ignore_errors=True)


def _dgl_environment(
    config: TrainConfig, dataset: PartitionedDataset, folder: Path, machines: Optional[Any]
) -> Dict[str, str]:
    """The ``DGL_*`` variables of the servers and trainers, with the job's ip_config written in ``folder``."""
    from .distributed import free_port

    ip_config = folder / "ip_config.txt"
    if machines is None:
        ip_config.write_text(f"127.0.0.1 {free_port()}\n")
    else:  # the job's, the same on every machine
        shutil.copyfile(machines.ip_config, ip_config)
    return {
        "DGL_DIST_MODE": "distributed", "DGL_IP_CONFIG": str(ip_config), "DGL_NUM_SERVER": str(config.servers),
        "DGL_NUM_CLIENT": str(config.nproc), "DGL_CONF_PATH": str(Path(dataset.config).resolve()),
        "DGL_NUM_SAMPLER": "0", "DGL_GRAPH_FORMAT": "csc,coo",
    }  # fmt: skip


def _start_server(servers: Children, i: int, common: Dict[str, str], folder: Path) -> Path:
    """Start graph server ``i`` (in its own session, its output in ``folder/server-i.log``); its log."""
    path = folder / f"server-{i}.log"
    env = {**os.environ, **common, "DGL_ROLE": "server", "DGL_SERVER_ID": str(i), "OMP_NUM_THREADS": "1",
           PARENT_ENV: str(os.getpid())}  # fmt: skip
    with open(path, "wb") as log:
        servers.start_command(
            [sys.executable, "-m", "revgnn_dgl.train.distgraph"], name=f"graph server {i}", env=env, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    return path


@contextmanager
def _watched(servers: Children, logs: List[Path], folder: Path) -> Iterator[None]:
    """Inside the block, a server that ends stops the trainers (they would wait for it for ever), and the
    block ends with one line naming it."""
    failed: List[str] = []
    stop = threading.Event()
    watch = threading.Thread(target=_watch, args=(servers, logs, failed, stop, folder), daemon=True)
    watch.start()
    try:
        yield
    except BaseException:
        if failed:
            raise DistributedError(failed[0]) from None
        raise
    finally:
        stop.set()
        watch.join()
    if failed:
        raise DistributedError(failed[0])


def _watch(servers: Children, logs: List[Path], failed: List[str], stop: threading.Event,
           folder: Optional[Path] = None) -> None:  # fmt: skip
    """While the trainers run: a server that ends stops them (they would wait for it forever); the
    shared memory the servers map is recorded in ``folder`` as it appears."""
    while not stop.wait(0.2):
        if folder is not None:
            _record_shared_memory(servers, folder)
        for i, server in enumerate(servers):
            code = server.exitcode
            if code is None or code == 0:  # 0: it ended after every trainer said goodbye
                continue
            if stop.is_set():
                return
            failed.append(f"graph server {i} ended ({exit_reason(code)}) while training: {_last_line(logs[i])}")
            kill_started_functions()
            return


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


#: The servers' temporary folder (``/tmp/revgnn-dgl-servers-*``), the file naming the command that made
#: it, and the file recording the shared memory its servers created.
SERVERS_PREFIX, OWNER_FILE, SHM_FILE = "revgnn-dgl-servers-", "owner", "shared-memory"


def _record_shared_memory(servers: Iterable[Any], folder: Path) -> None:
    """Append to ``folder/shared-memory`` the ``/dev/shm`` names the live servers map (from
    ``/proc/PID/maps``) not yet recorded: their exact names, for the cleanup and for the next start
    after a SIGKILL."""
    known = _recorded_names(folder)
    found = set()
    prefix = f"{SHARED_MEMORY}/"
    for server in servers:
        try:
            lines = Path(f"/proc/{server.pid}/maps").read_text(errors="replace").splitlines()
        except OSError:  # ended, or no /proc here
            continue
        for line in lines:
            path = line.split(maxsplit=5)[5] if len(line.split(maxsplit=5)) == 6 else ""
            path = path.removesuffix(" (deleted)")
            if path.startswith(prefix) and "/" not in path[len(prefix) :]:
                found.add(path[len(prefix) :])
    new = sorted(found - known)
    if new:
        with open(folder / SHM_FILE, "a", encoding="utf-8") as fh:
            fh.write("".join(name + "\n" for name in new))


def _recorded_names(folder: Path) -> set:
    try:
        return {line for line in (folder / SHM_FILE).read_text(errors="replace").splitlines() if line}
    except OSError:
        return set()


def _remove_shared_memory(names: Any) -> None:
    for name in names:
        if name and "/" not in name and name not in (".", ".."):
            (SHARED_MEMORY / name).unlink(missing_ok=True)


def _remove_orphaned_folders() -> None:
    """Remove the servers' folders (and the shared memory they recorded) of commands that are gone, as a
    SIGKILLed command leaves them; only this user's real folders, never through a link. Under the host lock."""
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{SERVERS_PREFIX}*"):
        try:
            if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
            owner = int((folder / OWNER_FILE).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # not one of ours as this version writes them
        try:
            os.kill(owner, 0)
            continue  # its command still runs (or the pid was reused): leave it
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shm = SHARED_MEMORY
        _remove_shared_memory(name for name in _recorded_names(folder) if (shm / name).exists())
        shutil.rmtree(folder, ignore_errors=True)


def _shared_memory() -> set:
    try:
        return {entry.name for entry in SHARED_MEMORY.iterdir()}
    except OSError:  # no /dev/shm on this system
        return set()


@contextmanager
def _host_lock() -> Iterator[None]:
    fd = open_nofollow(HOST_LOCK, os.O_RDWR | os.O_CREAT, error=DistributedError)  # never through a planted link
    try:
        try:
            acquire_lock(fd, blocking=False)
        except BlockingIOError:
            raise DistributedError(
                f"another DistDGL job of revgnn-dgl runs on this machine ({HOST_LOCK} is locked): DGL names its "
                "servers' shared memory after the data, so two jobs on one machine would read each other's; wait "
                "for it to end."
            ) from None
        try:
            yield
        finally:
            release_lock(fd)
    finally:
        os.close(fd)


if __name__ == "__main__":  # a graph server started by graph_servers()
    from ..signals import end_with_parent

    try:
        if os.environ.get(PARENT_ENV):  # in its own session, so only this ends it with a SIGKILLed command
            end_with_parent(int(os.environ[PARENT_ENV]))
        serve_if_server()
    except KeyboardInterrupt:
        sys.exit(143)
