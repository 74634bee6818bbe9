"""``synthetic-proteins``: a small offline graph with ogbn-proteins's schema.

The generator plants a signal that needs the graph:

* Nodes belong to latent communities; edges are mostly drawn inside a
  community (homophily), so a node's community shows in its neighbourhood.
* Each node has a hidden vector (its community's centre plus noise). The
  112 binary tasks threshold random projections of that vector averaged
  over the node's ``hops``-hop neighbourhood, plus a species effect.
* The only node inputs are, as in ogbn-proteins, the sum of the incident
  edges' 8 features, which see the endpoints' hidden vectors only through
  heavy noise. One node's own edges hint weakly at its community; pooling
  the neighbourhood, as a GNN does, denoises the hint.
"""

from __future__ import annotations

import dgl
import numpy as np
import scipy.sparse as sp
import torch

from ..limits import MAX_NODES, check_count, check_memory
from .base import DatasetError, NodeDataset, as_index, sum_incident_edge_feats, undirected_edges

#: Smoothing rounds of the labels: past a few dozen the hidden vectors are uniform anyway.
MAX_HOPS = 64

NUM_SPECIES = 8
NUM_EDGE_FEATS = 8
NUM_TASKS = 112
#: Width of the hidden per-node vector that the labels are read from.
HIDDEN_DIM = 16


def make_synthetic_proteins(
    seed: int = 0,
    num_nodes: int = 2000,
    avg_degree: float = 16.0,
    num_communities: int = 20,
    homophily: float = 0.8,
    hops: int = 2,
    edge_noise: float = 8.0,
) -> NodeDataset:
    """Generate the ``synthetic-proteins`` dataset.

    Parameters
    ----------
    seed : int
        Seed of the generator; the same arguments give the same dataset.
    num_nodes : int
        Number of nodes.
    avg_degree : float
        Target mean number of neighbours per node (duplicates drawn by
        chance are merged, so the realised mean is slightly lower).
    num_communities : int
        Number of latent communities.
    homophily : float
        Probability that an edge joins two nodes of the same community.
    hops : int
        Neighbourhood radius over which the hidden vectors are averaged
        before the labels are read from them.
    edge_noise : float
        Standard deviation of the noise in the edge features, relative to
        their signal (of scale about 1); higher makes the node inputs less
        informative.

    Returns
    -------
    NodeDataset
        A symmetric graph with ``edata['feat']`` (E, 8) in [0, 1],
        ``ndata['feat']`` (N, 8) the summed incident edge features,
        ``ndata['species']`` (N, 8) one-hot, 112 multilabel float targets,
        and a random 60/20/20 split fixed by ``seed``.
    """
    if num_nodes < 10:
        raise DatasetError(f"synthetic-proteins needs num_nodes >= 10, got {num_nodes}")
    check_count("num_nodes", num_nodes, MAX_NODES, error=DatasetError, where="synthetic-proteins")
    if not 0 < avg_degree < num_nodes:
        raise DatasetError(f"avg_degree must lie in (0, num_nodes), got {avg_degree}")
    # Bound first, then allocate: the float64 arrays per node and per edge draw, a few of each alive at once.
    per_node = 8 * (3 * HIDDEN_DIM + 4 * NUM_TASKS + 2 * NUM_SPECIES) + 64
    per_edge = 8 * (12 + 6 * NUM_EDGE_FEATS + 2 * HIDDEN_DIM)
    check_memory(f"synthetic-proteins with num_nodes={num_nodes}, avg_degree={avg_degree}",
                 num_nodes * per_node + num_nodes * avg_degree * per_edge, error=DatasetError)  # fmt: skip
    if not 1 <= num_communities <= num_nodes:
        raise DatasetError(f"num_communities must lie in [1, num_nodes], got {num_communities}")
    if not 0.0 <= homophily <= 1.0:
        raise DatasetError(f"homophily must lie in [0, 1], got {homophily}")
    if hops < 0 or edge_noise < 0:
        raise DatasetError(f"hops and edge_noise must be >= 0, got {hops} and {edge_noise}")
    check_count("hops", hops, MAX_HOPS, error=DatasetError, where="synthetic-proteins")  # one sparse product each
    rng = np.random.default_rng(seed)

    community = rng.integers(num_communities, size=num_nodes)
    species = rng.integers(NUM_SPECIES, size=num_nodes)
    centres = rng.normal(size=(num_communities, HIDDEN_DIM))
    hidden = centres[community] + 0.5 * rng.normal(size=(num_nodes, HIDDEN_DIM))

    # Edges: each draw picks a partner from the same community with
    # probability `homophily`, else uniformly at random.
    num_draws = int(round(num_nodes * avg_degree / 2))
    src = rng.integers(num_nodes, size=num_draws)
    order = np.argsort(community, kind="stable")
    starts = np.searchsorted(community[order], np.arange(num_communities))
    sizes = np.bincount(community, minlength=num_communities)
    own = community[src]
    same = order[starts[own] + (rng.random(num_draws) * sizes[own]).astype(np.int64)]
    dst = np.where(rng.random(num_draws) < homophily, same, rng.integers(num_nodes, size=num_draws))
    src, dst, _ = undirected_edges(src, dst, num_nodes)

    # Edge features: a weak, noisy view of both endpoints' hidden vectors
    # (symmetric in u and v, so both directions carry the same values).
    proj = rng.normal(size=(HIDDEN_DIM, NUM_EDGE_FEATS)) / np.sqrt(HIDDEN_DIM)
    signal = (hidden[src] + hidden[dst]) @ proj / np.sqrt(2.0)
    half = len(src) // 2  # second half of the edge list = first half reversed
    noise = np.tile(rng.normal(size=(half, NUM_EDGE_FEATS)), (2, 1))
    edge_feat = 1.0 / (1.0 + np.exp(-(signal + edge_noise * noise) / (1.0 + edge_noise)))

    # Labels read the hidden vectors averaged over the `hops`-hop neighbourhood.
    adj = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(num_nodes, num_nodes))
    adj = adj + sp.identity(num_nodes, format="csr")
    walk = sp.diags(1.0 / np.asarray(adj.sum(axis=1)).ravel()) @ adj
    smooth = hidden
    for _ in range(hops):
        smooth = walk @ smooth
    smooth = (smooth - smooth.mean(axis=0)) / (smooth.std(axis=0) + 1e-12)
    weights = rng.normal(size=(HIDDEN_DIM, NUM_TASKS)) / np.sqrt(HIDDEN_DIM)
    species_effect = 0.5 * rng.normal(size=(NUM_SPECIES, NUM_TASKS))
    score = smooth @ weights + species_effect[species] + 0.3 * rng.normal(size=(num_nodes, NUM_TASKS))
    # Per-task thresholds give varied positive rates, between 5% and 50%.
    positive_rate = rng.uniform(0.05, 0.5, size=NUM_TASKS)
    cut = ((1.0 - positive_rate) * num_nodes).astype(np.int64)
    threshold = np.sort(score, axis=0)[cut, np.arange(NUM_TASKS)]
    labels = (score >= threshold).astype(np.float32)

    graph = dgl.graph((torch.from_numpy(src), torch.from_numpy(dst)), num_nodes=num_nodes)
    graph.edata["feat"] = torch.from_numpy(edge_feat.astype(np.float32))
    graph.ndata["feat"] = sum_incident_edge_feats(graph)
    graph.ndata["species"] = torch.nn.functional.one_hot(torch.from_numpy(species), NUM_SPECIES).float()

    perm = rng.permutation(num_nodes)
    n_train, n_val = int(0.6 * num_nodes), int(0.2 * num_nodes)
    return NodeDataset(
        name="synthetic-proteins",
        graph=graph,
        labels=torch.from_numpy(labels),
        train_idx=as_index(np.sort(perm[:n_train])),
        val_idx=as_index(np.sort(perm[n_train : n_train + n_val])),
        test_idx=as_index(np.sort(perm[n_train + n_val :])),
        task="multilabel",
    )
