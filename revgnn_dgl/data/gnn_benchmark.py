"""Amazon Computers/Photo and Coauthor CS/Physics (Shchur et al., 2018).

The four co-purchase and co-authorship graphs of "Pitfalls of Graph Neural
Network Evaluation" (Shchur, Mumme, Bojchevski and Günnemann, 2018; data
from github.com/shchur/gnn-benchmark, MIT), each a zip holding one ``.npz``
of CSR matrices, read without extracting and without unpickling
(``allow_pickle=False``: the Coauthor files' ``class_names`` is a pickled
object array, and is not read).

Processing, as for the other loaders and as DGL and PyG do for these
graphs: the adjacency, stored one way, is symmetrised and de-duplicated and
self-loops are dropped (the files hold none; ``self_loops=True`` adds one
per node, for RevGAT's attention layers); the whole graph is kept (no
largest-connected-component cut); node features are the stored attributes,
as float32, not normalised (binary bag-of-words for Amazon, keyword counts
for Coauthor).

There is no fixed split. :func:`per_class_split` draws Shchur et al.'s
random one: 20 nodes per class for training, 30 per class for validation,
the rest for testing, fixed by ``split_seed``.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import dgl
import numpy as np
import scipy.sparse as sp
import torch

from ..errors import DatasetError, DatasetWarning
from .base import NodeDataset, as_index, undirected_edges
from .paths import dataset_folder, root_hint

#: Dataset name -> folder under the data root (the zip inside is ``<name>.zip``).
GNN_BENCHMARK_FOLDERS = {
    "amazon-computers": "amazon_computers",
    "amazon-photo": "amazon_photo",
    "coauthor-cs": "coauthor_cs",
    "coauthor-physics": "coauthor_physics",
}
_ARRAYS = (
    "adj_data",
    "adj_indices",
    "adj_indptr",
    "adj_shape",
    "attr_data",
    "attr_indices",
    "attr_indptr",
    "attr_shape",
    "labels",
)
TRAIN_PER_CLASS = 20
VAL_PER_CLASS = 30


def load_gnn_benchmark(
    name: str,
    root: str | Path | None = None,
    split_seed: int = 0,
    train_per_class: int = TRAIN_PER_CLASS,
    val_per_class: int = VAL_PER_CLASS,
    self_loops: bool = False,
) -> NodeDataset:
    """Load ``amazon-computers``, ``amazon-photo``, ``coauthor-cs`` or ``coauthor-physics``.

    Parameters
    ----------
    name : str
        One of :data:`GNN_BENCHMARK_FOLDERS`.
    root : str or Path, optional
        The data root, holding ``<folder>/<name>.zip`` (e.g.
        ``amazon_computers/amazon-computers.zip``), or that folder itself.
        Default: ``$REVGNN_DGL_DATA``, else ``../shared/data`` next to the
        project (see :mod:`revgnn_dgl.data.paths`).
    split_seed : int
        Seed of the random split; the same seed gives the same split.
    train_per_class, val_per_class : int
        Nodes drawn per class for training and validation (Shchur et al.:
        20 and 30); the other nodes are the test set.
    self_loops : bool
        Add one self-loop per node to the symmetric graph.

    Returns
    -------
    NodeDataset
        Multiclass dataset: the symmetric graph (without self-loops unless ``self_loops``),
        ``ndata['feat']`` the float32 node attributes, the split of
        :func:`per_class_split`.

    Raises
    ------
    DatasetError
        When the zip is missing or is not a readable gnn-benchmark ``.npz``.
    """
    if name not in GNN_BENCHMARK_FOLDERS:
        raise DatasetError(
            f"unknown gnn-benchmark dataset {name!r}: valid names are {', '.join(GNN_BENCHMARK_FOLDERS)}"
        )
    folder_name = GNN_BENCHMARK_FOLDERS[name]
    zip_name = f"{name}.zip"
    folder = dataset_folder(folder_name, root, files=(zip_name,))
    path = folder / zip_name
    if not path.is_file():
        raise DatasetError(
            f"{name}: {zip_name} not found in {folder}. Put the zip of Shchur et al.'s .npz "
            f"(github.com/shchur/gnn-benchmark) there, or {root_hint(folder_name)}"
        )
    arrays = read_npz_from_zip(path, _ARRAYS, name)

    num_nodes = int(arrays["adj_shape"][0])
    if tuple(arrays["adj_shape"]) != (num_nodes, num_nodes):
        raise DatasetError(f"{name}: the adjacency in {path} is not square: shape {tuple(arrays['adj_shape'])}")
    try:
        adjacency = sp.csr_matrix(
            (arrays["adj_data"], arrays["adj_indices"], arrays["adj_indptr"]), shape=(num_nodes, num_nodes)
        ).tocoo()
        attrs = sp.csr_matrix(
            (arrays["attr_data"], arrays["attr_indices"], arrays["attr_indptr"]),
            shape=tuple(int(v) for v in arrays["attr_shape"]),
        )
    except ValueError as err:
        raise DatasetError(f"{name}: {path} holds an inconsistent CSR matrix ({err})") from None
    labels = np.asarray(arrays["labels"])
    if attrs.shape[0] != num_nodes or labels.shape != (num_nodes,):
        raise DatasetError(
            f"{name}: {path} is inconsistent: {num_nodes} nodes in the adjacency, "
            f"{attrs.shape[0]} attribute rows, labels of shape {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{name}: labels in {path} must be integer class ids, got {labels.dtype}")

    src, dst, _ = undirected_edges(adjacency.row, adjacency.col, num_nodes)
    graph = dgl.graph((torch.from_numpy(src), torch.from_numpy(dst)), num_nodes=num_nodes)
    if self_loops:
        graph = dgl.add_self_loop(graph)
    graph.ndata["feat"] = torch.from_numpy(attrs.astype(np.float32).toarray())
    train, val, test = per_class_split(labels, train_per_class, val_per_class, split_seed, name)
    return NodeDataset(
        name=name,
        graph=graph,
        labels=torch.from_numpy(labels.astype(np.int64)),
        train_idx=as_index(train),
        val_idx=as_index(val),
        test_idx=as_index(test),
        task="multiclass",
    )


def read_npz_from_zip(path: Path, keys: tuple[str, ...], name: str) -> dict[str, np.ndarray]:
    """Arrays ``keys`` of the one ``.npz`` inside the zip ``path``, never unpickling.

    Raises
    ------
    DatasetError
        When ``path`` is not a zip holding exactly one ``.npz`` with those
        keys as plain (not pickled) arrays.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.endswith(".npz")]
            if len(members) != 1:
                raise DatasetError(
                    f"{name}: {path} must hold exactly one .npz file, it holds {len(members)}"
                    + (f" ({', '.join(members)})" if members else "")
                )
            raw = archive.read(members[0])
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DatasetError(f"{name}: {path}:{members[0]} lacks {', '.join(missing)}")
            return {k: npz[k] for k in keys}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        if isinstance(err, DatasetError):
            raise
        raise DatasetError(f"{name}: cannot read {path} as a zip of a .npz ({type(err).__name__}: {err})") from None


def per_class_split(
    labels: np.ndarray,
    train_per_class: int = TRAIN_PER_CLASS,
    val_per_class: int = VAL_PER_CLASS,
    seed: int = 0,
    name: str = "dataset",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Shchur et al.'s random split: a fixed number of nodes per class.

    For each class (in increasing order of id) its nodes are shuffled by one
    generator seeded with ``seed``; the first ``train_per_class`` go to
    training, the next ``val_per_class`` to validation, the rest to testing.

    A class with :math:`n \le t + v` nodes (:math:`t, v` the per-class
    counts) cannot fill both and leave a test node. It keeps the
    :math:`t : v` proportion on its :math:`m = n - 1` other nodes and one
    test node: :math:`\lceil m\,t / (t + v) \rceil` for training, the rest of
    :math:`m` for validation. (With 20 and 30: a class of 11 nodes gives
    4 / 6 / 1, one of 2 nodes gives 1 / 0 / 1.) A :class:`DatasetWarning`
    names such classes.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer class ids ``(N,)``.
    train_per_class, val_per_class : int
        Nodes per class for training and validation (at least 1 and 0).
    seed : int
        Seed of the shuffles.
    name : str
        Dataset name for the warning.

    Returns
    -------
    train, val, test : numpy.ndarray
        Sorted int64 node ids; they partition ``0..N-1``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.repeat([0, 1], 60)
    >>> train, val, test = per_class_split(labels, seed=0)
    >>> len(train), len(val), len(test), np.bincount(labels[train]).tolist()
    (40, 60, 20, [20, 20])
    """
    if train_per_class < 1 or val_per_class < 0:
        raise DatasetError(
            f"{name}: train_per_class must be >= 1 and val_per_class >= 0, got {train_per_class} and {val_per_class}"
        )
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    small = []
    for cls in np.unique(labels):
        nodes = rng.permutation(np.flatnonzero(labels == cls))
        n = len(nodes)
        if n > train_per_class + val_per_class:
            n_train, n_val = train_per_class, val_per_class
        else:
            small.append(f"{int(cls)} ({n} nodes)")
            m = n - 1
            n_train = -(-m * train_per_class // (train_per_class + val_per_class))
            n_val = m - n_train
        parts[0].append(nodes[:n_train])
        parts[1].append(nodes[n_train : n_train + n_val])
        parts[2].append(nodes[n_train + n_val :])
    if small:
        warnings.warn(
            f"{name}: class(es) {', '.join(small)} have at most {train_per_class + val_per_class} nodes, too few "
            f"for {train_per_class} training + {val_per_class} validation nodes and a test node; each was split in "
            f"the {train_per_class}:{val_per_class} proportion with one test node",
            DatasetWarning,
            stacklevel=2,
        )
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts)
    return train, val, test
