"""What a benchmark runs: one training step of a zoo model on a generated graph.

A :class:`StepConfig` names a model (a zoo card used as template), its depth, width and groups,
the size of a generated graph with ogbn-proteins's schema, and a *variant*: how the reversible
blocks are executed.

* ``ours`` -- :class:`revgnn_dgl.nn.GroupRevRes`, the memory-saving path.
* ``disable`` -- the same blocks under ``disable=True``: ordinary autograd, every activation
  stored (the recomputation-free baseline).

Further variants are registered with :func:`register_variant` by code outside the package:
``benchmarks/alternatives_variants.py`` adds ``dgl`` (DGL's ``dgl.nn.GroupRevRes`` around the
same blocks) and ``pyg`` (PyTorch Geometric's ``GroupAddRev`` and ``GENConv``), which
``python benchmarks/alternatives.py`` compares with these two. A configuration records the
module that registered its variant (:attr:`StepConfig.variant_module`), and a fresh process
that measures it imports that module first, so a registered variant runs there too.

:class:`TrainStep` holds the model, the graph, the inputs and an Adam optimizer, and runs one
step: forward, ``BCEWithLogitsLoss``, backward, gradient clipping at 1.0, ``Adam.step()`` --
the paper's recipe.
"""

from __future__ import annotations

import copy
import importlib
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import AbstractSet, Any, Callable, Dict, List, Mapping, Optional, Tuple

import dgl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import zoo
from ..nn import GroupRevRes
from ..train.device import resolve_device

__all__ = [
    "VARIANTS",
    "Variant",
    "StepConfig",
    "GraphBatch",
    "TrainStep",
    "make_batch",
    "model_arguments",
    "register_variant",
    "resolve_model",
    "variant_available",
    "variant_module",
    "variant_names",
    "wrap_variant",
]

#: The package's own variants; :func:`variant_names` lists these and the registered ones.
VARIANTS = ("ours", "disable")


@dataclass
class StepConfig:
    """One benchmark configuration: model, size, graph and execution variant.

    Attributes
    ----------
    model : str
        A zoo model name (``revgnn-deep``, ``resgnn-112``, ...) or an architecture name
        (``revgnn``, ``resgnn``, ``wt-revgnn``, ``deq-gnn``), whose first model card is then
        the template. The card's other arguments (norm, aggregator, dropout, ...) are kept.
    depth : int
        Number of layers (``num_layers``); for an equilibrium model, the solver's iteration cap.
    hidden, groups : int, optional
        Width :math:`D` and groups :math:`C`; None keeps the card's.
    nodes, edges : int
        Size of the generated graph (directed edges; each undirected pair counts twice).
    edge_feats, species, tasks : int
        Edge feature width, number of species (one-hot node input), number of binary tasks.
    variant : str
        ``ours``, ``disable`` or a registered variant (see the module docstring and
        :func:`register_variant`).
    device : str
        ``cpu``, ``cuda`` or ``auto``.
    seed : int
        Seeds the graph, the weights and every step's dropout mask.
    dropout : float, optional
        Overrides the card's dropout.
    lr, clip : float
        Adam's learning rate and the gradient-norm clip (0 for none).
    extra : dict
        Further architecture arguments, passed to the builder.
    variant_module : str, optional
        The module that registered ``variant``, which a fresh process imports to register it
        again. Filled in from this process's registry for a registered variant (and None for
        the package's own); a configuration read in another process keeps what it says.
    """

    model: str = "revgnn-112"
    depth: int = 8
    hidden: Optional[int] = None
    groups: Optional[int] = None
    nodes: int = 2000
    edges: int = 20000
    edge_feats: int = 8
    species: int = 8
    tasks: int = 112
    variant: str = "ours"
    device: str = "cpu"
    seed: int = 0
    dropout: Optional[float] = None
    lr: float = 1e-3
    clip: float = 1.0
    extra: Dict[str, Any] = field(default_factory=dict)
    variant_module: Optional[str] = None

    def __post_init__(self) -> None:
        known = _VARIANTS.get(self.variant)
        if known is not None:  # what this process registered wins over a copied field
            self.variant_module = known.module

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StepConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown StepConfig field(s): {', '.join(unknown)}")
        return cls(**dict(data))


@dataclass
class GraphBatch:
    """A generated graph with ogbn-proteins's schema, and its inputs and labels."""

    graph: dgl.DGLGraph
    feat: Tensor  #: (N, edge_feats): sum of incident edge features, as for ogbn-proteins
    edge_feat: Tensor  #: (E, edge_feats), uniform in [0, 1) like ogbn-proteins's
    species: Optional[Tensor]  #: (N, species) one-hot, or None
    labels: Tensor  #: (N, tasks) in {0, 1}

    def nbytes(self) -> Dict[str, int]:
        """Bytes of the graph structure (every created sparse format) and of the inputs."""
        g = self.graph
        n, e = g.num_nodes(), g.num_edges()
        created = g.formats()["created"]
        idx = 8 if g.idtype == torch.int64 else 4
        per_format = {"coo": 2 * e * idx, "csr": (n + 1) * idx + 2 * e * idx, "csc": (n + 1) * idx + 2 * e * idx}
        inputs = [self.feat, self.edge_feat, self.labels] + ([self.species] if self.species is not None else [])
        return {
            "graph_structure": sum(per_format[f] for f in created),
            "inputs": sum(t.numel() * t.element_size() for t in inputs),
        }


#: The default device of generated workloads.
CPU = torch.device("cpu")


def make_batch(
    nodes: int,
    edges: int,
    edge_feats: int = 8,
    species: int = 8,
    tasks: int = 112,
    seed: int = 0,
    device: torch.device = CPU,
) -> GraphBatch:
    """Generate a random undirected graph stored as ``edges`` directed edges, with inputs.

    The default sizes of the paper-scale batch come from ogbn-proteins (132,534 nodes, 39.6M
    directed edges) cut into 10 random parts: each part keeps a tenth of the nodes and about a
    hundredth of the edges (both endpoints must land in the part): 13,250 nodes, 790,000 edges.
    """
    if nodes < 1 or edges < 0:
        raise ValueError(f"need nodes >= 1 and edges >= 0, got {nodes}, {edges}")
    gen = torch.Generator().manual_seed(seed)
    half = edges // 2
    src = torch.randint(0, nodes, (half,), generator=gen)
    dst = torch.randint(0, nodes, (half,), generator=gen)
    # Both directions, like ogbn-proteins; one self-loop fills an odd count.
    extra = torch.randint(0, nodes, (edges - 2 * half,), generator=gen)
    u = torch.cat([src, dst, extra])
    v = torch.cat([dst, src, extra])
    graph = dgl.graph((u, v), num_nodes=nodes)
    efeat = torch.rand(edges, edge_feats, generator=gen)
    feat = torch.zeros(nodes, edge_feats).index_add_(0, v, efeat)
    spec = None
    if species:
        spec = F.one_hot(torch.randint(0, species, (nodes,), generator=gen), species).float()
    labels = (torch.rand(nodes, tasks, generator=gen) < 0.5).float()
    graph = graph.to(device)
    graph.create_formats_()  # so that no measured step pays for building CSR/CSC
    return GraphBatch(
        graph=graph,
        feat=feat.to(device),
        edge_feat=efeat.to(device),
        species=None if spec is None else spec.to(device),
        labels=labels.to(device),
    )


def resolve_model(name: str) -> Tuple[str, str]:
    """``(model card name, architecture)`` for a model name, alias or architecture name."""
    models = zoo.list_models()
    key = name.strip().lower()
    try:
        canonical = zoo.resolve_name(key)
        return canonical, zoo.get_config(canonical)["architecture"]
    except zoo.ZooError:
        pass
    for model in models:  # an architecture: its first card is the template
        if zoo.get_config(model)["architecture"] == key:
            return model, key
    raise zoo.ZooError(
        f"unknown model or architecture {name!r}; models: {', '.join(models)}; "
        f"architectures: {', '.join(zoo.list_architectures())}"
    )


def model_arguments(cfg: StepConfig) -> Tuple[str, str, Dict[str, Any]]:
    """The model card, architecture and full argument dict for a configuration.

    Argument names are matched to what the card uses: ``num_layers`` (or ``max_iter`` for an
    equilibrium model), ``hidden``/``hidden_channels``, ``edge_feats``/``edge_channels``,
    ``out_feats``/``out_channels``, ``in_feats``/``in_channels``. The node input is the sum
    of incident edge features (width ``edge_feats``); the species one-hot goes through the
    model's own species encoder when it has one (``species_feats``), and is concatenated to
    the node input otherwise.
    """
    name, arch = resolve_model(cfg.model)
    args = dict(zoo.get_config(name)["arguments"])

    # Names the builder declares (None when it takes **kwargs: then only the card's names).
    allowed: AbstractSet[str] = zoo.architecture_arguments(arch) or set()

    def put(candidates: Tuple[str, ...], value: Any) -> bool:
        for key in [k for k in candidates if k in args] + [k for k in candidates if k in allowed]:
            args[key] = value
            return True
        return False

    if not put(("num_layers",), cfg.depth) and not put(("max_iter",), cfg.depth):
        raise ValueError(f"model {name!r} has no depth argument (num_layers or max_iter)")
    if cfg.hidden is not None and not put(("hidden", "hidden_channels"), cfg.hidden):
        raise ValueError(f"model {name!r} has no width argument (hidden or hidden_channels)")
    if cfg.groups is not None and "groups" in args:
        args["groups"] = cfg.groups  # residual models have no groups: silently one width
    put(("edge_feats", "edge_channels"), cfg.edge_feats)
    put(("out_feats", "out_channels"), cfg.tasks)
    if "species_feats" in args:
        args["species_feats"] = cfg.species
        in_width = cfg.edge_feats
    else:
        in_width = cfg.edge_feats + cfg.species
    put(("in_feats", "in_channels"), in_width)
    if cfg.dropout is not None:
        put(("dropout",), cfg.dropout)
    args.update(cfg.extra)
    return name, arch, args


# ------------------------------------------------------------------------------------ variants
class _ZooForward(nn.Module):
    """Calls a zoo model with the inputs it takes (species separately or concatenated).

    Parameters
    ----------
    model : nn.Module
        Called as ``model(graph, feat, [edge_feat=...], [species=...])``.
    arguments : dict
        The arguments it was built with: ``species_feats > 0`` means the model encodes the
        species itself; an edge width (``edge_feats``/``edge_channels``) > 0, that it takes
        edge features.
    """

    def __init__(self, model: nn.Module, arguments: Mapping[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.species_separate = int(arguments.get("species_feats", 0) or 0) > 0
        self.takes_edges = int(arguments.get("edge_feats", arguments.get("edge_channels", 0)) or 0) > 0

    def forward(self, b: GraphBatch) -> Tensor:
        feat = b.feat
        kwargs: Dict[str, Any] = {}
        if self.species_separate:
            kwargs["species"] = b.species
        elif b.species is not None:
            feat = torch.cat([feat, b.species], dim=-1)
        if self.takes_edges:
            kwargs["edge_feat"] = b.edge_feat
        return self.model(b.graph, feat, **kwargs)


def _wrap_ours(model: nn.Module, arguments: Mapping[str, Any]) -> nn.Module:
    return _ZooForward(model, arguments)


def _wrap_disable(model: nn.Module, arguments: Mapping[str, Any]) -> nn.Module:
    if not any(isinstance(m, GroupRevRes) for m in model.modules()):
        raise ValueError(f"variant 'disable' needs reversible blocks; {type(model).__name__} has none")
    model.set_disable(True)
    return _ZooForward(model, arguments)


@dataclass(frozen=True)
class Variant:
    """An execution variant: how :class:`TrainStep` runs a built zoo model (see :func:`register_variant`)."""

    name: str
    wrap: Callable[[nn.Module, Mapping[str, Any]], nn.Module]
    available: Optional[Callable[[], Optional[str]]] = None
    module: Optional[str] = None  #: the registering module; None for the package's own


_VARIANTS: Dict[str, Variant] = {
    "ours": Variant("ours", _wrap_ours),
    "disable": Variant("disable", _wrap_disable),
}


def register_variant(
    name: str,
    wrap: Callable[[nn.Module, Mapping[str, Any]], nn.Module],
    available: Optional[Callable[[], Optional[str]]] = None,
    *,
    module: Optional[str] = None,
) -> Variant:
    """Add an execution variant, usable by :class:`StepConfig`, the sweeps and ``--variants``.

    Parameters
    ----------
    name : str
        What configurations, ``--variants`` and result rows call it (no commas).
    wrap : callable
        ``wrap(model, arguments) -> nn.Module``: a module whose ``forward(batch)`` takes a
        :class:`GraphBatch` and returns the logits, running ``model`` (the zoo model just built
        with ``arguments``, or a copy of one, in training mode on its device; ``wrap`` may change
        it). Its trainable parameters are what Adam steps.
    available : callable, optional
        ``available() -> None`` when the variant can run here, else why not (an optional
        dependency missing, say); a sweep then records ``unavailable`` rows instead.
    module : str, optional
        The module whose import registers the variant, which a fresh measuring process imports
        (it gets this process's ``sys.path``); default: the caller's module. A variant
        registered by a script run as ``__main__`` runs in this process only.

    Returns
    -------
    Variant

    Raises
    ------
    ValueError
        For a name that is empty, has a comma, or is registered already by another module
        (re-registering from the same module, as a re-import does, replaces the entry).
    """
    if not name or "," in name or name != name.strip():
        raise ValueError(f"a variant name must be non-empty, without commas or surrounding spaces: {name!r}")
    if module is None:
        module = sys._getframe(1).f_globals.get("__name__")
    old = _VARIANTS.get(name)
    if old is not None and old.module != module:
        raise ValueError(f"variant {name!r} is registered already, by {old.module or __name__}")
    variant = Variant(name, wrap, available, module)
    _VARIANTS[name] = variant
    return variant


def variant_names() -> Tuple[str, ...]:
    """The variants this process can run: the package's own, then the registered ones."""
    return tuple(_VARIANTS)


def variant_module(name: str) -> Optional[str]:
    """The module that registered ``name`` (None for the package's own or an unknown name)."""
    known = _VARIANTS.get(name)
    return None if known is None else known.module


def _get_variant(name: str, module: Optional[str] = None) -> Variant:
    """The registered variant ``name``, importing ``module`` first if it is not registered yet."""
    if name not in _VARIANTS and module and module != "__main__":
        importlib.import_module(module)
    try:
        return _VARIANTS[name]
    except KeyError:
        hint = ""
        if module == "__main__":
            hint = (
                " (it was registered by a script run as __main__, which a fresh process cannot import: "
                "register it in an importable module)"
            )
        elif module:
            hint = f" (importing {module} did not register it)"
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(_VARIANTS)}{hint}") from None


def variant_available(variant: str, module: Optional[str] = None) -> Optional[str]:
    """None if the variant can run here, else why not.

    ``module`` is the variant's registering module (:attr:`StepConfig.variant_module`),
    imported first when the variant is not registered in this process.
    """
    try:
        known = _get_variant(variant, module)
    except (ValueError, ImportError) as err:
        return str(err) if isinstance(err, ValueError) else f"cannot import {module}: {type(err).__name__}: {err}"
    return known.available() if known.available is not None else None


def wrap_variant(
    model: nn.Module, variant: str, arguments: Mapping[str, Any], module: Optional[str] = None
) -> nn.Module:
    """A module ``forward(batch) -> logits`` running ``model`` (built with ``arguments``) as ``variant``."""
    why = variant_available(variant, module)
    if why:
        raise RuntimeError(why)
    return _VARIANTS[variant].wrap(model, arguments)


# ----------------------------------------------------------------------------------- the step
class TrainStep:
    """A model, its optimizer and a graph batch, ready to run training steps.

    Parameters
    ----------
    cfg : StepConfig
        What to build.
    batch : GraphBatch, optional
        Reuse a generated graph (the speed comparison shares one between variants).
    model : nn.Module, optional
        Reuse a built zoo model (copied, so that variants start from the same weights).

    Examples
    --------
    >>> ts = TrainStep(StepConfig(model="revgnn-112", depth=2, hidden=8, nodes=50, edges=200))
    >>> ts.prime(); loss = ts.step(); ts.zero_grad()
    >>> loss > 0
    True
    """

    def __init__(self, cfg: StepConfig, batch: Optional[GraphBatch] = None, model: Optional[nn.Module] = None) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.model_name, self.architecture, self.arguments = model_arguments(cfg)
        if batch is None:
            batch = make_batch(cfg.nodes, cfg.edges, cfg.edge_feats, cfg.species, cfg.tasks, cfg.seed, self.device)
        self.batch = batch
        if model is None:
            torch.manual_seed(cfg.seed)
            model = zoo.create_model(self.model_name, **self.arguments)
        else:
            model = copy.deepcopy(model)
        model = model.to(self.device).train()
        self.num_parameters = sum(p.numel() for p in model.parameters())
        self.net = wrap_variant(model, cfg.variant, self.arguments, cfg.variant_module)
        self.params: List[nn.Parameter] = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr)
        self.steps = 0

    def prime(self) -> None:
        """Create Adam's state (with zero gradients, so the weights do not move).

        A measured step then holds the optimizer state a steady-state step holds, without
        paying for a full warm-up step (minutes for a 1001-layer model on a large graph).
        """
        for p in self.params:
            p.grad = torch.zeros_like(p)
        self.optimizer.step()
        self.zero_grad()

    def zero_grad(self) -> None:
        """Free the gradients (``set_to_none``), as a training loop does between steps."""
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> float:
        """One training step: forward, loss, backward, clipping, Adam. Returns the loss.

        Gradients are left in ``.grad``; call :meth:`zero_grad` before the next step (outside
        a memory measurement, so that freeing them is not counted against it).
        """
        # Same dropout mask for every variant at the same step: comparable losses.
        torch.manual_seed(self.cfg.seed + 1 + self.steps)
        self.steps += 1
        out = self.net(self.batch)
        loss = F.binary_cross_entropy_with_logits(out, self.batch.labels)
        del out
        loss.backward()
        if self.cfg.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip)
        self.optimizer.step()
        return float(loss.detach())

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
