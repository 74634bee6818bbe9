"""What the DistDGL jobs of ``tests/train/test_distgraph.py`` run, in a module of its own
(the processes a test starts import the function they run by its module's name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import dgl
import numpy as np
import torch

from revgnn_dgl.data import NodeDataset, load_dataset
from revgnn_dgl.data.partitions import PartitionedDataset, partition_dataset
from revgnn_dgl.train import TrainConfig
from revgnn_dgl.train.data import DeviceData, model_overrides
from revgnn_dgl.train.distgraph import DistData, disconnect
from revgnn_dgl.train.distributed import Context
from revgnn_dgl.train.loop import TRAIN_STREAM, train_epoch
from revgnn_dgl.zoo import create_model

NUM_NODES = 300
# RevGNN-Wide's blocks (GENConv with edge features, species input) with dropout inside, and the
# recipe's per-part randomness: what each part's seed must reproduce on whichever trainer.
MODEL = dict(model="wide", num_layers=3, hidden=16, dropout=0.3)
STEP = TrainConfig(input_dropout=0.2)
PARTS = 2  # one step of two parts: one per trainer


def float64_dataset() -> NodeDataset:
    ds = load_dataset("synthetic-proteins", num_nodes=NUM_NODES)
    for frame in (ds.graph.ndata, ds.graph.edata):
        for key in list(frame.keys()):
            if frame[key].is_floating_point():
                frame[key] = frame[key].double()
    return ds


def make_partition(folder: Path, parts: int = 1, method: str = "random") -> str:
    return partition_dataset(float64_dataset(), parts, folder, method=method)["config"]


def _model(dataset: object) -> torch.nn.Module:
    config = TrainConfig(dataset="synthetic-proteins", **MODEL)
    overrides, _ = model_overrides(config, dataset)
    torch.manual_seed(0)
    return create_model(config.model, **overrides).double()


def _params(model: torch.nn.Module) -> Dict[str, np.ndarray]:
    # numpy, not tensors: a spawned rank's tensors would travel as shared memory it takes with it
    return {k: v.detach().numpy().copy() for k, v in model.named_parameters()}


def dist_step(ctx: Context, config_path: str) -> Dict[str, Dict[str, np.ndarray]]:
    """One SGD step (lr 1) of a trainer on the DistGraph: the weights before and after."""
    described = PartitionedDataset(config_path)
    data = DistData.connect(described, ctx.rank, ctx.world_size, torch.device("cpu"))
    model = _model(described)
    ctx.use_device("cpu")
    net = ctx.wrap(model)
    before = _params(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    rng = np.random.default_rng([0, TRAIN_STREAM, 1])
    train_epoch(net, optimizer, data, PARTS, rng, grad_clip=0.0, config=STEP, parts_per_step=1, dist=ctx)
    disconnect()
    return {"before": before, "after": _params(model)}


def renumbered(dataset: NodeDataset, orig_nids: np.ndarray, orig_eids: np.ndarray) -> NodeDataset:
    """The dataset with the partition's node and edge numbering (new id i is original id orig[i])."""
    new_of_orig = np.empty_like(orig_nids)
    new_of_orig[orig_nids] = np.arange(orig_nids.size)
    to_new = torch.from_numpy(new_of_orig)
    src, dst = dataset.graph.edges()
    eids = torch.from_numpy(orig_eids)
    graph = dgl.graph((to_new[src[eids]], to_new[dst[eids]]), num_nodes=dataset.graph.num_nodes())
    nodes = torch.from_numpy(orig_nids)
    for key, value in dataset.graph.ndata.items():
        graph.ndata[key] = value[nodes]
    for key, value in dataset.graph.edata.items():
        graph.edata[key] = value[eids]
    split = {s: torch.sort(to_new[getattr(dataset, f"{s}_idx")]).values for s in ("train", "val", "test")}
    return NodeDataset(
        dataset.name, graph, dataset.labels[nodes], split["train"], split["val"], split["test"], dataset.task
    )


def reference_step(config_path: str) -> Dict[str, Dict[str, np.ndarray]]:
    """The same step in one process holding the graph, with both parts in one step."""
    ids = PartitionedDataset(config_path).original_ids()
    dataset = renumbered(float64_dataset(), ids["nodes"], ids["edges"])
    model = _model(dataset)
    before = _params(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    rng = np.random.default_rng([0, TRAIN_STREAM, 1])
    data = DeviceData.on(dataset, torch.device("cpu"))
    train_epoch(model, optimizer, data, PARTS, rng, grad_clip=0.0, config=STEP, parts_per_step=PARTS)
    return {"before": before, "after": _params(model)}


# ---------------------------------------------------------------------- one host of two (tests/train/test_hosts.py)
def host_step(ctx: Context, config_path: str) -> Dict[str, Any]:
    """One SGD step (lr 1) of a trainer on its machine's whole partition (one part per machine), and
    every node's features as this trainer reads them through the DistGraph (most from the other host)."""
    described = PartitionedDataset(config_path)
    data = DistData.connect(described, ctx.rank, ctx.world_size, torch.device("cpu"))
    features = data.graph.ndata["feat"][torch.arange(described.num_nodes)].numpy().copy()
    model = _model(described)
    ctx.use_device("cpu")
    net = ctx.wrap(model)
    before = _params(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    rng = np.random.default_rng([0, TRAIN_STREAM, 1])
    train_epoch(net, optimizer, data, 1, rng, grad_clip=0.0, config=STEP, parts_per_step=1, dist=ctx)
    nodes = data.nodes.numpy().copy()
    disconnect()
    return {
        "before": before,
        "after": _params(model),
        "features": features,
        "nodes": nodes,
        "machine": data.machine,
        "host": ctx.hosts[ctx.rank],
    }


def reference_machine_step(config_path: str, machines: Optional[list] = None) -> Dict[str, Any]:
    """The step of :func:`host_step` in one process holding the graph: the parts are the
    partitions' node ranges (``machines``: only those), each with the seed its machine draws,
    the loss their mean."""
    from revgnn_dgl.train.losses import part_loss as _part_loss
    from revgnn_dgl.train.weighting import seeded_part as _seeded

    described = PartitionedDataset(config_path)
    ids = described.original_ids()
    dataset = renumbered(float64_dataset(), ids["nodes"], ids["edges"])
    model = _model(dataset)
    before = _params(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    seed = int(np.random.default_rng([0, TRAIN_STREAM, 1]).integers(2**63 - 1, size=1)[0])
    data = DeviceData.on(dataset, torch.device("cpu"))
    ranges = [r for m, r in enumerate(node_ranges(config_path)) if machines is None or m in machines]
    optimizer.zero_grad(set_to_none=True)
    model.train()
    for start, stop in ranges:
        with _seeded(seed, torch.device("cpu")):
            loss = _part_loss(model, data, np.arange(start, stop), STEP, None)
            (loss / len(ranges)).backward()
    optimizer.step()
    return {"before": before, "after": _params(model), "features": dataset.graph.ndata["feat"].numpy()}


def node_ranges(config_path: str) -> list:
    """Each partition's node ids (new numbering: contiguous ranges), from DGL's partition config."""
    import json

    meta = json.loads(Path(config_path).read_text())
    node_map = meta["node_map"]
    ranges = next(iter(node_map.values())) if isinstance(node_map, dict) else node_map
    return [(int(a), int(b)) for a, b in ranges]


def run_host_step(config_path: str, ip_config: str, result: str, nproc: int) -> None:
    """What each host runs: its graph server and its trainers (``nproc`` in the job), the results pickled."""
    import pickle

    from revgnn_dgl.train.distgraph import graph_servers
    from revgnn_dgl.train.distributed import spawn
    from revgnn_dgl.train.machines import Machines

    machines = Machines.from_file(ip_config, master_port=29500)
    job = TrainConfig(partitions=config_path, nproc=nproc, servers=1)
    with graph_servers(job, machines=machines):
        ranks = spawn(
            host_step,
            machines.trainers(nproc),
            config_path,
            threads=1,
            timeout_s=120,
            job=(machines.first_rank(nproc), nproc, machines.master_addr, machines.master_port),
        )
    Path(result).write_bytes(pickle.dumps(ranks))


if __name__ == "__main__":  # python tests/distgraph_jobs.py host-step CONFIG IP_CONFIG RESULT NPROC
    import sys

    assert sys.argv[1] == "host-step", sys.argv
    run_host_step(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
