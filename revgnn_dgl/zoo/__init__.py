"""The model zoo, bottom to top:

- :mod:`.architectures` -- architecture name -> builder (the models themselves live in
  :mod:`revgnn_dgl.models` and know nothing of the zoo);
- :mod:`.registry` -- the model cards (``cards/*.yaml``): names, aliases, arguments, metrics;
- :mod:`.checkpoint` -- the safetensors checkpoint format (architecture in the header);
- :mod:`.hub` -- the verified cache of pretrained checkpoints;
- :mod:`.factory` -- :func:`create_model`;
- :mod:`.convert` -- importing the official RevGNN checkpoints.

Only the light modules are imported here, so listing cards needs neither torch nor DGL.
"""

from ..errors import ZooError
from .architectures import architecture_arguments, build_from_config, list_architectures, register_architecture
from .factory import create_model
from .registry import get_config, list_models, register_model, resolve_name, unregister_model

__all__ = [
    "ZooError",
    "architecture_arguments",
    "build_from_config",
    "create_model",
    "get_config",
    "list_architectures",
    "list_models",
    "register_architecture",
    "register_model",
    "resolve_name",
    "unregister_model",
]
