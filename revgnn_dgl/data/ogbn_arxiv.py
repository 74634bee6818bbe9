"""ogbn-arxiv through OGB's own ``DglNodePropPredDataset``, preprocessed as the released RevGAT.

OGB stores the citation graph with one direction per edge; the released RevGAT code makes it
bidirected (one edge each way per linked pair, duplicates merged) and replaces any self-loops
by exactly one per node. The result for the real data: 169,343 nodes, 2,484,941 edges
(2,315,598 + 169,343 self-loops), 128 features, 40 classes, OGB's time split
90,941 / 29,799 / 48,603.

As for ogbn-proteins, OGB must never block on ``input()`` (CI has no stdin): a dataset folder
without its ``RELEASE_v<version>.txt`` is answered with a :class:`DatasetError`, and the zip
(0.08 GB) is below OGB's 1 GB confirmation threshold. Like ogbn-proteins, it is downloaded
when absent unless ``download=False`` (``--dataset-option download=false``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import dgl
import pandas as pd

from .base import DatasetError, NodeDataset, as_index
from .ogb_common import (
    DOWNLOAD_TIMEOUT_S,
    missing_ogb_message,
    network_timeout,
    ogb_dataset_folder,
    ogb_meta,
    read_ogb_split,
)
from .paths import ogb_root

OGB_NAME = "ogbn-arxiv"


def load_ogbn_arxiv(root: str | Path | None = None, download: bool = True, self_loops: bool = True) -> NodeDataset:
    """Load ogbn-arxiv with the released RevGAT preprocessing.

    Parameters
    ----------
    root : str or Path, optional
        Folder OGB stores the dataset in (it uses ``<root>/ogbn_arxiv``).
        Default: ``~/.cache/revgnn_dgl/datasets``.
    download : bool
        Let OGB download the data when it is not under ``root`` (the default, as for
        ogbn-proteins). With False a missing dataset raises at once, without touching the network.
    self_loops : bool
        Give every node exactly one self-loop (the released preprocessing); False removes them.

    Returns
    -------
    NodeDataset
        The bidirected graph; ``ndata['feat']`` (N, 128) float32, ``ndata['year']`` (N, 1)
        int64 publication years; int64 class ids (N,); OGB's time split; task ``'multiclass'``
        (metric: accuracy).

    Raises
    ------
    DatasetError
        When the data is absent and may not or cannot be downloaded, or is damaged.
    """
    from ogb.nodeproppred import DglNodePropPredDataset

    root = ogb_root("ogbn_arxiv", root)
    folder = ogb_dataset_folder(root, OGB_NAME)
    version = str(ogb_meta(OGB_NAME)["version"])
    have_data = (folder / "raw" / "edge.csv.gz").is_file() or (folder / "processed" / "dgl_data_processed").is_file()
    if folder.is_dir() and not (folder / f"RELEASE_v{version}.txt").is_file():
        raise DatasetError(
            f"{folder} exists but lacks RELEASE_v{version}.txt: it is an outdated or incomplete copy of "
            "ogbn-arxiv (OGB would stop to ask what to do). Delete the folder to download afresh, or "
            "replace it with the unzipped arxiv.zip"
        )
    if not have_data and not download:
        raise DatasetError(_missing_message(root, "the option download=false turns downloads off"))
    try:
        with network_timeout(DOWNLOAD_TIMEOUT_S):
            ogb_data = DglNodePropPredDataset(name=OGB_NAME, root=str(root))
        split = read_ogb_split(folder, OGB_NAME)
        graph, labels = ogb_data[0]
    except (OSError, RuntimeError, KeyError, zipfile.BadZipFile, pd.errors.ParserError, dgl.DGLError) as err:
        if have_data:
            raise DatasetError(
                f"ogbn-arxiv under {folder} is damaged ({type(err).__name__}: {err}). "
                "Delete the folder and load again to download it afresh"
            ) from err
        raise DatasetError(_missing_message(root, f"the download failed: {type(err).__name__}: {err}")) from err

    return NodeDataset(
        name=OGB_NAME,
        graph=preprocess_arxiv_graph(graph, self_loops=self_loops),
        labels=labels.reshape(-1).long(),
        train_idx=as_index(split["train"]),
        val_idx=as_index(split["valid"]),
        test_idx=as_index(split["test"]),
        task="multiclass",
    )


def preprocess_arxiv_graph(graph: dgl.DGLGraph, self_loops: bool = True) -> dgl.DGLGraph:
    """The released preprocessing: bidirected simple graph, then one self-loop per node.

    Node data is kept; ``feat`` becomes float32.

    Examples
    --------
    >>> import dgl, torch
    >>> g = dgl.graph(([0, 1, 1, 2], [1, 0, 2, 2]), num_nodes=3)
    >>> g.ndata["feat"] = torch.zeros(3, 2)
    >>> out = preprocess_arxiv_graph(g)
    >>> sorted(zip(*(t.tolist() for t in out.edges())))
    [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2)]
    """
    graph = dgl.to_bidirected(graph, copy_ndata=True)
    graph = dgl.remove_self_loop(graph)
    if self_loops:
        graph = dgl.add_self_loop(graph)
    graph.ndata["feat"] = graph.ndata["feat"].float()
    return graph


def _missing_message(root: Path, reason: str) -> str:
    return missing_ogb_message(OGB_NAME, root, reason)
