"""What the 2-process jobs of ``tests/train/test_distributed.py`` run, in a module of its own.

The processes a test starts (``torch.multiprocessing``, start method ``spawn``) import the
function they run by its module's name; a test module's name depends on pytest's import mode,
this helper's does not (``tests/conftest.py`` puts this folder on ``sys.path``, and the started
processes inherit it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
from torch import nn

from revgnn_dgl.bench import selfcheck
from revgnn_dgl.train import CONFIG_FILE, TrainConfig, train
from revgnn_dgl.train.data import DeviceData, forward, load_dataset_for, model_overrides, random_parts, subgraph
from revgnn_dgl.train.distributed import Context, DistributedError
from revgnn_dgl.train.loop import TRAIN_STREAM, train_epoch
from revgnn_dgl.train.losses import task_loss as _loss
from revgnn_dgl.zoo import create_model

REPO = Path(__file__).resolve().parents[1]

DATA = dict(dataset="synthetic-proteins", dataset_options={"num_nodes": 300}, eval_parts=2, device="cpu")
# RevGNN with the memory-saving backward (disable=False, the default), the weight-tied model
# whose one block every layer reuses, and DEQ-GNN; dropout on, so that seeding matters.
MODELS: Dict[str, Dict[str, Any]] = {
    "revgnn": dict(model="wide", num_layers=3, hidden=16, dropout=0.3),
    "wt-revgnn": dict(model="wt-revgnn-80", num_layers=3, hidden=16, dropout=0.3),
    "deq-gnn": dict(model="deq-gnn-64", hidden=16, dropout=0.3),
}
# One-step checks also for the other two architectures of the zoo.
STEP_MODELS: Dict[str, Dict[str, Any]] = {
    **MODELS,
    "resgnn": dict(model="resgnn-112", num_layers=3, hidden=16, dropout=0.3),
    "mlp": dict(model="mlp", hidden=16, dropout=0.3),
}
# Five parts over 2 ranks: steps of 2, 2 and 1 part, so rank 1 idles through the last one. The
# recipe's per-step randomness (DropEdge, input dropout) must not depend on who computes a part.
RUN = dict(**DATA, train_parts=5, lr=0.01, epochs=3, edge_dropout=0.1, input_dropout=0.1)
STEP_LR = 1.0


def quiet(line: str) -> None:
    """Swallow progress lines."""


def run_config(name: str, **changes: Any) -> TrainConfig:
    return TrainConfig(**{**RUN, **MODELS[name], **changes})


def subprocess_env(**extra: str) -> Dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


# ---------------------------------------------------------------------- one optimizer step
def one_step(ctx: Context, name: str, parts_per_step: int, unused: bool = False) -> Dict[str, Any]:
    """One SGD step (lr 1, no clipping) on the 2 parts of epoch 1, through ``train_epoch``.

    Returns the parameters after the step and how many times each parameter's gradient was
    accumulated (autograd's AccumulateGrad node, the one DDP hooks into) during the step.
    """
    config = TrainConfig(**{**DATA, **STEP_MODELS[name]})
    dataset = load_dataset_for(config)
    overrides, _ = model_overrides(config, dataset)
    torch.manual_seed(0)
    model = create_model(config.model, **overrides)
    if unused:  # a parameter no forward pass uses: DDP cannot reduce it
        model.register_parameter("unused_probe", nn.Parameter(torch.zeros(3)))
    trainable = [(pname, p) for pname, p in model.named_parameters() if p.requires_grad]
    fired = {pname: 0 for pname, _ in trainable}
    for pname, p in trainable:
        p.register_post_accumulate_grad_hook(lambda _p, pname=pname: fired.__setitem__(pname, fired[pname] + 1))
    ctx.use_device("cpu")
    net = ctx.wrap(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=STEP_LR)
    data = DeviceData.on(dataset, torch.device("cpu"))
    rng = np.random.default_rng([config.seed, TRAIN_STREAM, 1])
    loss = train_epoch(net, optimizer, data, 2, rng, grad_clip=0.0, parts_per_step=parts_per_step, dist=ctx)
    params = {k: v.detach().numpy().copy() for k, v in model.named_parameters()}
    return {"loss": loss, "params": params, "fired": fired}


def mean_loss_step(name: str) -> Dict[str, np.ndarray]:
    """The reference: one process, one SGD step on the mean of the losses of parts A and B,
    each part forwarded with torch seeded as ``train_epoch`` documents."""
    config = TrainConfig(**{**DATA, **STEP_MODELS[name]})
    dataset = load_dataset_for(config)
    overrides, _ = model_overrides(config, dataset)
    torch.manual_seed(0)
    model = create_model(config.model, **overrides).train()
    data = DeviceData.on(dataset, torch.device("cpu"))
    rng = np.random.default_rng([config.seed, TRAIN_STREAM, 1])
    parts = random_parts(data.graph.num_nodes(), 2, rng)
    order = rng.permutation(2)
    seeds = rng.integers(2**63 - 1, size=2)
    losses = []
    for position, p in enumerate(order):
        sub, nodes = subgraph(data.graph, parts[p])
        mask = data.train_mask[nodes]
        with torch.random.fork_rng():
            torch.manual_seed(int(seeds[position]))
            losses.append(_loss(forward(model, sub)[mask], data.labels[nodes][mask], dataset.task))
    optimizer = torch.optim.SGD(model.parameters(), lr=STEP_LR)
    optimizer.zero_grad()
    ((losses[0] + losses[1]) / 2).backward()
    optimizer.step()
    return {k: v.detach().numpy().copy() for k, v in model.named_parameters()}


def max_diff(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


# ---------------------------------------------------------------------- the jobs
def job(ctx: Context, out: str, killed: str) -> Dict[str, Any]:
    """Everything the 2-rank job does; runs on both ranks."""
    result: Dict[str, Any] = {"steps": {name: one_step(ctx, name, 1) for name in STEP_MODELS}}
    for name in MODELS:
        train(run_config(name, nproc=2, out=f"{out}/{name}"), progress=False, dist=ctx)
    try:  # rank 0 refuses to overwrite a run: every rank must stop, with rank 0's error
        train(run_config("revgnn", nproc=2, out=f"{out}/revgnn"), progress=False, dist=ctx)
    except Exception as err:  # noqa: BLE001
        result["overwrite_error"] = (type(err).__name__, str(err))
    train(TrainConfig.from_file(Path(killed) / CONFIG_FILE), resume=True, progress=False, dist=ctx)
    result["selfcheck"] = selfcheck._one_step(ctx, "cpu", 1, 2)  # what `info --check` runs on 2 GPUs
    try:
        one_step(ctx, "revgnn", 1, unused=True)
    except DistributedError as err:
        result["unused_error"] = str(err)
    return result


def reference_run(name: str, out: str) -> None:
    """One process with ``parts_per_step=2``: the run the 2-rank job must equal, in a fresh
    interpreter like the ranks (one thread), so no state left by earlier tests reaches it."""
    torch.set_num_threads(1)
    train(run_config(name, parts_per_step=2, out=out), progress=False)


if __name__ == "__main__":  # python tests/ddp_jobs.py reference NAME OUT
    import sys

    assert sys.argv[1] == "reference", sys.argv
    reference_run(sys.argv[2], sys.argv[3])
