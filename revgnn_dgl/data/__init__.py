"""Datasets and metrics: ogbn-proteins, an offline synthetic stand-in, and
small real graphs for tests and benchmarks.

>>> from revgnn_dgl.data import load_dataset, evaluate_metric
>>> ds = load_dataset("synthetic-proteins", seed=0)
>>> ds.task, ds.num_outputs, ds.metric_name
('multilabel', 112, 'rocauc')
"""
from .base import DATA_ENV_VAR, DatasetError, NodeDataset
from .metrics import evaluate_metric
from .registry import dataset_names, load_dataset
from .safe_pickle import RestrictedUnpickler, restricted_load
from .safe_torch import TorchFileError, UnsafeFileError, load_torch_file

__all__ = [
    "DATA_ENV_VAR",
    "DatasetError",
    "NodeDataset",
    "RestrictedUnpickler",
    "TorchFileError",
    "UnsafeFileError",
    "dataset_names",
    "evaluate_metric",
    "load_dataset",
    "load_torch_file",
    "restricted_load",
]
