"""Layers and models refuse bad arguments with the package's own error (still a ValueError)."""

from __future__ import annotations

import pytest

from revgnn_dgl.errors import ConfigError, RevGNNError


def _cases():
    from revgnn_dgl.models import GCN, RevGAT
    from revgnn_dgl.models.deepgcn import RevGNN
    from revgnn_dgl.nn import GENConv, GroupRevRes, SharedDropout
    from revgnn_dgl.nn.gatconv import GATConv

    return {
        "GENConv aggregator": lambda: GENConv(4, 4, aggregator="nope"),
        "GroupRevRes groups": lambda: GroupRevRes(GENConv(4, 4), groups=1),
        "SharedDropout p": lambda: SharedDropout(1.5),
        "GATConv merge": lambda: GATConv(4, 4, merge="nope"),
        "RevGNN conv": lambda: RevGNN(4, 2, hidden=8, num_layers=2, conv="nope"),
        "RevGNN groups": lambda: RevGNN(4, 2, hidden=9, num_layers=2, groups=2),
        "RevGNN block switch of another kind": lambda: RevGNN(4, 2, hidden=8, num_layers=2, stream_init="zero"),
        "GCN self_loops": lambda: GCN(4, 2, self_loops="sometimes"),
        "RevGAT depth": lambda: RevGAT(4, 2, hidden=8, num_layers=1),
    }


@pytest.mark.parametrize("case", sorted(_cases()))
def test_bad_arguments_raise_the_packages_error(case: str) -> None:
    with pytest.raises(ConfigError) as err:
        _cases()[case]()
    assert isinstance(err.value, RevGNNError) and isinstance(err.value, ValueError)


def test_engine_refusals_are_the_packages_errors_of_the_builtin_kind() -> None:
    """Double backward and a container of grad tensors: RevGNNError, still RuntimeError / TypeError."""
    import dgl
    import torch

    from revgnn_dgl.errors import GraphInputTypeError, UnsupportedGradientError
    from revgnn_dgl.nn import GroupRevRes, PreActivationBlock
    from revgnn_dgl.nn.gcnii import GCNIIConv

    torch.manual_seed(0)
    g = dgl.rand_graph(6, 20)
    block = GroupRevRes(PreActivationBlock(GCNIIConv(2, layer=1), 2, "none", 0.0), groups=2)
    x = torch.randn(6, 4, requires_grad=True)
    h0 = torch.randn(6, 4)
    y = block(g, x, None, h0)
    with pytest.raises(UnsupportedGradientError) as err:
        torch.autograd.grad(y.sum(), x, create_graph=True)
    assert isinstance(err.value, RevGNNError) and isinstance(err.value, RuntimeError)
    with pytest.raises(GraphInputTypeError) as err2:
        block(g, x, None, [h0.requires_grad_(True)])
    assert isinstance(err2.value, RevGNNError) and isinstance(err2.value, TypeError)
