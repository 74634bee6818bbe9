"""The recipe options: each changes training as documented, and a resumed run with all of them
on equals an uninterrupted one bit for bit; edge dropout inside a reversible model is exact."""

from __future__ import annotations

import math
from pathlib import Path

import dgl
import pytest
import torch
import torch.nn.functional as F

from revgnn_dgl import create_model
from revgnn_dgl.train import BEST_FILE, STATE_FILE, TrainConfig, read_metrics, train
from revgnn_dgl.train.losses import task_loss as _loss
from revgnn_dgl.train.recipe import drop_edges, drop_input, lr_at, make_optimizer
from revgnn_dgl.train.state import load_training_state


def quiet(line: str) -> None:
    """Swallow progress lines."""


def multiclass_graph(path: Path, nodes: int = 80) -> Path:
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(0, nodes, (300,), generator=gen)
    dst = torch.randint(0, nodes, (300,), generator=gen)
    g = dgl.graph((torch.cat([src, dst]), torch.cat([dst, src])), num_nodes=nodes)
    g.ndata["feat"] = torch.randn(nodes, 6, generator=gen)
    g.ndata["label"] = torch.arange(nodes) % 3
    split = torch.arange(nodes) % 5
    g.ndata["train_mask"], g.ndata["val_mask"], g.ndata["test_mask"] = split < 3, split == 3, split == 4
    dgl.save_graphs(str(path), [g])
    return path


def config_for(graph: Path, out: Path, **kw) -> TrainConfig:
    base = dict(model="revgnn-112", dataset=str(graph), num_layers=4, hidden=8, train_parts=1, eval_parts=1,
                epochs=6, lr=0.01, device="cpu", out=str(out))  # fmt: skip
    return TrainConfig(**{**base, **kw})


# ------------------------------------------------------------------ schedules and optimizers
def test_lr_schedules_hand_checked() -> None:
    cosine = TrainConfig(lr=0.1, epochs=5, schedule="cosine", min_lr=0.0)
    # t = epoch - 1, T = 5: 0.05 * (1 + cos(pi t / 5))
    assert [lr_at(e, cosine) for e in range(1, 6)] == pytest.approx(
        [0.05 * (1 + math.cos(math.pi * t / 5)) for t in range(5)], rel=1e-15
    )
    step = TrainConfig(lr=1.0, epochs=10, schedule="step", step_size=3, gamma=0.1, warmup_epochs=2)
    assert [lr_at(e, step) for e in range(1, 9)] == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1])
    assert lr_at(7, TrainConfig(lr=0.3)) == 0.3


def test_adamw_decouples_weight_decay() -> None:
    """With a zero gradient AdamW shrinks the weights by exactly lr * wd; Adam's L2 moves them by ~lr."""
    for name in ("adamw", "adam"):
        p = torch.nn.Parameter(torch.full((3,), 2.0, dtype=torch.float64))
        opt = make_optimizer([p], TrainConfig(optimizer=name, lr=0.1, weight_decay=0.5))
        p.grad = torch.zeros_like(p)
        opt.step()
        if name == "adamw":
            assert torch.equal(p.detach(), torch.full((3,), 2.0 * (1 - 0.1 * 0.5), dtype=torch.float64))
        else:  # the L2 gradient 0.5 * 2 = 1 through Adam's normalisation: a step of lr
            assert torch.allclose(p.detach(), torch.full((3,), 2.0 - 0.1, dtype=torch.float64), atol=1e-7)


def test_label_smoothing_loss_hand_checked() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([0])
    logp = F.log_softmax(logits, dim=-1)
    eps = 0.3
    expected = -((1 - eps) * logp[0, 0] + eps / 3 * logp[0].sum())
    assert _loss(logits, labels, "multiclass", eps).item() == pytest.approx(expected.item(), rel=1e-12)
    assert _loss(logits, labels, "multiclass", 0.0).item() == pytest.approx(-logp[0, 0].item(), rel=1e-12)


# ------------------------------------------------------------------ dropout of inputs and edges
def test_drop_edges_keeps_nodes_and_matching_edge_data() -> None:
    g = dgl.rand_graph(50, 2000)
    g.edata["feat"] = torch.arange(2000, dtype=torch.float32).unsqueeze(1)
    torch.manual_seed(0)
    sub = drop_edges(g, 0.3)
    assert sub.num_nodes() == 50
    assert abs(sub.num_edges() / 2000 - 0.7) < 0.05
    kept = sub.edata["feat"].squeeze(1).long()  # which original edges survived
    src, dst = g.edges()
    sub_src, sub_dst = sub.edges()
    assert torch.equal(src[kept], sub_src) and torch.equal(dst[kept], sub_dst)
    torch.manual_seed(0)
    assert torch.equal(drop_edges(g, 0.3).edges()[0], sub_src)  # a function of the global generator
    assert drop_edges(g, 0.0) is g


def test_drop_input_scales_kept_entries() -> None:
    torch.manual_seed(1)
    x = torch.ones(1000, 4)
    y = drop_input(x, 0.25)
    assert torch.equal(y.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert abs((y == 0).float().mean().item() - 0.25) < 0.03


def test_edge_dropout_in_a_reversible_model_equals_autograd() -> None:
    """The memory-saving backward recomputes on the same dropped-edge graph: gradients equal
    ordinary autograd with the same edge mask, in float64."""
    torch.manual_seed(0)
    g = dgl.rand_graph(40, 300)
    feat = torch.randn(40, 6, dtype=torch.float64)
    grads = []
    for disable in (False, True):
        torch.manual_seed(1)
        model = create_model("revgnn-112", in_feats=6, out_feats=3, edge_feats=0, species_feats=0, hidden=8,
                             num_layers=6, dropout=0.2, disable=disable).double()  # fmt: skip
        model.train()
        torch.manual_seed(2)
        sub = drop_edges(g, 0.4)
        model(sub, feat).pow(2).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert sub.num_edges() < 300
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ each option changes training
@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return multiclass_graph(tmp_path_factory.mktemp("g") / "graph.bin")


def final_weights(out: Path) -> dict:
    return load_training_state(out / STATE_FILE).model


@pytest.fixture(scope="module")
def plain_run(graph: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "run"
    train(config_for(graph, out), progress=False)
    return out


@pytest.mark.parametrize(
    "option",
    [dict(weight_decay=0.1, optimizer="adamw"), dict(schedule="cosine"), dict(warmup_epochs=3),
     dict(input_dropout=0.3), dict(edge_dropout=0.3), dict(label_smoothing=0.2)],
    ids=lambda o: ",".join(o),
)  # fmt: skip
def test_each_option_changes_training(option: dict, graph: Path, plain_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(config_for(graph, out, **option), progress=False)
    plain, changed = final_weights(plain_run), final_weights(out)
    assert any(not torch.equal(plain[k], changed[k]) for k in plain), f"{option} changed nothing"
    lrs = [r["lr"] for r in read_metrics(out)]
    assert lrs == [lr_at(e, config_for(graph, out, **option)) for e in range(1, 7)]


def test_early_stopping_keeps_the_best_checkpoint(graph: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # lr so small that the validation accuracy cannot improve after the first evaluation
    summary = train(config_for(graph, out, epochs=30, lr=1e-9, patience=2), progress=False)
    records = read_metrics(out)
    assert len(records) == 3 and summary["runs"][0]["epochs"] == 3  # best at 1, then 2 without improvement
    assert summary["runs"][0]["epoch"] == 1 and (out / BEST_FILE).is_file()


def test_resume_with_every_option_equals_uninterrupted(graph: Path, tmp_path: Path) -> None:
    options = dict(optimizer="adamw", weight_decay=0.05, schedule="cosine", warmup_epochs=2, input_dropout=0.2,
                   edge_dropout=0.2, label_smoothing=0.1, train_parts=2, eval_parts=2)  # fmt: skip
    straight = tmp_path / "straight"
    train(config_for(graph, straight, **options), progress=False)
    interrupted = tmp_path / "interrupted"
    train(config_for(graph, interrupted, **{**options, "epochs": 3}), progress=False)
    train(config_for(graph, interrupted, **options), resume=True, progress=False)
    a, b = final_weights(straight), final_weights(interrupted)
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("time", "eval_time")} for r in rs]  # noqa: E731
    assert strip(read_metrics(straight)) == strip(read_metrics(interrupted))


def test_layer_weight_decay_splits_the_blocks_from_the_dense_layers() -> None:
    """GCNII's recipe: the blocks' parameters (``layers``) decay at layer_weight_decay, the
    encoder and head at weight_decay; without it, one group; a model without layers is refused."""
    from revgnn_dgl.errors import ConfigError
    from revgnn_dgl.models import RevGNN

    model = RevGNN(6, 3, hidden=8, num_layers=3, conv="gcnii", norm="none")
    opt = make_optimizer(model, TrainConfig(weight_decay=5e-4, layer_weight_decay=0.01))
    blocks = {id(p) for p in model.layers.parameters()}
    (first, second) = opt.param_groups
    assert first["weight_decay"] == 0.01 and {id(p) for p in first["params"]} == blocks
    assert second["weight_decay"] == 5e-4 and len(second["params"]) == len(list(model.parameters())) - len(blocks)
    assert [g["weight_decay"] for g in make_optimizer(model, TrainConfig(weight_decay=0.1)).param_groups] == [0.1]
    with pytest.raises(ConfigError, match="no parameters under `layers`"):
        make_optimizer(torch.nn.Linear(2, 2), TrainConfig(layer_weight_decay=0.01))
    with pytest.raises(ConfigError, match="layer_weight_decay"):
        TrainConfig(layer_weight_decay=-1.0).validate()
