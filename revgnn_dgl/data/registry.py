"""``load_dataset``: one entry point for every dataset the package reads.

The loaders are registered here; the static facts about each dataset (size,
task, files, source) are in :mod:`revgnn_dgl.data.catalog`, which can be read
without importing DGL.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

from ..errors import DatasetError
from .base import NodeDataset
from .families import make_family_graph
from .gnn_benchmark import load_gnn_benchmark
from .graph_file import load_graph_file
from .humloc import load_humloc
from .ogb_proteins import load_ogbn_proteins
from .ogbn_arxiv import load_ogbn_arxiv
from .options import coerce_options
from .paths import is_graph_file_path
from .planetoid import load_planetoid
from .synthetic import make_synthetic_proteins

#: name -> loader; its keyword parameters are the options it accepts.
LOADERS: dict[str, Callable[..., NodeDataset]] = {
    "synthetic-proteins": make_synthetic_proteins,
    "synthetic-family": make_family_graph,
    "ogbn-proteins": load_ogbn_proteins,
    "ogbn-arxiv": load_ogbn_arxiv,
    "cora": functools.partial(load_planetoid, "cora"),
    "citeseer": functools.partial(load_planetoid, "citeseer"),
    "humloc": load_humloc,
    "amazon-computers": functools.partial(load_gnn_benchmark, "amazon-computers"),
    "amazon-photo": functools.partial(load_gnn_benchmark, "amazon-photo"),
    "coauthor-cs": functools.partial(load_gnn_benchmark, "coauthor-cs"),
    "coauthor-physics": functools.partial(load_gnn_benchmark, "coauthor-physics"),
}


#: Endings that make a dataset name a graph file path.
def dataset_names() -> list[str]:
    """Names :func:`load_dataset` accepts besides DGL graph file paths."""
    return list(LOADERS)


def _common_options(edge_feats: bool = True) -> None:
    """The options every dataset takes (their types, for :func:`coerce_options`)."""


def load_dataset(name: str, root: str | Path | None = None, **options: Any) -> NodeDataset:
    """Load a dataset by name, or from a DGL graph file.

    Parameters
    ----------
    name : str
        ``'synthetic-proteins'`` (generated offline; options ``seed``,
        ``num_nodes``, ``avg_degree``, ...), ``'synthetic-family'`` (generated
        graph families that differ in feature kind, label kind, homophily and
        isolated nodes; option ``family`` and the statistics, see
        :mod:`revgnn_dgl.data.families`), ``'ogbn-proteins'`` (through
        OGB; option ``download``), ``'ogbn-arxiv'`` (through OGB, with the
        released RevGAT preprocessing; options ``download``, off by default,
        and ``self_loops``), ``'cora'``, ``'citeseer'`` (``self_loops``), ``'humloc'``
        (``keep_self_loops``), ``'amazon-computers'``, ``'amazon-photo'``,
        ``'coauthor-cs'``, ``'coauthor-physics'`` (``split_seed``,
        ``train_per_class``, ``val_per_class``, ``self_loops``), or the path of a file
        written by ``dgl.save_graphs`` (see :func:`is_graph_file_path`). Every
        dataset also takes ``edge_feats`` (default true): false drops the
        graph's edge features (``edata['feat']``), so that a model without
        edge inputs (GraphConv, SAGE, GCNII blocks) trains on a graph that has
        them (``--dataset-option edge_feats=false``).
    root : str or Path, optional
        The data root: the folder that holds the dataset folders (``cora/``,
        ``humloc/``, ``ogbn_proteins/``, ...), or the dataset's own folder.
        Default: ``$REVGNN_DGL_DATA``, else ``../shared/data`` next to the
        project (ogbn-proteins: ``~/.cache/revgnn_dgl/datasets``); see
        :mod:`revgnn_dgl.data.paths`. Not accepted by synthetic-proteins or
        files.
    **options
        Loader-specific keyword options. Values are checked against the
        loader's parameter types, and strings converted (``'500'`` -> 500,
        ``'true'`` -> True), as the command line passes text; see
        :func:`revgnn_dgl.data.options.coerce_options`.

    Returns
    -------
    NodeDataset

    Raises
    ------
    DatasetError
        For an unknown name, a graph file path that does not exist
        (``file not found: PATH``), an option the loader does not take or of
        the wrong type, or any problem with the data.
    """
    if name in LOADERS:
        loader = LOADERS[name]
    elif is_graph_file_path(name):
        loader = functools.partial(load_graph_file, name)
    else:
        raise DatasetError(
            f"unknown dataset {name!r}: valid names are {', '.join(LOADERS)}, "
            "or the path of a DGL graph file (ending in .bin or .dgl)"
        )
    if root is not None:
        options["root"] = root
    common = coerce_options(name, _common_options, {k: options.pop(k) for k in ("edge_feats",) if k in options})
    dataset = loader(**coerce_options(name, loader, options))
    if not common.get("edge_feats", True):
        dataset.graph.edata.pop("feat", None)
    return dataset
