"""Graphs cut into partitions for DGL's distributed training (DistDGL), and what a trainer needs to know of them.

:func:`partition_dataset` runs DGL's partitioner (:func:`dgl.distributed.partition_graph`, METIS
or random) on any dataset the library reads and writes DGL's partition folder: per partition its
graph structure and its nodes' and edges' data, and ``NAME.json``, the partition configuration
DGL's servers and clients read. The data kept per node are the inputs (``feat``, ``species``),
``label`` and the boolean ``train_mask`` / ``val_mask`` / ``test_mask`` of the split; per edge
its ``feat``. Beside DGL's files it writes :data:`META_FILE` (the dataset's name, options, task,
widths and chance level: what the trainer needs without loading the graph) and the id maps
``orig_nids.npy`` / ``orig_eids.npy``: DGL renumbers nodes and edges so that each partition's
are contiguous, and entry ``i`` of each map is the original id of new id ``i``.

:class:`PartitionedDataset` reads :data:`META_FILE` (JSON, and numpy arrays without pickles, so
a folder received from elsewhere runs no code when this module reads it).

Examples
--------
>>> import tempfile
>>> from revgnn_dgl.data import load_dataset
>>> from revgnn_dgl.data.partitions import partition_dataset, PartitionedDataset
>>> out = tempfile.mkdtemp()
>>> summary = partition_dataset(load_dataset("synthetic-proteins", num_nodes=300), 1, out, method="random")
>>> PartitionedDataset(summary["config"]).num_nodes
300
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

import numpy as np

from ..errors import DatasetError
from ..files import strict_json, write_json

if TYPE_CHECKING:
    from .base import NodeDataset

PathLike = Union[str, os.PathLike]

#: What revgnn-dgl adds to DGL's partition folder.
META_FILE = "revgnn_dgl.json"
#: The partitioners of :func:`dgl.distributed.partition_graph` offered here.
METHODS = ("metis", "random")
FORMAT_VERSION = 1


def partition_dataset(
    dataset: "NodeDataset",
    parts: int,
    out: PathLike,
    *,
    method: str = "metis",
    name: Optional[str] = None,
    dataset_options: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Cut ``dataset`` into ``parts`` partitions with DGL's partitioner and write them to ``out``.

    Parameters
    ----------
    dataset : NodeDataset
        Any dataset of the library (features, labels and split are kept).
    parts : int
        Number of partitions (one per machine in a distributed run).
    out : path
        The folder to write; it must not hold a partition already.
    method : {'metis', 'random'}
        METIS (fewer edges cut) or uniform random assignment.
    name : str, optional
        The graph's name in the partition configuration; default: the dataset's name.
    dataset_options : dict, optional
        The options the dataset was loaded with, recorded for the training run.

    Returns
    -------
    dict
        ``config`` (the ``NAME.json`` path), ``nodes``, ``edges``, and per partition ``nodes``,
        ``edges`` (its nodes' in-edges, which it holds) and ``cut`` (those whose source lies in
        another partition).
    """
    import dgl

    if method not in METHODS:
        raise DatasetError(f"partition method must be one of {', '.join(METHODS)}, got {method!r}.")
    if not isinstance(parts, int) or parts < 1 or parts > dataset.num_nodes:
        raise DatasetError(f"--parts must be between 1 and the graph's {dataset.num_nodes} nodes, got {parts}.")
    out = Path(out)
    if out.is_symlink():
        raise DatasetError(f"{out} is a symbolic link: revgnn-dgl never writes through a link; choose another --out.")
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} is not empty; partition into a new folder (or remove this one).")
    name = check_graph_name(name or _graph_name(dataset.name), "--name")
    graph = dataset.to_graph()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # DGL's partitioner narrates every phase
            orig_nids, orig_eids = dgl.distributed.partition_graph(
                graph, name, parts, str(out), part_method=method, balance_edges=True, return_mapping=True
            )
    except Exception as err:  # noqa: BLE001  (DGL's partitioner raises what it likes)
        raise DatasetError(f"DGL could not partition {dataset.name!r}: {' '.join(str(err).split())[:300]}") from None
    orig_nids, orig_eids = orig_nids.numpy().astype(np.int64), orig_eids.numpy().astype(np.int64)
    np.save(out / "orig_nids.npy", orig_nids, allow_pickle=False)
    np.save(out / "orig_eids.npy", orig_eids, allow_pickle=False)
    config_path = out / f"{name}.json"
    ranges = _node_ranges(config_path)
    # Edge cut: DGL gives each edge to its destination's partition; it is cut when its source is elsewhere.
    new_of_orig = np.empty_like(orig_nids)
    new_of_orig[orig_nids] = np.arange(orig_nids.size)
    src, dst = (new_of_orig[t.numpy()] for t in graph.edges())
    starts = np.array([lo for lo, _ in ranges])
    src_part, dst_part = (np.searchsorted(starts, ids, side="right") - 1 for ids in (src, dst))
    per_part: List[Dict[str, int]] = []
    for p, (lo, hi) in enumerate(ranges):
        mine = dst_part == p
        per_part.append({"nodes": int(hi - lo), "edges": int(mine.sum()), "cut": int((src_part[mine] != p).sum())})
    chance = _chance(dataset)
    meta = {
        "format": FORMAT_VERSION, "graph_name": name, "dataset": dataset.name,
        "dataset_options": dict(dataset_options or {}), "task": dataset.task, "num_outputs": dataset.num_outputs,
        "num_node_feats": dataset.num_node_feats, "num_edge_feats": dataset.num_edge_feats,
        "species_feats": int(graph.ndata["species"].shape[1]) if dataset.has_species else 0,
        "num_nodes": int(graph.num_nodes()), "num_edges": int(graph.num_edges()), "parts": parts, "method": method,
        "chance_level": chance, "partitions": per_part,
    }  # fmt: skip
    _write_json(out / META_FILE, meta)
    return {"config": str(config_path), "nodes": meta["num_nodes"], "edges": meta["num_edges"], "partitions": per_part}


def _graph_name(dataset: str) -> str:
    """A graph name DGL's file names and shared-memory names can carry."""
    stem = Path(dataset).stem if dataset.endswith((".bin", ".dgl")) else dataset
    return "".join(c if c.isalnum() else "_" for c in stem) or "graph"


#: A graph name: DGL names the servers' files and shared memory after it.
GRAPH_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


def check_graph_name(name: Any, where: str) -> str:
    """``name`` if DGL's file and shared-memory names can carry it (letters, digits, ``_``; 1 to 64)."""
    if not isinstance(name, str) or not GRAPH_NAME.fullmatch(name):
        raise DatasetError(f"{where}: graph name {name!r:.80} must be 1 to 64 letters, digits or underscores "
                           "(DGL names the servers' shared memory after it).")  # fmt: skip
    return name


def _check_ranges(where: str, mapping: Any, parts: int, total: int, what: str) -> None:
    """A node or edge map of DGL's configuration: one type, ``parts`` contiguous ``[start, end)`` ranges from 0
    to ``total``, the figure of the description (the servers size their memory from it)."""
    ranges = next(iter(mapping.values()), None) if isinstance(mapping, dict) and len(mapping) == 1 else None
    ok = isinstance(ranges, list) and len(ranges) == parts
    end = 0
    for pair in ranges if ok and isinstance(ranges, list) else []:
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(type(v) is int for v in pair)
            and pair[0] == end
            and pair[1] >= pair[0]
        ):
            ok = False
            break
        end = pair[1]
    if not ok or end != total:
        raise DatasetError(f"{where}: its {what}_map is not {parts} contiguous range(s) of the description's {total} "
                           f"{what}s; partition the graph again with `revgnn-dgl partition`.")  # fmt: skip


def _node_ranges(config_path: Path) -> List[tuple]:
    """Each partition's ``[start, end)`` of new node ids, from DGL's configuration."""
    conf = strict_json(config_path.read_text())
    node_map = conf["node_map"]
    ranges = next(iter(node_map.values())) if isinstance(node_map, dict) else node_map
    return [(int(lo), int(hi)) for lo, hi in ranges]


def _chance(dataset: "NodeDataset") -> Optional[float]:
    if dataset.metric_name == "rocauc":
        return 0.5
    labels = dataset.labels[dataset.val_idx]
    labels = labels[labels >= 0]
    if not labels.numel():
        return None
    return float(np.bincount(labels.numpy()).max()) / int(dataset.val_idx.numel())


def _write_json(path: Path, data: Any) -> None:
    write_json(path, data, error=DatasetError)  # strict and whole (revgnn_dgl/files.py)


def _check_description(config: Path, meta_path: Path, meta: Dict[str, Any], conf: Dict[str, Any]) -> None:
    """Every figure of the description within bounds and the node and edge maps matching it (and the id
    maps' lengths), before any server sizes its memory from them."""
    from ..limits import MAX_NODES, MAX_WIDTH, check_count

    check_graph_name(meta["graph_name"], str(meta_path))
    bounds = {"num_outputs": (1, MAX_WIDTH), "num_node_feats": (0, MAX_WIDTH), "num_edge_feats": (0, MAX_WIDTH),
              "species_feats": (0, MAX_WIDTH), "num_nodes": (1, MAX_NODES), "num_edges": (0, 64 * MAX_NODES),
              "parts": (1, 1024)}  # fmt: skip
    for key, (low, high) in bounds.items():
        if key in meta:
            check_count(key, meta[key], high, minimum=low, error=DatasetError, where=str(meta_path))
    if meta["task"] not in ("multilabel", "multiclass"):
        raise DatasetError(f"{meta_path}: task must be multilabel or multiclass, got {meta['task']!r:.60}.")
    for what, total in (("node", meta["num_nodes"]), ("edge", meta["num_edges"])):
        _check_ranges(str(config), conf.get(f"{what}_map"), meta["parts"], total, what)
        if conf.get(f"num_{what}s", total) != total:
            raise DatasetError(f"{config}: num_{what}s is not the description's {total}.")
        ids = config.parent / f"orig_{what[0]}ids.npy"
        if ids.is_file():
            try:
                length = np.load(ids, mmap_mode="r", allow_pickle=False).shape[:1]
            except (OSError, ValueError) as err:
                raise DatasetError(f"{ids}: unreadable ({' '.join(str(err).split())[:200]}).") from None
            if length != (total,):
                raise DatasetError(f"{ids} holds {length[0] if length else 0} ids, not the description's {total}.")


class PartitionedDataset:
    """What a trainer knows of a partitioned graph before it joins the servers: read from :data:`META_FILE`.

    Parameters
    ----------
    config : path
        The partition configuration ``DIR/NAME.json`` that :func:`partition_dataset` wrote.

    Raises
    ------
    DatasetError
        When the file or its folder's :data:`META_FILE` is missing or not what this module writes.
    """

    def __init__(self, config: PathLike) -> None:
        self.config = Path(config)
        meta_path = self.config.parent / META_FILE
        if not self.config.is_file():
            raise DatasetError(
                f"--partitions {self.config}: no such file; give the NAME.json that `revgnn-dgl partition` wrote."
            )
        if not meta_path.is_file():
            raise DatasetError(
                f"--partitions {self.config}: {meta_path.name} is missing beside it; partition the graph with "
                "`revgnn-dgl partition`, which writes it."
            )
        try:
            meta = strict_json(meta_path.read_text())
            conf = strict_json(self.config.read_text())
        except (OSError, ValueError, RecursionError) as err:  # RecursionError: JSON nested too deep
            raise DatasetError(
                f"--partitions {self.config}: unreadable ({' '.join(str(err).split())[:200]})."
            ) from None
        required = ("graph_name", "dataset", "task", "num_outputs", "num_node_feats", "num_edge_feats", "num_nodes",
                    "num_edges", "parts")  # fmt: skip
        missing = [k for k in required if k not in meta] if isinstance(meta, dict) else list(required)
        if missing or meta.get("format") != FORMAT_VERSION:
            raise DatasetError(
                f"{meta_path}: not a revgnn-dgl partition description (missing {', '.join(missing) or 'format'})."
            )
        if self.config.name == META_FILE:  # the description, not the partition config DGL reads
            wanted = self.config.parent / f"{meta['graph_name']}.json"
            raise DatasetError(f"--partitions takes the partition config that `revgnn-dgl partition` printed, {wanted}, "
                               f"not {META_FILE} beside it.")  # fmt: skip
        if (
            not isinstance(conf, dict)
            or conf.get("graph_name") != meta["graph_name"]
            or conf.get("num_parts") != meta["parts"]
        ):
            raise DatasetError(f"{self.config} does not match {meta_path.name} (graph name or number of parts).")
        _check_description(self.config, meta_path, meta, conf)
        self.meta: Dict[str, Any] = meta
        self.graph_name: str = meta["graph_name"]
        self.name: str = meta["dataset"]
        self.task: str = meta["task"]
        self.parts: int = int(meta["parts"])

    num_outputs = property(lambda self: int(self.meta["num_outputs"]))
    num_node_feats = property(lambda self: int(self.meta["num_node_feats"]))
    num_edge_feats = property(lambda self: int(self.meta["num_edge_feats"]))
    species_feats = property(lambda self: int(self.meta.get("species_feats", 0)))
    has_species = property(lambda self: self.species_feats > 0)
    num_nodes = property(lambda self: int(self.meta["num_nodes"]))
    num_edges = property(lambda self: int(self.meta["num_edges"]))
    chance_level = property(lambda self: self.meta.get("chance_level"))

    @property
    def metric_name(self) -> str:
        return "accuracy" if self.task == "multiclass" else "rocauc"

    def machine_nodes(self) -> List[np.ndarray]:
        """Each partition's nodes (served by machine m) as original ids, in the order of their new ids:
        the nodes whose evaluation parts a DistDGL job's machine m draws."""
        orig = self.original_ids()["nodes"]
        return [orig[lo:hi] for lo, hi in _node_ranges(self.config)]

    def original_ids(self) -> Dict[str, np.ndarray]:
        """``{'nodes': orig_nids, 'edges': orig_eids}``: the original id of each new id."""
        folder = self.config.parent
        return {kind: np.load(folder / f"orig_{kind[0]}ids.npy", allow_pickle=False) for kind in ("nodes", "edges")}
