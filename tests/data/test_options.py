"""Typed dataset options: strings from the command line converted, bad values refused."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional, Union

import pytest

from revgnn_dgl.data import DatasetError, load_dataset
from revgnn_dgl.data.options import coerce_options, option_types


def _message(name: str, **options) -> str:
    with pytest.raises(DatasetError) as err:
        load_dataset(name, **options)
    return str(err.value)


def test_non_integer_string_is_refused_in_cli_words():
    assert _message("synthetic-proteins", num_nodes="abc") == "dataset option num_nodes must be an integer, got 'abc'"


@pytest.mark.parametrize(
    "option, value, wanted",
    [
        ("num_nodes", "12.5", "an integer"),
        ("num_nodes", True, "an integer"),
        ("num_nodes", 3.5, "an integer"),
        ("avg_degree", "many", "a number"),
        ("avg_degree", [1, 2], "a number"),
    ],
)
def test_wrong_types_refused(option, value, wanted):
    assert _message("synthetic-proteins", **{option: value}) == (
        f"dataset option {option} must be {wanted}, got {value!r}"
    )


def test_bool_option_refused(tmp_path):
    assert _message("humloc", root=tmp_path, keep_self_loops="maybe") == (
        "dataset option keep_self_loops must be true or false, got 'maybe'"
    )


def test_strings_converted_to_the_loaders_types():
    by_strings = load_dataset(
        "synthetic-proteins", seed="3", num_nodes="300", avg_degree="6", homophily="0.5", hops="1"
    )
    by_values = load_dataset("synthetic-proteins", seed=3, num_nodes=300, avg_degree=6.0, homophily=0.5, hops=1)
    assert by_strings.graph.num_nodes() == 300
    assert by_strings.graph.num_edges() == by_values.graph.num_edges()
    assert (by_strings.labels == by_values.labels).all()


def test_integer_valued_float_accepted_for_int():
    assert load_dataset("synthetic-proteins", num_nodes=200.0, avg_degree="4").graph.num_nodes() == 200


def _loader(
    count: int = 1,
    rate: float = 0.5,
    flag: bool = False,
    root: Optional[Union[str, Path]] = None,
    limit: int | None = None,
    untyped=3,
    free: "SomeUnknownType" = None,  # noqa: F821
):
    pass


def test_option_types_read_string_and_typing_annotations():
    types = option_types(_loader)
    assert types["count"] == (int,) and types["rate"] == (float,) and types["flag"] == (bool,)
    assert types["limit"] == (int, type(None))
    assert set(types["root"]) == {str, Path, type(None)}
    assert types["untyped"] == (int,)  # from the default
    assert types["free"] == ()  # not understood: passed on unchecked
    assert "count" not in option_types(functools.partial(_loader, 5))  # bound by the partial


def test_option_types_read_evaluated_annotations():
    namespace: dict = {}
    exec(  # no postponed evaluation here: the annotations are type objects
        "import typing\n"
        "def loader(a: int = 1, b: typing.Optional[float] = None, c: typing.Union[str, int] = 'x'): pass\n",
        namespace,
    )
    types = option_types(namespace["loader"])
    assert types == {"a": (int,), "b": (float, type(None)), "c": (str, int)}
    assert coerce_options("toy", namespace["loader"], {"a": "7", "b": "2.5"}) == {"a": 7, "b": 2.5}


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"flag": "yes"}, {"flag": True}),
        ({"flag": "Off"}, {"flag": False}),
        ({"flag": 1}, {"flag": True}),
        ({"rate": "1e-3"}, {"rate": 0.001}),
        ({"rate": 2}, {"rate": 2.0}),
        ({"count": " 42 "}, {"count": 42}),
        ({"count": "1e3"}, {"count": 1000}),
        ({"limit": "none"}, {"limit": None}),
        ({"limit": None}, {"limit": None}),
        ({"root": 2024}, {"root": "2024"}),
        ({"free": object}, {"free": object}),
    ],
)
def test_coerce_converts(options, expected):
    result = coerce_options("toy", _loader, options)
    assert result == expected and all(type(result[k]) is type(v) for k, v in expected.items())


@pytest.mark.parametrize(
    "options, message",
    [
        ({"count": None}, "dataset option count must be an integer, got None"),
        ({"limit": "x"}, "dataset option limit must be an integer or none, got 'x'"),
        ({"flag": 2}, "dataset option flag must be true or false, got 2"),
        ({"root": True}, "dataset option root must be a string or none, got True"),
        (
            {"nope": 1},
            "dataset 'toy' does not take option(s) nope; it takes: count, rate, flag, root, limit, untyped, free",
        ),
    ],
)
def test_coerce_refuses(options, message):
    with pytest.raises(DatasetError) as err:
        coerce_options("toy", _loader, options)
    assert str(err.value) == message


def test_gnn_benchmark_split_seed_typed(tmp_path):
    assert _message("amazon-photo", root=tmp_path, split_seed="first") == (
        "dataset option split_seed must be an integer, got 'first'"
    )
