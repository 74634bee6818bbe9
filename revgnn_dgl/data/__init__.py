"""Datasets and metrics: ogbn-proteins, ogbn-arxiv, an offline synthetic stand-in, and
small real graphs for tests and benchmarks.

The names below are imported on first use, so that the DGL-free parts
(:mod:`~revgnn_dgl.data.catalog`, :mod:`~revgnn_dgl.data.paths`,
:mod:`~revgnn_dgl.data.options`, :mod:`revgnn_dgl.errors`) can be
read without importing DGL or torch.

>>> from revgnn_dgl.data import load_dataset, evaluate_metric
>>> ds = load_dataset("synthetic-proteins", seed=0)
>>> ds.task, ds.num_outputs, ds.metric_name
('multilabel', 112, 'rocauc')
"""

from __future__ import annotations

from ..lazy import lazy_exports

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "CATALOG": "catalog",
    "DATA_ENV_VAR": "paths",
    "DatasetError": "..errors",
    "DatasetInfo": "catalog",
    "DatasetWarning": "..errors",
    "NodeDataset": "base",
    "TorchFileError": "safe_torch",
    "UnsafeFileError": "safe_torch",
    "RestrictedUnpickler": "safe_pickle",
    "dataset_catalog": "catalog",
    "dataset_names": "registry",
    "default_data_root": "paths",
    "evaluate_metric": "metrics",
    "load_dataset": "registry",
    "load_ogbn_arxiv": "ogbn_arxiv",
    "load_torch_file": "safe_torch",
    "restricted_load": "safe_pickle",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
