"""Datasets and metrics: ogbn-proteins, ogbn-arxiv, an offline synthetic stand-in, and
small real graphs for tests and benchmarks.

>>> from revgnn_dgl.data import load_dataset, evaluate_metric
>>> ds = load_dataset("synthetic-proteins", seed=0)
>>> ds.task, ds.num_outputs, ds.metric_name
('multilabel', 112, 'rocauc')
"""
from .base import DATA_ENV_VAR, DatasetError, NodeDataset
from .metrics import evaluate_metric
from .ogbn_arxiv import load_ogbn_arxiv
from .registry import dataset_names, load_dataset
from .safe_pickle import RestrictedUnpickler, restricted_load

__all__ = [
    "DATA_ENV_VAR",
    "DatasetError",
    "NodeDataset",
    "RestrictedUnpickler",
    "dataset_names",
    "evaluate_metric",
    "load_dataset",
    "load_ogbn_arxiv",
    "restricted_load",
]
