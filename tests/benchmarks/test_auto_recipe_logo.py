"""benchmarks/auto_recipe_logo.py's fit of the degree threshold with the table, on made-up graphs."""

from __future__ import annotations

import math

import pytest
from auto_recipe_logo import cell_at, fit_threshold

from revgnn_dgl.train.auto_recipe import GraphStats


def graph(degree: float) -> GraphStats:
    """A sparse homophilous graph without edge features: only its mean degree varies."""
    return GraphStats(num_nodes=100, num_edges=int(100 * degree), feature_dim=500, zero_share=0.97, binary=True,
                      feature_scale=0.1, feature_offset=0.2, label_kind="multiclass", num_outputs=5, edge_feats=0,
                      mean_degree=degree, isolated_share=0.0, train_edges=200, train_homophily=0.8,
                      chance_homophily=0.2)  # fmt: skip


#: Two low-degree graphs that prefer ``citation``, two high-degree graphs that prefer ``copurchase``.
STATS = {"a": graph(3.0), "b": graph(4.0), "c": graph(9.0), "d": graph(30.0)}
SCORES = {
    "a": {"citation": 0.8, "copurchase": 0.7},
    "b": {"citation": 0.9, "copurchase": 0.8},
    "c": {"citation": 0.85, "copurchase": 0.9},
    "d": {"citation": 0.6, "copurchase": 0.9},
}


def test_the_threshold_splits_the_graphs_where_the_preferred_recipe_changes():
    threshold, table = fit_threshold(list(STATS), STATS, SCORES)
    assert threshold == pytest.approx(math.sqrt(4.0 * 9.0))  # the geometric midpoint of 4 and 9
    assert table == {
        "no-edge-features/sparse/homophilous/low-degree": "citation",
        "no-edge-features/sparse/homophilous/high-degree": "copurchase",
    }
    assert cell_at(STATS["c"], threshold)["degree"] == "high-degree"


def test_a_held_out_graph_in_the_widest_gap_falls_on_the_side_of_its_midpoint():
    # Without c, the split between b (4) and d (30) is the one that fits the others, at
    # sqrt(120) ~ 11: c (9) is then low-degree and gets citation, the leave-one-graph-out miss
    # the docs report for Coauthor CS (no graph but itself between the citation graphs and 27).
    threshold, table = fit_threshold(["a", "b", "d"], STATS, SCORES)
    assert threshold == pytest.approx(math.sqrt(4.0 * 30.0))
    assert cell_at(STATS["c"], threshold)["degree"] == "low-degree"


def test_a_graph_with_one_candidate_measured_does_not_move_the_threshold():
    scores = {**SCORES, "e": {"citation": None, "copurchase": 0.5}}
    stats = {**STATS, "e": graph(5.0)}
    threshold, _ = fit_threshold(list(stats), stats, scores)
    assert threshold == pytest.approx(6.0)  # sqrt(4 * 9): e's degree bounds no candidate
