"""Layers and models refuse bad arguments with the package's own error (still a ValueError)."""

from __future__ import annotations

import pytest

from revgnn_dgl.errors import ConfigError, RevGNNError


def _cases():
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
    }


@pytest.mark.parametrize("case", sorted(_cases()))
def test_bad_arguments_raise_the_packages_error(case: str) -> None:
    with pytest.raises(ConfigError) as err:
        _cases()[case]()
    assert isinstance(err.value, RevGNNError) and isinstance(err.value, ValueError)
