"""RevGNN-Deep at its full 1001 layers: the memory-saving backward against ordinary autograd."""

from __future__ import annotations

import copy

import dgl
import pytest
import torch
import torch.nn.functional as F
from grad_check import assert_gradients_match, mismatch

from revgnn_dgl import create_model


def proteins_like_graph(num_nodes: int = 60, num_edges: int = 300, seed: int = 0):
    """A small random graph shaped like ogbn-proteins: 8-dim edge features, species one-hot."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    dst = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    graph = dgl.graph((src, dst), num_nodes=num_nodes)
    edge_feat = torch.rand(num_edges, 8, generator=gen)
    node_feat = torch.zeros(num_nodes, 8).index_add_(0, dst, edge_feat)  # sum of incident edge features
    species = F.one_hot(torch.randint(0, 8, (num_nodes,), generator=gen), 8).float()
    labels = torch.randint(0, 2, (num_nodes, 112), generator=gen).float()
    return graph, node_feat, edge_feat, species, labels


@pytest.mark.slow
def test_revgnn_deep_full_depth_gradients_match_autograd():
    """RevGNN-Deep's architecture at its full 1001 layers, the memory-saving backward against
    ordinary autograd (``disable=True``, same weights, same dropout mask), in float64.

    The card's arguments but the width (8 channels instead of 80) on a 20-node graph keep it to
    seconds; the depth, the groups, the conv, the norms and the shared dropout are the card's.
    Measured: every gradient element within 0.27 of the helper's tolerance (rtol 1e-9), the
    largest difference 4e-11 of the largest entry of its tensor.
    """
    from revgnn_dgl.zoo.convert import official_key_map

    torch.manual_seed(0)
    rev = create_model("revgnn-deep", hidden=8).double().train()
    assert len(rev.layers) == 1001 and rev.zoo_config["arguments"]["num_layers"] == 1001
    # The official checkpoint's keys map onto exactly this architecture's keys.
    assert sorted(official_key_map(1001, 2).values()) == sorted(rev.state_dict())
    plain = copy.deepcopy(rev)
    plain.set_disable(True)

    graph, feat, edge_feat, species, labels = proteins_like_graph(num_nodes=20, num_edges=80)
    inputs = (graph, feat.double(), edge_feat.double(), species.double())
    results = []
    for model in (rev, plain):
        torch.manual_seed(1)  # the same dropout mask in both runs
        logits = model(*inputs)
        F.binary_cross_entropy_with_logits(logits, labels.double()).backward()
        results.append((logits.detach(), {name: p.grad for name, p in model.named_parameters()}))
    (logits_r, grads_r), (logits_p, grads_p) = results
    assert logits_r.shape == (20, 112) and torch.equal(logits_r, logits_p)  # the same forward computation
    assert all(g is not None for g in grads_r.values()) and all(g is not None for g in grads_p.values())
    print(f"\nrevgnn-deep, 1001 layers, float64: gradient mismatch {mismatch(grads_r, grads_p):.3f} of the tolerance")
    assert_gradients_match(grads_r, grads_p)
