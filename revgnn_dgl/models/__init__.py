"""Models: RevGNN, WT-RevGNN, ResGNN (one deep GNN, three connections) and DEQ-GNN."""
import inspect

from ..registry import register_architecture
from .deepgcn import CONNECTIONS, CONVS, DeepGCN, ResGNN, RevGNN, WTRevGNN

__all__ = ["CONNECTIONS", "CONVS", "DeepGCN", "ResGNN", "RevGNN", "WTRevGNN"]

# DeepGCN forwards extra keyword arguments to GENConv: accept exactly those.
_GEN_OPTIONS = {"t", "learn_t", "p", "learn_p", "y", "learn_y", "msg_norm", "learn_msg_scale", "expansion", "eps"}
_DEEPGCN_ARGUMENTS = {
    name
    for name, p in inspect.signature(DeepGCN.__init__).parameters.items()
    if name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD
} | _GEN_OPTIONS

register_architecture("revgnn", _DEEPGCN_ARGUMENTS - {"connection"})(RevGNN)
register_architecture("wt-revgnn", _DEEPGCN_ARGUMENTS - {"connection"})(WTRevGNN)
register_architecture("resgnn", _DEEPGCN_ARGUMENTS - {"connection", "groups", "reinit_groups", "disable"})(ResGNN)
