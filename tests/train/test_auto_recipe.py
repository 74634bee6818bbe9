"""``--recipe auto`` (issue 39): measured statistics, the table's choices, the printed reasons."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from revgnn_dgl.cli import cli

from revgnn_dgl.data import load_dataset
from revgnn_dgl.data.families import FAMILIES, make_family_graph
from revgnn_dgl.train.auto_recipe import (
    AUTO_TABLE,
    CELL_KEYS,
    HETEROPHILY,
    RECIPE_BY_CELL,
    RECIPES,
    cell_of,
    choose,
    measure,
    recipe_for_cell,
)


@pytest.fixture
def run_cli():
    return lambda args: CliRunner().invoke(cli, args, catch_exceptions=True)


@pytest.fixture(scope="module")
def stats():
    return {name: measure(make_family_graph(name, num_nodes=600)) for name in FAMILIES}


def test_measured_statistics_are_the_generators(stats):
    protein, citation = stats["protein"], stats["citation"]
    assert protein.feature_kind == "dense" and protein.label_kind == "multilabel" and protein.num_outputs == 15
    assert protein.feature_dim == 32 and protein.edge_feats == 0
    assert 0.5 < protein.isolated_share < 0.66  # the preset's 58 %
    assert 2.0 < protein.feature_scale < 4.0  # the preset's scale 3
    assert citation.feature_kind == "sparse" and citation.binary and citation.label_kind == "multiclass"
    assert stats["protein-edges"].edge_feats == 19
    assert stats["heterophilous"].excess_homophily < HETEROPHILY < citation.excess_homophily
    assert stats["copurchase"].mean_degree >= 10 > citation.mean_degree


def test_homophily_reads_the_training_labels_only():
    ds = make_family_graph("citation", num_nodes=600)
    before = measure(ds)
    held_out = torch.cat([ds.val_idx, ds.test_idx])
    ds.labels[held_out] = (ds.labels[held_out] + 1) % 6  # scramble every label outside the training split
    assert measure(ds).train_homophily == before.train_homophily


@pytest.mark.parametrize("family", list(FAMILIES))
def test_choices_are_the_tables_and_reasons_name_the_statistics(stats, family):
    st = stats[family]
    choice = choose(st)
    key = "/".join(cell_of(st)[k] for k in CELL_KEYS)
    assert choice.recipe == recipe_for_cell(cell_of(st))[0]
    recipe = RECIPES[choice.recipe]
    assert choice.settings["model"] == recipe["model"]
    for k, v in recipe["train"].items():
        assert choice.settings[k] == v
    lines = choice.lines()
    assert all(line.startswith("auto: ") for line in lines)
    text = "\n".join(lines)
    assert f"recipe {choice.recipe!r}" in text and key in text
    assert f"dimension {st.feature_dim}" in text and f"{st.isolated_share:.0%} isolated" in text
    assert f"mean degree {st.mean_degree:.1f}" in text
    args = choice.settings["model_args"]
    if st.feature_kind == "dense" and args.get("norm") == "none":
        assert args["input_norm"] == "standardize"
        assert "standardised" in text and f"channel std {st.feature_scale:.3g}" in text
    else:
        assert "input_norm" not in args and "input normalisation none" in text
    if args.get("conv") == "gcnii":
        assert args["gcnii_step"] == pytest.approx(6.4 / 16)
        alpha = 0.5 if st.excess_homophily is not None and st.excess_homophily < HETEROPHILY else 0.1
        assert args["gcnii_alpha"] == alpha
        assert f"{st.train_homophily:.3f}" in text


def test_the_generated_families_land_in_their_cells(stats):
    assert choose(stats["protein"]).recipe == "dense"
    assert choose(stats["protein-edges"]).recipe == "proteins"
    assert choose(stats["citation"]).recipe == "citation"
    assert choose(stats["copurchase"]).recipe == "copurchase"
    hetero = choose(stats["heterophilous"])
    assert hetero.settings["model_args"]["gcnii_alpha"] == 0.5 and "heterophilous" in "\n".join(hetero.lines())


def test_table_rows_end_with_a_default_and_cells_name_known_recipes():
    for rows in AUTO_TABLE.values():
        assert rows[-1][0] == ()
    assert set(RECIPE_BY_CELL.values()) <= set(RECIPES)
    # A cell never fitted takes the nearest fitted cell's recipe, edge features first.
    cell = {"edges": "edge-features", "features": "sparse", "homophily": "heterophilous", "degree": "high-degree"}
    name, where = recipe_for_cell(cell)
    assert name == "proteins" and "nearest" in where


def test_depth_sets_the_gcnii_step(stats):
    assert choose(stats["citation"], depth=64).settings["model_args"]["gcnii_step"] == pytest.approx(0.1)


def test_train_defaults_to_auto_on_a_graph_without_a_card(tmp_path, run_cli):
    out = tmp_path / "run"
    result = run_cli(["train", "--dataset", "synthetic-family", "--dataset-option", "family=protein",
                      "--dataset-option", "num_nodes=120", "--num-layers", "4", "--epochs", "2", "--threads", "1",
                      "--device", "cpu", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "auto: recipe 'dense'" in result.output and "input normalisation standardize" in result.output
    config = (out / "config.yaml").read_text()
    assert "input_norm: standardize" in config and "model: revgnn-cora-64" in config
    assert "gcnii_step: 1.6" in config  # 6.4 / the given depth
    assert json.loads((out / "summary.json").read_text())["runs"]


def test_recipe_card_keeps_the_old_default(tmp_path, run_cli):
    result = run_cli(["train", "--recipe", "auto", "--model", "gcn-2", "--dataset", "synthetic-family",
                      "--epochs", "1", "--out", str(tmp_path / "r")])  # fmt: skip
    assert result.exit_code != 0 and "drop --model" in result.output
    assert not (tmp_path / "r").exists()


def test_named_dataset_with_a_card_keeps_the_card_default():
    from revgnn_dgl.train.settings import default_recipe

    assert default_recipe({"dataset": "cora"}, None, None) == "card"
    assert default_recipe({"dataset": "synthetic-family"}, None, None) == "auto"
    assert default_recipe({"dataset": "synthetic-family", "model": "gcn-2"}, None, None) == "card"


def test_family_options_override_the_preset():
    ds = load_dataset("synthetic-family", family="protein", num_nodes=300, isolated=0.001, feature_scale=0.5)
    st = measure(ds)
    assert st.isolated_share < 0.05 and 0.3 < st.feature_scale < 0.7
