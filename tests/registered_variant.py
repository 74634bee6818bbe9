"""A benchmark variant registered from outside the package, for ``tests/bench/test_variant_registry.py``.

It lives here, in a module of ``tests/`` (on ``sys.path`` under any pytest import mode, see
``tests/conftest.py``), so that the fresh processes that measure it can import it by name, as
they import ``benchmarks/alternatives_variants.py`` for the ``dgl`` and ``pyg`` variants.
``frozen-head`` runs the model as ``ours`` does with the output layer frozen: Adam steps every
parameter but the head's, so its state is smaller by exactly the head's bytes.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from revgnn_dgl.bench import register_variant
from revgnn_dgl.bench.workload import wrap_variant

NAME = "frozen-head"


def frozen_head(model: nn.Module, arguments: Mapping[str, Any]) -> nn.Module:
    model.head.requires_grad_(False)
    return wrap_variant(model, "ours", arguments)


VARIANT = register_variant(NAME, frozen_head)
