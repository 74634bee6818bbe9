"""revgnn_dgl: grouped reversible GNNs a thousand layers deep, in DGL.

The names below are imported on first use (PEP 562), so that importing a submodule that needs
only torch (the reversible engine, :mod:`revgnn_dgl.nn.grouprevres`) never imports DGL.

>>> import revgnn_dgl
>>> model = revgnn_dgl.create_model("revgnn-wide", num_layers=2)
"""

from .lazy import lazy_exports

__version__ = "0.3.0"

# name -> the module that defines it, relative to this package.
_EXPORTS = {
    "RevGNNError": ".errors",
    "ZooError": ".errors",
    "create_model": ".zoo",
    "get_config": ".zoo",
    "list_architectures": ".zoo",
    "list_models": ".zoo",
    "register_architecture": ".zoo",
    "register_model": ".zoo",
    "unregister_model": ".zoo",
}

__all__ = sorted([*_EXPORTS, "__version__"])


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
