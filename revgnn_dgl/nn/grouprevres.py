"""Grouped reversible residual block with a memory-saving backward that is exact.

Torch only: the graph is handed to the wrapped module as an opaque object and never inspected
here, so this module (and the CUDA test tier, ``tests/cuda``, that drives it) imports without DGL.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager, nullcontext
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, cast

import torch
from torch import Tensor, nn

from ..errors import ConfigError, FreedOutputError, GraphInputError, GraphInputTypeError, UnsupportedGradientError
from .revstate import _AutocastState, _CallSpec, _can_free, _FreedOutput, _RngState, _storage_refs, _TensorSlot

__all__ = ["GroupRevRes", "keep_outputs"]

#: The graph argument: whatever the wrapped module takes (a DGLGraph, a block, an adjacency).
Graph = Any


class _ReversibleFunction(torch.autograd.Function):
    """Runs a :class:`GroupRevRes` block without storing activations.

    forward: computes the coupling without an autograd graph, saves its output and frees its
    input's storage. backward: from the output, reconstructs the input group by group while
    recomputing each group's function once with grad, back-propagates through it, and writes the
    reconstructed input back into the freed storage (where the previous block's backward finds it).
    """

    @staticmethod
    def forward(
        ctx, block: "GroupRevRes", graph: Graph, spec: _CallSpec, free_input: bool, x: Tensor, *rest: Tensor
    ) -> Tensor:
        tensors = rest[: spec.num_tensors]
        ctx.block, ctx.graph, ctx.spec = block, graph, spec
        # The parameters as differentiated now: backward returns one gradient for each of these
        # inputs, whatever requires_grad says by then.
        ctx.params = rest[spec.num_tensors :]
        ctx.autocast = _AutocastState.capture()
        ctx.rng_states = [] if block.preserve_rng_state else None
        y = block._coupling(graph, x, spec, tensors, rng_record=ctx.rng_states)
        ctx.freed = free_input
        storage_view = x
        if free_input:
            # The storage is emptied but kept (the previous block's saved output views it, and so
            # does storage_view); the tensor object itself gets an empty stand-in and the guard
            # class, so every holder of it gets an error, never freed memory. Backward refills
            # the storage and restores both. Saved tensors, not ctx attributes: autograd releases
            # them after backward, so a refilled activation does not live to the end of it.
            storage_view = x.detach()
            x.untyped_storage().resize_(0)
            shape = tuple(x.shape)
            x.data = x.new_empty(0)
            x._revgnn_freed_shape = shape  # type: ignore[attr-defined]  # read by _FreedOutput
            x.__class__ = _FreedOutput
        ctx.save_for_backward(x, storage_view, y, *tensors)
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor) -> Tuple[Optional[Tensor], ...]:
        if torch.is_grad_enabled():
            raise UnsupportedGradientError(
                "GroupRevRes: differentiating the backward pass (create_graph=True, double backward) is not "
                "supported by the memory-saving backward; use disable=True for higher-order gradients."
            )
        block: GroupRevRes = ctx.block
        x, storage_view, y, *tensors = ctx.saved_tensors
        with torch._C.DisableTorchFunctionSubclass():
            if y.untyped_storage().nbytes() < y.numel() * y.element_size():
                # Refilled by the next block's backward, which has not run: backward started from
                # something computed from this output other than through that block.
                raise FreedOutputError(
                    "GroupRevRes backward: this block's output was freed by the next reversible block, whose "
                    "backward has not run (the loss reaches the output other than through that block); "
                    "build this block with keep_output=True or call revgnn_dgl.nn.keep_outputs(model)."
                )
        spec: _CallSpec = ctx.spec
        needs = ctx.needs_input_grad
        need_tensor = needs[5 : 5 + spec.num_tensors]
        # A parameter switched to requires_grad=False since forward gets no gradient, as under
        # ordinary autograd (whose AccumulateGrad drops it); the rest are those of forward.
        params = [p for p in ctx.params if p.requires_grad]
        # Leaves for the recomputation; the caller's tensors stay untouched.
        leaves = [t.detach().requires_grad_(need) for t, need in zip(tensors, need_tensor)]
        with torch.no_grad(), block._frozen_running_stats():
            x_rec, grad_x, grad_tensors, grad_wanted = block._reverse_and_backprop(
                ctx.graph, y, grad_y, spec, leaves, params, ctx.rng_states, ctx.autocast
            )
        by_param = {id(p): g for p, g in zip(params, grad_wanted)}
        grad_params = [by_param.get(id(p)) for p in ctx.params]
        if ctx.freed:
            # Refill the storage emptied in forward: the previous block saved a view of it as its
            # output. A storage-level copy and a .data swap leave the version counter alone, so
            # saved-tensor checks pass; the tensor object is readable again, for the caller too.
            storage = storage_view.untyped_storage()
            storage.resize_(x_rec.numel() * x_rec.element_size())
            storage.copy_(x_rec.untyped_storage())
            with torch._C.DisableTorchFunctionSubclass():
                x.data = x_rec.new_empty(0).set_(storage, 0, x_rec.shape, x_rec.stride())
            x.__class__ = Tensor
        del x_rec
        return (None, None, None, None, grad_x if needs[4] else None, *grad_tensors, *grad_params)


class GroupRevRes(nn.Module):
    r"""Grouped reversible residual connection (Li et al., "Training Graph Neural Networks
    with 1000 Layers", ICML 2021), a drop-in replacement for ``dgl.nn.GroupRevRes``.

    The input :math:`X` is split into :math:`C` channel groups :math:`X_1,\dots,X_C`, and

    .. math::
        X'_0 = \sum_{i=2}^{C} X_i, \qquad X'_i = X_i + f_i(X'_{i-1}, G, U_i), \qquad
        X' = X'_1 \Vert \dots \Vert X'_C,

    whose inverse is :math:`X_i = X'_i - f_i(X'_{i-1}, G, U_i)` for :math:`i = C,\dots,1`, with
    :math:`X'_0` rebuilt from the recovered :math:`X_2,\dots,X_C`.

    **Memory.** When gradients are needed, the forward pass builds no autograd graph, keeps only
    its output, and frees its input's storage if that input is the output of another reversible
    block (any other tensor may still be read by the caller, so it is left alone: in a stack,
    only the first block's input, e.g. an encoder's output, is kept). The backward pass reconstructs the input
    from the output, recomputes each :math:`f_i` once with grad, back-propagates through it, and
    refills the freed storage. Activation memory of a stack of blocks is therefore one block's
    worth, independent of depth. Because the input of :math:`f_i` for :math:`i \ge 2` is the
    output group :math:`X'_{i-1}`, the inverse and the recomputation share one evaluation of
    :math:`f_i`: a reversible step costs one extra forward pass, not two.

    **Keeping intermediate outputs.** A block's output that the next reversible block consumed
    is empty until backward refills it: any other use of it (a skip connection, jumping
    knowledge's ``torch.cat`` of all layers, a readout, a forward hook that keeps it) raises
    :class:`~revgnn_dgl.errors.FreedOutputError` naming the cause, never a crash. To keep
    outputs readable, build the blocks whose outputs you read with ``keep_output=True`` (or set
    it later), or call :func:`keep_outputs` on a whole model; each kept output costs one
    activation of memory and changes no result. An output that another tensor aliases when the
    next block runs (a view, ``.detach()`` or ``.data`` of it) is kept too, with a warning.
    Operations that used an output *before* the next block ran are fine (a per-layer readout
    ``lin(h)`` inside the loop: its backward runs after the next block's has refilled ``h``); a
    backward that reaches them, or this block, without passing through the next block (which
    refills ``h``) raises an error. Not seen: a NumPy array or DLPack capsule made from an
    output shares its memory; make it after backward, or keep that output.

    **Exactness.** Gradients equal those of ordinary autograd (``disable=True``) up to float
    rounding of the reconstruction. Randomness inside :math:`f` is replayed: pass an explicit
    dropout mask (:class:`~revgnn_dgl.nn.SharedDropout`, the paper's choice), or use ordinary
    ``nn.Dropout`` with ``preserve_rng_state=True`` (the default), which records the
    random-number state before each group and restores it for the recomputation (only for
    groups that actually drew random numbers, so a deterministic block stores nothing extra). Norms with
    running statistics (BatchNorm) update them once per forward pass: the recomputation restores
    them afterwards. A forward pass under :func:`torch.autocast` records its settings and the
    recomputation re-enters them (as :func:`torch.utils.checkpoint.checkpoint` does), so backward
    differentiates the function computed, in its precision. ``torch.autograd.grad`` works
    (parameters are explicit inputs of the autograd node, fixed at forward: switching a
    parameter's ``requires_grad`` off before backward leaves its gradient ``None``, as under
    ordinary autograd), and ``retain_graph=True`` allows repeated backward passes (the
    reconstructed activations are then kept). Differentiating the backward pass itself
    (``create_graph=True``) is refused with an error; use ``disable=True`` for higher-order
    gradients.

    **Extra arguments.** Positional tensors of dimension 2 or more whose last dimension equals
    the block's width are split into the :math:`C` groups (e.g. a shared dropout mask, an
    initial residual ``h0``); every other positional argument (1-D tensors such as an ``(E,)``
    edge weight included, whatever ``E``) and every keyword argument is passed whole to each
    group (e.g. an edge embedding that each group's conv projects itself). Tensor arguments that
    require grad, split or whole, get their gradients. A container (list, tuple, dict) holding
    tensors that require grad is refused: pass such tensors directly.

    Parameters
    ----------
    gnn_module : nn.Module
        The function :math:`f`, ``forward(graph, feat, *args, **kwargs)``, mapping width
        ``D / groups`` to ``D / groups``. It is deep-copied ``groups - 1`` times.
    groups : int
        Number of groups :math:`C \ge 2`.
    reinit_copies : bool
        Re-initialise the copies (``reset_parameters``) so groups start from different weights.
        ``False`` keeps identical copies (as the official code did; needed to reproduce it).
    preserve_rng_state : bool
        Record and replay the random-number state around each group, so stochastic layers inside
        :math:`f` recompute exactly.
    disable : bool
        Run the same computation with ordinary autograd (stores all activations): the baseline.
    keep_output : bool
        Never let the next reversible block free this block's output, so that it stays readable
        (see *Keeping intermediate outputs*); an attribute, which may be changed at any time.

    Examples
    --------
    >>> import dgl, torch
    >>> from revgnn_dgl.nn import GroupRevRes, GENConv
    >>> g = dgl.rand_graph(10, 40)
    >>> block = GroupRevRes(GENConv(8, 8, aggregator="max"), groups=2)
    >>> x = torch.randn(10, 16, requires_grad=True)
    >>> y = block(g, x * 1)
    >>> y.sum().backward()
    >>> torch.allclose(block.inverse(g, y.detach()), x.detach(), atol=1e-5)
    True
    """

    def __init__(
        self,
        gnn_module: nn.Module,
        groups: int = 2,
        reinit_copies: bool = True,
        preserve_rng_state: bool = True,
        disable: bool = False,
        keep_output: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(groups, int) or groups < 2:
            raise ConfigError(
                f"GroupRevRes needs at least 2 groups (got {groups!r}): with one group there is no coupling to invert."
            )
        self.groups = groups
        self.preserve_rng_state = preserve_rng_state
        self.disable = disable
        self.keep_output = keep_output
        modules = [gnn_module] + [copy.deepcopy(gnn_module) for _ in range(groups - 1)]
        if reinit_copies:
            for module in modules[1:]:
                _reset_parameters(module)
        self.gnn_modules = nn.ModuleList(modules)

    def extra_repr(self) -> str:
        keep = ", keep_output=True" if self.keep_output else ""
        return f"groups={self.groups}, disable={self.disable}, preserve_rng_state={self.preserve_rng_state}{keep}"

    # ----------------------------------------------------------------- public API
    def forward(self, graph: Graph, feat: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """Apply the block.

        Parameters
        ----------
        graph : DGLGraph or any
            The graph, passed unchanged to every group's function.
        feat : Tensor
            Node features of shape ``(N, D)``, with ``D`` divisible by ``groups``.
        *args, **kwargs
            Extra arguments of the wrapped module (see the class docstring for how they are split).

        Returns
        -------
        Tensor
            Shape ``(N, D)``.
        """
        self._check_feat(feat)
        spec, tensors = self._pack(feat.shape[-1], args, kwargs)
        params = self._grad_params()
        needs_grad = torch.is_grad_enabled() and (
            feat.requires_grad or bool(params) or any(t.requires_grad for t in tensors)
        )
        if self.disable or not needs_grad:
            return self._coupling(graph, feat, spec, tensors)
        out = _ReversibleFunction.apply(self, graph, spec, _can_free(feat), feat, *tensors, *params)
        if not self.keep_output:
            # Freeable by the next block. The storage's holders now (this tensor and autograd's
            # saved copy) are recorded: more of them there means another tensor aliases it.
            out._revgnn_block_output = _storage_refs(out)
        return out

    def inverse(self, graph: Graph, out: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """Reconstruct the block's input from its output (same extra arguments as ``forward``).

        Stochastic layers inside the wrapped module must be in eval mode or driven by an
        explicit mask, as the inverse cannot know the random numbers of an earlier call.
        """
        self._check_feat(out)
        spec, tensors = self._pack(out.shape[-1], args, kwargs)
        group_args, kw = self._group_args(spec, tensors)
        ys = out.chunk(self.groups, dim=-1)
        xs: List[Optional[Tensor]] = [None] * self.groups
        for i in range(self.groups - 1, -1, -1):
            inp = ys[i - 1] if i > 0 else _sum(xs[1:])
            xs[i] = ys[i] - self.gnn_modules[i](graph, inp, *group_args[i], **kw)
        return torch.cat(cast(List[Tensor], xs), dim=-1)  # every group filled above

    # ----------------------------------------------------------------- internals
    def _check_feat(self, feat: Tensor) -> None:
        if not isinstance(feat, Tensor) or feat.dim() < 2:
            raise GraphInputError(
                f"GroupRevRes expects node features of shape (num_nodes, channels), got {type(feat).__name__} {getattr(feat, 'shape', '')}."
            )
        if feat.shape[-1] % self.groups:
            raise GraphInputError(
                f"GroupRevRes: {feat.shape[-1]} channels cannot be split into {self.groups} equal groups; "
                "use a width divisible by the number of groups."
            )

    def _grad_params(self) -> List[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def _pack(self, channels: int, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[_CallSpec, List[Tensor]]:
        tensors: List[Tensor] = []
        split: List[bool] = []

        def slot(value: Any, name: str, may_split: bool) -> Any:
            if isinstance(value, Tensor):
                tensors.append(value)
                # Only matrices split: a 1-D (E,) edge weight with E equal to the width is no feature.
                split.append(may_split and value.dim() >= 2 and value.shape[-1] == channels)
                return _TensorSlot(len(tensors) - 1)
            if _holds_grad_tensor(value):
                raise GraphInputTypeError(
                    f"GroupRevRes: argument {name} is a {type(value).__name__} holding tensors that require grad; "
                    "their gradients would be lost. Pass such tensors as separate arguments."
                )
            return value

        packed_args = tuple(slot(a, f"#{i + 2}", True) for i, a in enumerate(args))
        packed_kwargs = {k: slot(v, repr(k), False) for k, v in kwargs.items()}
        return _CallSpec(packed_args, packed_kwargs, tuple(split), len(tensors)), tensors

    def _group_args(
        self, spec: _CallSpec, tensors: Sequence[Tensor], groups: Optional[Sequence[int]] = None
    ) -> Tuple[List[Tuple[Any, ...]], Dict[str, Any]]:
        """Positional arguments of each group in ``groups`` (default: all), and the shared keyword arguments.

        The chunks carry autograd history back to ``tensors`` only if grad mode is on here.
        """
        pieces = [t.chunk(self.groups, dim=-1) if s else None for t, s in zip(tensors, spec.split)]

        def fill(value: Any, group: int) -> Any:
            if isinstance(value, _TensorSlot):
                piece = pieces[value]
                return piece[group] if piece is not None else tensors[value]
            return value

        chosen = range(self.groups) if groups is None else groups
        group_args = [tuple(fill(a, g) for a in spec.args) for g in chosen]
        kw = {k: fill(v, 0) for k, v in spec.kwargs.items()}
        return group_args, kw

    def _cuda_devices(self, x: Tensor) -> List[int]:
        return [x.device.index if x.device.index is not None else torch.cuda.current_device()] if x.is_cuda else []

    def _coupling(
        self,
        graph: Graph,
        x: Tensor,
        spec: _CallSpec,
        tensors: Sequence[Tensor],
        rng_record: Optional[List[Optional[_RngState]]] = None,
    ) -> Tensor:
        """The forward coupling; with ``rng_record``, append each group's RNG state to it."""
        group_args, kw = self._group_args(spec, tensors)
        xs = x.chunk(self.groups, dim=-1)
        prev = _sum(xs[1:])
        ys = []
        for i, module in enumerate(self.gnn_modules):
            state = _RngState.capture(self._cuda_devices(x)) if rng_record is not None else None
            prev = xs[i] + module(graph, prev, *group_args[i], **kw)
            ys.append(prev)
            if rng_record is not None:
                # Keep the state only if the function drew random numbers: a deterministic f
                # (e.g. with an explicit SharedDropout mask) then stores nothing per layer.
                rng_record.append(None if state is None or state.is_current() else state)
        return torch.cat(ys, dim=-1)

    def _reverse_and_backprop(
        self,
        graph: Graph,
        y: Tensor,
        grad_y: Tensor,
        spec: _CallSpec,
        leaves: List[Tensor],
        params: List[nn.Parameter],
        rng_states: Optional[List[Optional[_RngState]]],
        autocast: Optional[_AutocastState] = None,
    ) -> Tuple[Tensor, Tensor, List[Optional[Tensor]], List[Optional[Tensor]]]:
        """Reconstruct the input from ``y`` and back-propagate ``grad_y``, one group at a time.

        With :math:`G_i` the gradient reaching :math:`X'_i`: :math:`G_C = \\partial L/\\partial Y_C`,
        :math:`G_{i-1} = \\partial L/\\partial Y_{i-1} + J_{f_i}^T G_i`; then
        :math:`\\partial L/\\partial X_1 = G_1` and :math:`\\partial L/\\partial X_k = G_k + J_{f_1}^T G_1`
        for :math:`k \\ge 2`. Each :math:`f_i` is evaluated once, and its graph freed before the next,
        under the random-number state and the autocast settings of the forward pass. ``params``
        are the parameters to differentiate (a gradient for each, in order).
        """
        C = self.groups
        ys = y.chunk(C, dim=-1)
        gs = grad_y.chunk(C, dim=-1)
        group_args, kw = self._group_args(spec, leaves)
        # A split argument that requires grad is chunked again per group, with grad on: chunks cut
        # here, under no_grad, are cut off from the leaves (its gradient would be lost).
        rechunk = any(s and t.requires_grad for t, s in zip(leaves, spec.split))
        replay_autocast = autocast is not None or torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()
        grad_leaves: List[Optional[Tensor]] = [None] * len(leaves)
        grad_params: List[Optional[Tensor]] = [None] * len(params)
        wanted_leaves = [i for i, t in enumerate(leaves) if t.requires_grad]
        param_index = {id(p): i for i, p in enumerate(params)}
        xs: List[Optional[Tensor]] = [None] * C
        grad_xs: List[Optional[Tensor]] = [None] * C
        g_cur = gs[C - 1]
        for i in range(C - 1, -1, -1):
            module = self.gnn_modules[i]
            inp = (ys[i - 1] if i > 0 else _sum(xs[1:])).detach().requires_grad_(True)
            group_params = [p for p in module.parameters() if id(p) in param_index]
            state = rng_states[i] if rng_states is not None else None
            rng = state.replay() if state is not None else nullcontext()
            with torch.enable_grad(), rng, _AutocastState.replay(autocast) if replay_autocast else nullcontext():
                args_i = self._group_args(spec, leaves, groups=[i])[0][0] if rechunk else group_args[i]
                out = module(graph, inp, *args_i, **kw)
            xs[i] = ys[i] - out.detach()
            inputs = [inp] + group_params + [leaves[j] for j in wanted_leaves]
            grads = torch.autograd.grad(out, inputs, g_cur, allow_unused=True)
            del out
            grad_xs[i] = g_cur
            for p, g in zip(group_params, grads[1 : 1 + len(group_params)]):
                _accumulate(grad_params, param_index[id(p)], g)
            for j, g in zip(wanted_leaves, grads[1 + len(group_params) :]):
                _accumulate(grad_leaves, j, g)
            grad_inp = grads[0] if grads[0] is not None else torch.zeros_like(inp)
            if i > 0:
                g_cur = gs[i - 1] + grad_inp
            else:
                # X'_0 = X_2 + ... + X_C: its gradient reaches every group but the first.
                for k in range(1, C):
                    grad_xs[k] = grad_xs[k] + grad_inp
        filled, grad_filled = cast(List[Tensor], xs), cast(List[Tensor], grad_xs)  # every group filled above
        return torch.cat(filled, dim=-1), torch.cat(grad_filled, dim=-1), grad_leaves, grad_params

    @contextmanager
    def _frozen_running_stats(self) -> Iterator[None]:
        """Restore BatchNorm-style running statistics after the recomputation updated them."""
        norms = [
            m
            for m in self.modules()
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats and m.training
        ]
        saved = [{k: b.clone() for k, b in m.named_buffers(recurse=False) if b is not None} for m in norms]
        try:
            yield
        finally:
            for m, buffers in zip(norms, saved):
                for k, b in buffers.items():
                    getattr(m, k).copy_(b)


def _sum(tensors: Sequence[Optional[Tensor]]) -> Tensor:
    """The sum of the groups' tensors, all filled by the time it is called."""
    total = cast(Tensor, tensors[0])
    for t in tensors[1:]:
        total = total + cast(Tensor, t)
    return total


def _accumulate(grads: List[Optional[Tensor]], index: int, grad: Optional[Tensor]) -> None:
    if grad is not None:
        grads[index] = grad if grads[index] is None else grads[index] + grad


def _holds_grad_tensor(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, Tensor) and v.requires_grad or _holds_grad_tensor(v) for v in value)
    if isinstance(value, dict):
        return _holds_grad_tensor(list(value.values()))
    return False


def _reset_parameters(module: nn.Module) -> None:
    """Re-initialise a module: its own ``reset_parameters`` or, failing that, its children's."""
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
        return
    reset = [m for m in module.modules() if m is not module and hasattr(m, "reset_parameters")]
    has_params = any(True for _ in module.parameters())
    if has_params and not reset:
        warnings.warn(
            f"GroupRevRes: {type(module).__name__} has no reset_parameters(), so its copies start with identical weights; "
            "pass reinit_copies=False to silence this.",
            stacklevel=3,
        )
    for m in reset:
        m.reset_parameters()


def keep_outputs(module: nn.Module, keep: bool = True) -> nn.Module:
    """Set ``keep_output`` on every :class:`GroupRevRes` inside ``module``; returns ``module``.

    With ``keep=True`` every block output stays readable after the next block ran (for jumping
    knowledge or a readout of all layers), at one activation of memory per block, the memory of
    ordinary autograd's outputs; results are unchanged. ``keep=False`` frees them again.

    Examples
    --------
    >>> import torch
    >>> from revgnn_dgl.nn.grouprevres import GroupRevRes, keep_outputs
    >>> class Mix(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = torch.nn.Linear(2, 2)
    ...     def forward(self, graph, x):
    ...         return torch.tanh(self.lin(graph @ x))
    >>> blocks = keep_outputs(torch.nn.ModuleList(GroupRevRes(Mix(), 2) for _ in range(3)))
    >>> adj, h = torch.eye(5), torch.randn(5, 4, requires_grad=True) * 1
    >>> outs = []
    >>> for block in blocks:
    ...     h = block(adj, h)
    ...     outs.append(h)
    >>> torch.cat(outs, -1).shape  # every layer's output is still there
    torch.Size([5, 12])
    """
    for m in module.modules():
        if isinstance(m, GroupRevRes):
            m.keep_output = keep
    return module
