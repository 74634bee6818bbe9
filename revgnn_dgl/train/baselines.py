"""Shallow baselines beside a deep run on a graph no model card was tuned for (issue 39).

A deep model on a new graph can end below what a shallow one reaches on the same split, and a
user who sees only the deep model's score cannot tell. So ``train`` on a dataset without a card
recipe also fits, in seconds:

- **logistic regression** on the node features alone (scikit-learn's ``LogisticRegression``,
  C = 1; dense features standardised with the training nodes' mean and deviation, sparse or
  binary ones, bags of words, as they are: standardising them cost Cora and CiteSeer 7-12 points
  of validation accuracy; one binary model per task for a multi-label graph, on the nodes
  labelled for it), and
- **a 2-layer GCN** (the zoo's ``gcn-2`` card, widths from the dataset) trained on the whole
  graph with a fixed short recipe (:data:`GCN_RECIPE`: Kipf and Welling's lr 0.01, weight decay
  5e-4, dropout 0.5; 100 epochs, the best validation epoch of those evaluated kept),

scores both with the dataset's metric on the run's own validation and test nodes, and
:func:`report_lines` puts the deep model's mean beside them, with a warning that names the
numbers when the deep model's validation score is below either's.

:func:`wants_baselines` decides when (``train --baseline/--no-baseline``; by default, a run of
at least :data:`AUTO_MIN_EPOCHS` epochs on a dataset its model card was not trained on).
Imports: the data, the zoo, and this package's config, data and evaluation modules; never the
training loop, which calls this module.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..data import evaluate_metric
from ..zoo import create_model, get_config
from .config import TrainConfig
from .data import DeviceData, forward, model_overrides
from .spaces import feature_kind

__all__ = ["AUTO_MIN_EPOCHS", "GCN_RECIPE", "fit_baselines", "report_lines", "wants_baselines", "below"]

#: The fixed short recipe of the 2-layer GCN baseline (``gcn-2``'s card: lr and weight decay).
GCN_RECIPE: Dict[str, Any] = {"epochs": 100, "lr": 0.01, "weight_decay": 5e-4, "dropout": 0.5, "eval_every": 5}
#: By default, baselines are fitted for runs of at least this many epochs (the GCN baseline's own):
#: a shorter run is a check, not a result, and stays as fast as it was.
AUTO_MIN_EPOCHS = 100
#: Names of the baselines in summary.json, and how they are printed.
NAMES = {"logistic_regression": "logistic regression (node features only)",
         "gcn-2": f"gcn-2 (2-layer GCN, {GCN_RECIPE['epochs']} epochs, lr {GCN_RECIPE['lr']})"}  # fmt: skip


def has_card_recipe(config: TrainConfig) -> bool:
    """Whether ``config.model``'s card was trained on ``config.dataset`` (its recipe is the dataset's)."""
    return get_config(config.model).get("dataset") == config.dataset


def wants_baselines(config: TrainConfig, flag: Optional[bool]) -> bool:
    """``flag`` when given (``--baseline``/``--no-baseline``); else on for a one-machine run of at
    least :data:`AUTO_MIN_EPOCHS` epochs on a dataset its model card was not trained on."""
    if flag is not None:
        return flag
    return not config.partitions and config.epochs >= AUTO_MIN_EPOCHS and not has_card_recipe(config)


def fit_baselines(data: DeviceData, seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """Fit both baselines on ``data``'s split; ``{name: {'val', 'test', 'seconds', ...}}``.

    Deterministic for a seed; torch's and numpy's global random generators are left as they were.
    """
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # The split's own warnings (a task with one class among the validation nodes) were the run's to show.
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        return {"logistic_regression": logistic_regression(data.dataset, seed), "gcn-2": gcn_baseline(data, seed)}


def _scores(dataset: Any, outputs: torch.Tensor) -> Dict[str, float]:
    return {split: evaluate_metric(outputs[idx], dataset.labels[idx], dataset.task)
            for split, idx in (("val", dataset.val_idx), ("test", dataset.test_idx))}  # fmt: skip


def logistic_regression(dataset: Any, seed: int = 0) -> Dict[str, Any]:
    """The feature-only baseline: L2-regularised logistic regression (C = 1) on the features (dense
    ones standardised with the training nodes' statistics); one binary model per task for a
    multi-label graph."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    tic = time.perf_counter()
    feat = dataset.graph.ndata["feat"].detach().cpu()
    train = dataset.train_idx.cpu().numpy()
    if feature_kind(feat)[0] == "dense":
        x = feat.double().numpy()
        mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        x = (x - mean) / np.where(std > 0, std, 1.0)
    else:  # bags of words as they are, in a sparse matrix (Coauthor CS's would be 1 GB dense in float64)
        x = _scipy_csr(feat)
    labels = dataset.labels.cpu()
    outputs = np.zeros((x.shape[0], dataset.num_outputs))

    def fit(rows: np.ndarray, y: np.ndarray) -> Any:
        model = LogisticRegression(C=1.0, max_iter=500, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(x[rows], y)

    if dataset.task == "multilabel":
        y_all = labels.double().numpy()
        for task in range(y_all.shape[1]):
            rows = train[~np.isnan(y_all[train, task])]
            y = y_all[rows, task]
            if rows.size == 0 or np.unique(y).size < 2:  # one class only among the training nodes: its rate
                outputs[:, task] = float(y.mean()) if rows.size else 0.5
                continue
            outputs[:, task] = fit(rows, y.astype(int)).predict_proba(x)[:, 1]
    else:
        y_all = labels.numpy()
        rows = train[y_all[train] >= 0]
        classes = np.unique(y_all[rows])
        if classes.size < 2:
            outputs[:, classes] = 1.0
        else:
            outputs[:, classes] = fit(rows, y_all[rows]).predict_proba(x)
    return {**_scores(dataset, torch.from_numpy(outputs)), "seconds": round(time.perf_counter() - tic, 3)}


def _scipy_csr(feat: torch.Tensor) -> Any:
    import scipy.sparse

    rows, cols = feat.nonzero(as_tuple=True)
    values = feat[rows, cols].double().numpy()
    return scipy.sparse.csr_matrix((values, (rows.numpy(), cols.numpy())), shape=tuple(feat.shape))


def _sparse_first_layer(model: torch.nn.Module, feat: torch.Tensor) -> Optional[Callable[[Any], torch.Tensor]]:
    """For sparse features wider than the hidden layer, ``gcn-2``'s forward with its first product
    ``dropout(X) W`` done on a sparse ``X`` (Coauthor CS: 1% non-zero of 18,333 x 6,805; the dense
    product made a 100-epoch baseline take minutes). The same function as ``model(graph, X)``
    (tested): GraphConv's normalised aggregation is linear, so aggregating ``dropout(X) W`` equals
    GraphConv's own order. None where it does not apply (dense or narrow features, another model)."""
    from dgl.nn import GraphConv

    layers = getattr(model, "layers", None)
    if layers is None or len(layers) != 2 or not all(isinstance(layer, GraphConv) for layer in layers):
        return None
    first = layers[0]
    if feature_kind(feat)[0] != "sparse" or first._in_feats <= first._out_feats or first.weight is None:
        return None
    x = feat.to_sparse_coo().coalesce()
    aggregate = GraphConv(first._out_feats, first._out_feats, norm=first._norm, weight=False, bias=False,
                          allow_zero_in_degree=True).to(feat.device)  # fmt: skip
    indices, values = x.indices(), x.values()

    def run(graph: Any) -> torch.Tensor:
        kept = F.dropout(values, model.dropout, model.training)  # dropout of X: its zeros stay zeros
        dropped = torch.sparse_coo_tensor(indices, kept, x.shape, is_coalesced=True)
        h = aggregate(graph, torch.sparse.mm(dropped, first.weight))
        if first.bias is not None:
            h = h + first.bias
        return layers[1](graph, F.dropout(F.relu(h), model.dropout, model.training))

    return run


def gcn_baseline(data: DeviceData, seed: int = 0) -> Dict[str, Any]:
    """The zoo's ``gcn-2`` trained on the whole graph with :data:`GCN_RECIPE`; the scores of its best
    validation epoch (evaluated every ``eval_every`` epochs and at the last)."""
    tic = time.perf_counter()
    dataset, recipe = data.dataset, GCN_RECIPE
    config = TrainConfig(model="gcn-2", dataset=str(dataset.name), dropout=recipe["dropout"])
    overrides, _ = model_overrides(config, dataset)
    torch.manual_seed(seed)
    model = create_model("gcn-2", **overrides).to(data.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    sparse = _sparse_first_layer(model, data.graph.ndata["feat"])
    run = (lambda: sparse(data.graph)) if sparse is not None else (lambda: forward(model, data.graph))
    train = data.train_mask
    labels = data.labels
    if dataset.task == "multilabel":
        known = ~torch.isnan(labels.float())

        def loss_of(logits: torch.Tensor) -> torch.Tensor:
            mask = known[train]
            return F.binary_cross_entropy_with_logits(logits[train][mask], labels[train].float()[mask])
    else:
        labelled = train & (labels >= 0)

        def loss_of(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits[labelled], labels[labelled])

    best: Dict[str, Any] = {"val": -math.inf, "test": None, "epoch": None}
    for epoch in range(1, recipe["epochs"] + 1):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(run())
        loss.backward()
        optimizer.step()
        if epoch % recipe["eval_every"] and epoch != recipe["epochs"]:
            continue
        model.eval()
        with torch.no_grad():
            scores = _scores(dataset, run().float().cpu())
        if scores["val"] > best["val"]:
            best = {**scores, "epoch": epoch}
    return {**best, "epochs": recipe["epochs"], "sparse_input": sparse is not None,
            "seconds": round(time.perf_counter() - tic, 3)}  # fmt: skip


def below(val: float, baselines: Dict[str, Dict[str, Any]]) -> List[str]:
    """The baselines whose validation score is above ``val`` (the deep model's mean)."""
    return [name for name, scores in baselines.items() if val < scores["val"]]


def report_lines(summary: Dict[str, Any], model: str) -> List[str]:
    """The lines that put the run's mean beside the baselines of ``summary['baselines']``, and the
    warning when the deep model is below either on validation."""
    baselines = summary.get("baselines")
    if not baselines:
        return []
    metric, val, test = summary["metric"], summary["val"]["mean"], summary["test"]["mean"]
    runs = len(summary["runs"])
    width = max(len(NAMES[name]) for name in baselines)
    lines = [f"baselines on the same split (val / test {metric}):"]
    for name, scores in baselines.items():
        lines.append(f"  {NAMES[name]:<{width}}  {scores['val']:.4f} / {scores['test']:.4f}")
    lines.append(f"  {model + f' (this run, mean of {runs})':<{width}}  {val:.4f} / {test:.4f}")
    worse = below(val, baselines)
    if worse:
        than = " and ".join(f"{NAMES[name].split(' (')[0]} ({baselines[name]['val']:.4f} / {baselines[name]['test']:.4f})"
                            for name in worse)  # fmt: skip
        lines.append(
            f"warning: {model}'s validation {metric} {val:.4f} (test {test:.4f}) is below {than} on the same split: "
            "the deep model does not yet pay off on this graph. Try `revgnn-dgl tune` (a default search space for "
            'the graph, README "Tuning on your own graph"), standardised input features, or a lower weight decay.'
        )
    return lines
