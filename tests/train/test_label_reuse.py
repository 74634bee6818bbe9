"""Label reuse and self-distillation in the trainer (the released RevGAT recipe), on tiny graphs."""

from __future__ import annotations

from pathlib import Path

import dgl
import pytest
import torch
import torch.nn.functional as F

from revgnn_dgl.models.revgat_loss import self_kd_loss
from revgnn_dgl.train import BEST_FILE, STATE_FILE, ConfigError, TrainConfig, train
from revgnn_dgl.train.data import DeviceData, load_dataset_for
from revgnn_dgl.train.evaluation import evaluate
from revgnn_dgl.train.inputs import predict
from revgnn_dgl.train.losses import teacher_logits as _teacher_logits
from revgnn_dgl.train.state import load_training_state
from revgnn_dgl.zoo.checkpoint import build_from_checkpoint, load_checkpoint


def quiet(line: str) -> None:
    """Swallow progress lines."""


class Spy(torch.nn.Module):
    """Records its inputs and returns fixed logits."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.inputs = logits, []

    def forward(self, graph, feat):
        self.inputs.append(feat.clone())
        return self.logits


def tiny(n: int = 40, classes: int = 3):
    g = dgl.rand_graph(n, 120)
    g.ndata["feat"] = torch.randn(n, 2)
    labels = torch.arange(n) % classes
    train_mask = torch.arange(n) < 30
    return g, labels, train_mask


def test_training_step_shows_a_share_of_labels_and_supervises_the_rest() -> None:
    torch.manual_seed(0)
    g, labels, train_mask = tiny()
    spy = Spy(torch.zeros(40, 3))
    config = TrainConfig(use_labels=True, label_rate=0.5)
    _, supervised = predict(spy, g, labels, train_mask, config, 3, training=True)
    (feat,) = spy.inputs
    shown = feat[:, 2:].sum(1) == 1
    assert torch.equal(feat[:, :2], g.ndata["feat"])
    assert torch.equal(feat[shown, 2:], F.one_hot(labels[shown], 3).float())  # the true labels
    assert not shown[~train_mask].any() and (feat[~shown, 2:] == 0).all()
    assert torch.equal(supervised, train_mask & ~shown)  # the loss sees only the hidden ones
    assert 5 <= int(shown.sum()) <= 25


def test_label_iterations_feed_back_predictions_and_evaluation_shows_every_training_label() -> None:
    g, labels, train_mask = tiny()
    logits = torch.randn(40, 3)
    spy = Spy(logits)
    config = TrainConfig(use_labels=True, label_iters=2)
    _, supervised = predict(spy, g, labels, train_mask, config, 3, training=False)
    assert len(spy.inputs) == 3 and torch.equal(supervised, train_mask)
    first, second, third = spy.inputs
    assert torch.equal(first[train_mask, 2:], F.one_hot(labels[train_mask], 3).float())
    assert (first[~train_mask, 2:] == 0).all()
    expected = F.softmax(logits[~train_mask], dim=-1)
    assert torch.allclose(second[~train_mask, 2:], expected) and torch.equal(second[train_mask], first[train_mask])
    assert torch.equal(third, second)  # the spy's logits do not change


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gen = torch.Generator().manual_seed(0)
    n = 60
    src, dst = torch.randint(0, n, (200,), generator=gen), torch.randint(0, n, (200,), generator=gen)
    g = dgl.add_self_loop(dgl.graph((torch.cat([src, dst]), torch.cat([dst, src])), num_nodes=n))
    g.ndata["feat"] = torch.randn(n, 5, generator=gen)
    g.ndata["label"] = torch.arange(n) % 3
    split = torch.arange(n) % 4
    g.ndata["train_mask"], g.ndata["val_mask"], g.ndata["test_mask"] = split < 2, split == 2, split == 3
    path = tmp_path_factory.mktemp("g") / "graph.bin"
    dgl.save_graphs(str(path), [g])
    return path


def revgat_config(graph: Path, out: Path, **kw) -> TrainConfig:
    base = dict(model="revgat-arxiv", dataset=str(graph), num_layers=4, hidden=8, model_args={"heads": 2},
                train_parts=1, eval_parts=1, epochs=3, lr=0.01, optimizer="rmsprop", loss="log_ce", device="cpu",
                out=str(out), grad_clip=0.0)  # fmt: skip
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def teacher(graph: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "run"
    train(revgat_config(graph, out, use_labels=True, label_iters=1), progress=False)
    return out


def test_label_reuse_widens_the_model_and_evaluates_with_labels(teacher: Path, graph: Path) -> None:
    ckpt = load_checkpoint(teacher / BEST_FILE)
    assert ckpt.arguments["in_feats"] == 5 + 3 and ckpt.metadata["use_labels"] is True
    config = TrainConfig.from_file(teacher / "config.yaml")
    dataset = load_dataset_for(config)
    model = build_from_checkpoint(teacher / BEST_FILE)
    with_labels = evaluate(model, dataset, parts=1, config=config, return_logits=True)
    assert with_labels["val"] == pytest.approx(ckpt.metadata["val"], abs=1e-6)
    with pytest.raises(Exception):  # without label channels the inputs do not fit
        evaluate(model, dataset, parts=1)


def test_self_distillation_uses_the_teachers_logits(teacher: Path, graph: Path, tmp_path: Path) -> None:
    student_config = revgat_config(graph, tmp_path / "student", use_labels=True, label_iters=1, teacher=str(teacher),
                                   kd_alpha=0.9, kd_temp=0.5)  # fmt: skip
    dataset = load_dataset_for(student_config)
    data = DeviceData.on(dataset, torch.device("cpu"))
    logits = _teacher_logits(student_config, data, torch.device("cpu"))
    teacher_config = TrainConfig.from_file(teacher / "config.yaml")
    reference = evaluate(build_from_checkpoint(teacher / BEST_FILE), dataset, parts=1, config=teacher_config,
                         return_logits=True)["logits"]  # fmt: skip
    assert torch.equal(logits, reference)
    train(student_config, progress=False)
    plain = tmp_path / "plain"
    train(revgat_config(graph, plain, use_labels=True, label_iters=1), progress=False)
    a, b = load_training_state(tmp_path / "student" / STATE_FILE).model, load_training_state(plain / STATE_FILE).model
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the distillation term changed training
    # The loss: (1 - alpha) log-CE on the hidden training nodes + alpha T^2 KL(teacher || student) on all.
    z, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    t = torch.randn(6, 3)
    idx = torch.tensor([1, 4])
    ce = F.cross_entropy(z[idx], labels[idx], reduction="none")
    eps = 1 - torch.log(torch.tensor(2.0))
    p_t, logp_s = F.softmax(t / 0.5, -1), F.log_softmax(z / 0.5, -1)
    kl = (p_t * (p_t.log() - logp_s)).mean() * 0.25
    expected = 0.1 * (torch.log(eps + ce) - torch.log(eps)).mean() + 0.9 * kl
    assert self_kd_loss(z, labels, idx, t, 0.9, 0.5).item() == pytest.approx(expected.item(), rel=1e-5)


def test_label_reuse_needs_a_single_label_task(tmp_path: Path) -> None:
    config = TrainConfig(model="wide", dataset="synthetic-proteins", dataset_options={"num_nodes": 200}, num_layers=2,
                         hidden=8, epochs=1, device="cpu", use_labels=True, out=str(tmp_path / "r"))  # fmt: skip
    with pytest.raises(ConfigError, match="--use-labels needs a single-label task"):
        train(config, progress=False)
    assert not (tmp_path / "r").exists()
