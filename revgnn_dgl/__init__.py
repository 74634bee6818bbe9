"""revgnn_dgl: grouped reversible GNNs a thousand layers deep, in DGL.

>>> import revgnn_dgl
>>> model = revgnn_dgl.create_model("revgnn-wide", num_layers=2)
"""
__version__ = "0.2.0"

from .zoo import (  # noqa: E402
    ZooError,
    create_model,
    get_config,
    list_architectures,
    list_models,
    register_architecture,
    register_model,
)

__all__ = [
    "ZooError",
    "__version__",
    "create_model",
    "get_config",
    "list_architectures",
    "list_models",
    "register_architecture",
    "register_model",
]
