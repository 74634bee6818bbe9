"""Datasets stored as a DGL graph file (written by ``dgl.save_graphs``)."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import dgl
import torch

from ..errors import DatasetError, DatasetWarning
from .base import NodeDataset

_MASKS = {"train_idx": "train_mask", "val_idx": "val_mask", "test_idx": "test_mask"}
#: The node and edge data keys :func:`load_graph_file` reads; others are ignored with a warning.
NODE_KEYS = ("feat", "label", "train_mask", "val_mask", "test_mask", "species")
EDGE_KEYS = ("feat",)
#: First 8 bytes of every file ``dgl.save_graphs`` writes (its magic number, little-endian).
DGL_FILE_MAGIC = bytes.fromhex("3fa1b446f04f2edd")
# "[08:20:23] /src/graph_serialize.cc:128: " before the message of a DGL C++ error.
_DGL_LOG_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")


def load_graph_file(path: str | Path) -> NodeDataset:
    """Load a node-classification dataset from a DGL graph file.

    The file must hold exactly one homogeneous graph with

    * ``ndata['feat']``: node features ``(N, F)`` (cast to float32);
    * ``ndata['label']``: int class ids ``(N,)`` (multiclass) or a 0/1
      matrix ``(N, T)`` (multilabel);
    * ``ndata['train_mask']``, ``ndata['val_mask']``, ``ndata['test_mask']``:
      boolean (or 0/1) masks of length N, each selecting at least one node;
    * optionally ``edata['feat']`` ``(E, Fe)``, the edge features, and
      ``ndata['species']``, a one-hot ``(N, S)``.

    Any other node or edge data, and graph labels saved beside the graph, are
    ignored with a :class:`DatasetWarning` naming them. Edge features must be
    stored under ``edata['feat']`` to be used (not, e.g., ``edata['weight']``).
    The edges are used as stored (no symmetrisation).

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    NodeDataset
        Named after the file; the graph keeps only the features (labels and
        masks move to the dataset's fields).

    Raises
    ------
    DatasetError
        One line: ``file not found: PATH``, a directory given for the file, a
        file that is empty or not a DGL graph file, a missing or malformed key.

    Examples
    --------
    >>> import dgl, torch, tempfile, os
    >>> g = dgl.graph(([0, 1, 2], [1, 2, 0]))
    >>> g.ndata["feat"] = torch.eye(3)
    >>> g.ndata["label"] = torch.tensor([0, 1, 0])
    >>> for i, key in enumerate(("train_mask", "val_mask", "test_mask")):
    ...     g.ndata[key] = torch.arange(3) == i
    >>> path = os.path.join(tempfile.mkdtemp(), "toy.bin")
    >>> dgl.save_graphs(path, [g])
    >>> ds = load_graph_file(path)
    >>> ds.num_outputs, ds.train_idx.tolist(), ds.test_idx.tolist()
    (2, [0], [2])
    """
    path = Path(path)
    stored, graph_labels = _read_graph(path)
    n = stored.num_nodes()
    for key in ("feat", "label", *_MASKS.values()):
        if key not in stored.ndata:
            raise DatasetError(
                f"{path}: the graph has no ndata[{key!r}]; a dataset file needs ndata 'feat', "
                "'label', 'train_mask', 'val_mask' and 'test_mask'"
            )
    _warn_unused(path, stored, graph_labels)

    feat = stored.ndata["feat"]
    if feat.dim() != 2:
        raise DatasetError(f"{path}: ndata['feat'] must be a 2-D (N, F) tensor, got shape {tuple(feat.shape)}")
    labels, task = _labels(stored.ndata["label"], path)
    splits = {field: _mask_to_index(stored.ndata[key], key, n, path) for field, key in _MASKS.items()}
    for field, key in _MASKS.items():
        if splits[field].numel() == 0:
            raise DatasetError(f"{path}: ndata[{key!r}] selects no node; every split needs at least one node")

    src, dst = stored.edges()
    if src.numel() and (min(int(src.min()), int(dst.min())) < 0 or max(int(src.max()), int(dst.max())) >= n):
        raise DatasetError(f"{path} is damaged: its edges name nodes outside 0..{n - 1}")
    graph = dgl.graph((src, dst), num_nodes=n)
    _note_conversions(path, stored)
    graph.ndata["feat"] = feat.float()
    if "species" in stored.ndata:
        species = stored.ndata["species"]
        if species.dim() != 2:
            raise DatasetError(
                f"{path}: ndata['species'] must be a one-hot (N, S) tensor, got shape {tuple(species.shape)}"
            )
        graph.ndata["species"] = species.float()
    if "feat" in stored.edata:
        edge_feat = stored.edata["feat"]
        if edge_feat.dim() != 2:
            raise DatasetError(
                f"{path}: edata['feat'] must be a 2-D (E, Fe) tensor, got shape {tuple(edge_feat.shape)}"
            )
        graph.edata["feat"] = edge_feat.float()
    return NodeDataset(name=path.name, graph=graph, labels=labels, task=task, **splits)


def _note_conversions(path: Path, stored: dgl.DGLGraph) -> None:
    """One note naming the tensors read as another dtype than the format's (float features, bool
    masks): integer features become float32 and 0/1 masks bool, which is almost always what was
    meant, but the file did not say so."""
    converted = [f"ndata[{key!r}] {stored.ndata[key].dtype} -> float32" for key in ("feat", "species")
                 if key in stored.ndata and not stored.ndata[key].is_floating_point()]  # fmt: skip
    if "feat" in stored.edata and not stored.edata["feat"].is_floating_point():
        converted.append(f"edata['feat'] {stored.edata['feat'].dtype} -> float32")
    # dgl.save_graphs stores bool tensors as uint8: those are the format's masks.
    converted += [f"ndata[{key!r}] {stored.ndata[key].dtype} -> bool" for key in _MASKS.values()
                  if stored.ndata[key].dtype not in (torch.bool, torch.uint8)]  # fmt: skip
    if converted:
        warnings.warn(f"{path.name}: converted {', '.join(converted)} (the format's dtypes; save them so to "
                      "silence this note)", DatasetWarning, stacklevel=3)  # fmt: skip


def _read_graph(path: Path) -> tuple[dgl.DGLGraph, dict]:
    """The one graph in ``path`` and its graph labels, or a one-line :class:`DatasetError`."""
    if path.is_dir():
        raise DatasetError(
            f"{path} is a directory, not a DGL graph file: give the path of a file written by "
            "dgl.save_graphs(path, [graph])"
        )
    if not path.is_file():
        raise DatasetError(f"file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(len(DGL_FILE_MAGIC))
    if not head:
        raise DatasetError(
            f"{path} is an empty file, not a DGL graph file: write one with dgl.save_graphs(path, [graph])"
        )
    if head != DGL_FILE_MAGIC:
        raise DatasetError(
            f"{path} is not a DGL graph file (it lacks DGL's file signature): write one with "
            "dgl.save_graphs(path, [graph])"
        )
    _probe_in_child(path)
    try:
        graphs, graph_labels = dgl.load_graphs(str(path))
    except Exception as err:  # DGL raises assorted errors, with a C++ backtrace, on damaged files
        raise DatasetError(
            f"{path} is a damaged or truncated DGL graph file (dgl.load_graphs: {dgl_error_line(err)}); "
            "write it again with dgl.save_graphs(path, [graph])"
        ) from None
    if len(graphs) != 1:
        raise DatasetError(f"{path} holds {len(graphs)} graphs; save exactly one graph per file")
    if not graphs[0].is_homogeneous:
        raise DatasetError(f"{path} holds a heterogeneous graph; only homogeneous graphs are supported")
    return graphs[0], graph_labels


def dgl_error_line(err: BaseException) -> str:
    """The first line of a DGL error, without its log prefix and C++ backtrace.

    >>> dgl_error_line(RuntimeError("[08:20:23] /src/a.cc:12: Check failed: x\\nStack trace:\\n  [bt] (0) ..."))
    'Check failed: x'
    """
    text = str(err).split("Stack trace:", 1)[0].strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return _DGL_LOG_PREFIX.sub("", line).strip() or type(err).__name__


def _warn_unused(path: Path, stored: dgl.DGLGraph, graph_labels: dict) -> None:
    """Warn, once, about node/edge data and graph labels the loader does not read."""
    node = sorted(k for k in stored.ndata if k not in NODE_KEYS)
    edge = sorted(k for k in stored.edata if k not in EDGE_KEYS)
    if not (node or edge or graph_labels):
        return
    ignored = []
    if node:
        ignored.append("ndata " + ", ".join(map(repr, node)))
    if edge:
        ignored.append("edata " + ", ".join(map(repr, edge)))
    if graph_labels:
        ignored.append("graph labels " + ", ".join(map(repr, sorted(graph_labels))))
    message = (
        f"{path}: ignoring {'; '.join(ignored)}. The loader reads ndata "
        f"{', '.join(map(repr, NODE_KEYS))} and edata 'feat'"
    )
    if edge and "feat" not in stored.edata:
        message += (
            f"; edge features are read only from edata['feat']: to use {', '.join(map(repr, edge))} "
            "as edge features, store them as edata['feat'] (an (E, Fe) tensor)"
        )
    warnings.warn(message, DatasetWarning, stacklevel=3)


def _labels(label: torch.Tensor, path: Path) -> tuple[torch.Tensor, str]:
    """Labels and task from ``ndata['label']``: int ids or a 0/1 matrix."""
    if label.dim() == 1:
        if label.is_floating_point() or label.dtype == torch.bool:
            raise DatasetError(f"{path}: 1-D ndata['label'] must hold integer class ids, got {label.dtype}")
        if label.numel() and int(label.min()) < 0:
            raise DatasetError(f"{path}: ndata['label'] holds negative class ids")
        return label.long(), "multiclass"
    if label.dim() == 2:
        values = label.float()
        if not ((values == 0) | (values == 1)).all():
            raise DatasetError(f"{path}: 2-D ndata['label'] (multilabel) must hold only 0 and 1")
        return values, "multilabel"
    raise DatasetError(f"{path}: ndata['label'] must be 1-D (class ids) or 2-D (0/1 tasks)")


def _mask_to_index(mask: torch.Tensor, key: str, num_nodes: int, path: Path) -> torch.Tensor:
    """Node ids selected by a boolean (or 0/1) mask of length ``num_nodes``."""
    if mask.dim() != 1 or mask.shape[0] != num_nodes:
        raise DatasetError(
            f"{path}: ndata[{key!r}] must be a 1-D mask of length {num_nodes} (one per node), "
            f"got shape {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
        raise DatasetError(f"{path}: ndata[{key!r}] must be boolean or 0/1")
    return mask.bool().nonzero().reshape(-1)


#: Seconds the forked probe may take per GiB of file (plus a floor) before it is given up on.
_PROBE_SECONDS_PER_GIB, _PROBE_MIN_SECONDS = 120.0, 60.0


def _probe_in_child(path: Path) -> None:
    """Read the file once in a forked child first: DGL's C++ reader can abort the whole process on
    a damaged file (``std::bad_alloc`` from a corrupted length field), which no ``except`` catches.

    A child killed by a signal means the file is damaged: a one-line :class:`DatasetError`. A child
    that ends normally (read or a Python-level error, which the real read reports) or that takes
    too long lets the real read go on. Not on platforms without ``fork``.
    """
    if not hasattr(os, "fork"):
        return
    import signal
    import time

    deadline = time.monotonic() + max(_PROBE_MIN_SECONDS, _PROBE_SECONDS_PER_GIB * path.stat().st_size / 2**30)
    pid = os.fork()
    if pid == 0:  # the child: read, then leave without running any cleanup of the parent's state
        code = 0
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)  # DGL's C++ logging of the failure belongs to the parent
            _limit_address_space(extra=max(2**30, 8 * path.stat().st_size))
            dgl.load_graphs(str(path))
        except BaseException:
            code = 1
        os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
        time.sleep(0.01)
    if os.WIFSIGNALED(status):
        raise DatasetError(
            f"{path} is damaged: DGL's reader crashed on it ({signal.Signals(os.WTERMSIG(status)).name}); "
            "write the graph again with dgl.save_graphs(path, [graph])"
        )


def _limit_address_space(extra: int) -> None:
    """Cap this process's address space at its current size plus ``extra`` bytes, so that a
    corrupted length field fails one allocation instead of exhausting the machine's memory."""
    try:
        import resource

        with open("/proc/self/statm") as fh:
            current = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (current + extra, current + extra))
    except (OSError, ValueError, ImportError):
        pass  # not Linux: no cap, the probe still isolates a crash
