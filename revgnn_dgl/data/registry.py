"""``load_dataset``: one entry point for every dataset the package reads."""
from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any, Callable

from .base import DatasetError, NodeDataset
from .graph_file import load_graph_file
from .humloc import load_humloc
from .ogb_proteins import load_ogbn_proteins
from .ogbn_arxiv import load_ogbn_arxiv
from .planetoid import load_planetoid
from .synthetic import make_synthetic_proteins

#: name -> loader; its keyword parameters are the options it accepts.
LOADERS: dict[str, Callable[..., NodeDataset]] = {
    "synthetic-proteins": make_synthetic_proteins,
    "ogbn-proteins": load_ogbn_proteins,
    "ogbn-arxiv": load_ogbn_arxiv,
    "cora": functools.partial(load_planetoid, "cora"),
    "citeseer": functools.partial(load_planetoid, "citeseer"),
    "humloc": load_humloc,
}


def dataset_names() -> list[str]:
    """Names :func:`load_dataset` accepts besides DGL graph file paths."""
    return list(LOADERS)


def load_dataset(name: str, root: str | Path | None = None, **options: Any) -> NodeDataset:
    """Load a dataset by name, or from a DGL graph file.

    Parameters
    ----------
    name : str
        ``'synthetic-proteins'`` (generated offline; options ``seed``,
        ``num_nodes``, ``avg_degree``, ...), ``'ogbn-proteins'`` (through
        OGB; option ``download``), ``'ogbn-arxiv'`` (through OGB, with the
        released RevGAT preprocessing; options ``download``, off by default,
        and ``self_loops``), ``'cora'``, ``'citeseer'``, ``'humloc'``
        (``keep_self_loops``), or the path of a file written by
        ``dgl.save_graphs`` (a path ending in ``.bin``, or any existing file).
    root : str or Path, optional
        Where the data lives: the data folder for cora/citeseer/humloc, OGB's
        root for ogbn-proteins and ogbn-arxiv. Not accepted by synthetic-proteins or files.
    **options
        Loader-specific keyword options.

    Returns
    -------
    NodeDataset

    Raises
    ------
    DatasetError
        For an unknown name, an option the loader does not take, or any
        problem with the data.
    """
    if name in LOADERS:
        loader = LOADERS[name]
    elif name.endswith(".bin") or Path(name).exists():
        loader = functools.partial(load_graph_file, name)
    else:
        raise DatasetError(
            f"unknown dataset {name!r}: valid names are {', '.join(LOADERS)}, "
            "or the path of a DGL graph file (ending in .bin)"
        )
    if root is not None:
        options["root"] = root
    accepted = [p.name for p in inspect.signature(loader).parameters.values() if p.default is not p.empty]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatasetError(
            f"dataset {name!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(accepted) or 'none'}"
        )
    return loader(**options)
