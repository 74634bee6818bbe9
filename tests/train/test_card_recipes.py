"""Recipes that carry over: ``train --model CARD`` trains with the card's own training recipe
(flags and ``--config`` override it), a whole-graph training evaluates on the whole graph, and a
graph file's edge features can be ignored from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import List

import dgl
import pytest
import torch
import yaml
from click.testing import CliRunner, Result

from revgnn_dgl.cli import cli
from revgnn_dgl.errors import ConfigError
from revgnn_dgl.train import CONFIG_FILE, TrainConfig
from revgnn_dgl.train.settings import NOT_RECIPE, card_recipe, resolve_train_config
from revgnn_dgl.zoo.registry import get_config

REPO = Path(__file__).resolve().parents[2]
BUNDLED = sorted(p.parent.name for p in (REPO / "zoo").glob("*/card.yaml"))


def invoke(args: List[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=True)


def resolve(given: dict, **kwargs) -> TrainConfig:
    return resolve_train_config({"out": "unused", **given}, **kwargs)


@pytest.mark.parametrize("name", BUNDLED)
def test_each_bundled_card_resolves_to_its_own_recipe(name: str) -> None:
    """``train --model NAME`` and nothing else: every recipe key of the card's training section
    (all TrainConfig keys but the bookkeeping of NOT_RECIPE), its dataset and dataset options."""
    card = get_config(name)
    config = resolve({"model": name})
    training = card.get("training") or {}
    recipe = {k: v for k, v in training.items() if k in TrainConfig.keys() and k not in NOT_RECIPE}
    assert {k: getattr(config, k) for k in recipe} == recipe
    assert config.dataset == card["dataset"]
    assert config.dataset_options == (card.get("dataset_options") or {})
    defaults = TrainConfig()
    # threads: the free cores when not given (the machine's, never the card's).
    untouched = (
        set(TrainConfig.keys()) - set(recipe) - {"model", "dataset", "dataset_options", "out", "eval_parts", "threads"}
    )
    assert {k: getattr(config, k) for k in untouched} == {k: getattr(defaults, k) for k in untouched}
    if "eval_parts" not in recipe:  # the default, or the whole graph after a whole-graph training
        assert config.eval_parts == (1 if config.train_parts == 1 else defaults.eval_parts)


def test_flags_and_config_file_override_the_card(tmp_path: Path) -> None:
    card = get_config("revgnn-cora-64x64")["training"]
    config = resolve({"model": "revgnn-cora-64x64", "lr": 0.05, "dataset_options": {"self_loops": True}})
    assert config.lr == 0.05 and config.weight_decay == card["weight_decay"] and config.patience == card["patience"]
    assert config.dataset == "cora" and config.dataset_options == {"self_loops": True}
    file = tmp_path / "c.yaml"
    file.write_text("model: revgnn-cora-64x64\nepochs: 7\nweight_decay: 0.25\n")
    config = resolve({"weight_decay": 0.125}, config_file=str(file))
    assert (config.epochs, config.weight_decay, config.lr) == (7, 0.125, card["lr"])


def test_another_dataset_keeps_the_recipe_but_not_the_cards_dataset_options() -> None:
    config = resolve({"model": "revgat-cora-16", "dataset": "citeseer"})
    assert config.dataset == "citeseer" and config.dataset_options == {}
    assert config.patience == 100 and config.lr == 0.01
    assert resolve({"model": "revgat-cora-16"}).dataset_options == {"self_loops": True}


def test_the_default_model_brings_no_recipe() -> None:
    """Naming no model keeps TrainConfig's defaults (the ogbn-proteins recipe) as they were."""
    resolved = resolve({"threads": 1}).to_dict()
    assert resolved == {**TrainConfig().to_dict(), "out": "unused", "threads": 1}
    assert resolve({"dataset": "cora"}).eval_parts == TrainConfig().eval_parts


def test_whole_graph_training_evaluates_on_the_whole_graph() -> None:
    assert resolve({"train_parts": 1}).eval_parts == 1
    assert resolve({"train_parts": 1, "eval_parts": 3}).eval_parts == 3
    assert resolve({"train_parts": 4}).eval_parts == TrainConfig().eval_parts
    # A card trained on 10 parts and evaluated on 3: trained here on the whole graph instead.
    assert card_recipe("revgnn-deep")["eval_parts"] == 3
    assert resolve({"model": "revgnn-deep"}).eval_parts == 3
    assert resolve({"model": "revgnn-deep", "train_parts": 1}).eval_parts == 1


def test_cli_prints_the_recipe_and_records_it(tmp_path: Path) -> None:
    """A card's recipe reaches the run (config.yaml) and is printed; --train-parts 1 alone
    evaluates on the whole graph."""
    out = tmp_path / "run"
    result = invoke(["train", "--model", "gcn-2", "--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=200",
                     "--epochs", "1", "--device", "cpu", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    # On another dataset than the card's (cora), the card's evaluation protocol stays with its dataset.
    assert "training recipe of model card 'gcn-2': lr=0.01, weight_decay=0.0005, train_parts=1 (" in result.output
    saved = yaml.safe_load((out / CONFIG_FILE).read_text())
    assert (saved["lr"], saved["weight_decay"], saved["epochs"], saved["eval_parts"]) == (0.01, 0.0005, 1, 1)
    out = tmp_path / "run2"
    result = invoke(["train", "--model", "wide", "--num-layers", "2", "--hidden", "8", "--train-parts", "1",
                     "--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=200", "--epochs", "1",
                     "--device", "cpu", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "eval_parts=1: trained on the whole graph" in result.output
    assert yaml.safe_load((out / CONFIG_FILE).read_text())["eval_parts"] == 1


def graph_with_edge_features(path: Path) -> Path:
    gen = torch.Generator().manual_seed(0)
    g = dgl.rand_graph(60, 300)
    g.ndata["feat"] = torch.randn(60, 5, generator=gen)
    g.edata["feat"] = torch.randn(300, 3, generator=gen)
    g.ndata["label"] = torch.randint(0, 3, (60,), generator=gen)
    split = torch.arange(60) % 3
    g.ndata["train_mask"], g.ndata["val_mask"], g.ndata["test_mask"] = split == 0, split == 1, split == 2
    dgl.save_graphs(str(path), [g])
    return path


@pytest.mark.parametrize("opt_out", [["--set", "edge_feats=0"], ["--dataset-option", "edge_feats=false"]])
def test_edge_feature_opt_out_trains_a_graphconv_model(tmp_path: Path, opt_out: List[str]) -> None:
    graph = graph_with_edge_features(tmp_path / "g.bin")
    args = ["train", "--model", "revgnn-cora-64", "--num-layers", "2", "--hidden", "8", "--dataset", str(graph),
            "--epochs", "2", "--device", "cpu"]  # fmt: skip
    refused = invoke([*args, "--out", str(tmp_path / "refused")])
    assert refused.exit_code != 0 and "cannot use edge features" in refused.output
    assert "--set edge_feats=0" in refused.output and "--dataset-option edge_feats=false" in refused.output
    out = tmp_path / "run"
    result = invoke([*args, *opt_out, "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / CONFIG_FILE).read_text())
    assert saved["dataset_options"] == {"edge_feats": False} and "edge_feats" not in saved["model_args"]
    assert (out / "summary.json").exists()
    # The run evaluates again with its own options (edge features still ignored).
    again = invoke(["evaluate", "--run", str(out), "--device", "cpu", "--json"])
    assert again.exit_code == 0, again.output


def test_edge_feats_may_only_be_set_to_zero() -> None:
    with pytest.raises(ConfigError, match="only edge_feats=0"):
        resolve({"model_args": {"edge_feats": 4}})
    assert resolve({"model_args": {"edge_feats": 0, "conv": "gcn"}}).model_args == {"conv": "gcn"}


def test_the_evaluation_protocol_stays_with_the_cards_dataset() -> None:
    from revgnn_dgl.train.settings import card_recipe

    own = card_recipe("wide")  # on ogbn-proteins: the release's 3 parts x 10 views
    assert (own["eval_parts"], own["eval_views"], own["dataset"]) == (3, 10, "ogbn-proteins")
    other = card_recipe("wide", dataset="synthetic-proteins")
    assert "eval_parts" not in other and "eval_views" not in other and "dataset" not in other
    assert other["train_parts"] == 10  # the optimisation recipe carries over
