"""What a reversible block keeps between its forward and its backward, and the guard of freed outputs.

Torch only, like :mod:`.grouprevres`, whose private helpers these are: the random-number and
autocast state each group's function ran under (replayed exactly when the backward rebuilds
it), the flat form of a call's arguments, and :class:`_FreedOutput`, the class a block's output
takes while its storage is freed.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import FreedOutputError


@dataclass
class _RngState:
    """The random-number state before one group's function ran, to replay it exactly."""

    cpu: Tensor
    cuda: Dict[int, Tensor]

    @classmethod
    def capture(cls, cuda_devices: Sequence[int]) -> "_RngState":
        return cls(torch.get_rng_state(), {d: torch.cuda.get_rng_state(d) for d in cuda_devices})

    def is_current(self) -> bool:
        """Whether the generators are still in this state (nothing drew random numbers since)."""
        return torch.equal(self.cpu, torch.get_rng_state()) and all(
            torch.equal(state, torch.cuda.get_rng_state(d)) for d, state in self.cuda.items()
        )

    @contextmanager
    def replay(self) -> Iterator[None]:
        # fork_rng restores the global state afterwards, so replaying is invisible to the caller.
        with torch.random.fork_rng(devices=list(self.cuda), enabled=True):
            torch.set_rng_state(self.cpu)
            for device, state in self.cuda.items():
                torch.cuda.set_rng_state(state, device)
            yield


@dataclass(frozen=True)
class _AutocastState:
    """The autocast settings a forward pass ran under, re-entered for the recomputation in
    backward (as ``torch.utils.checkpoint`` does), so that backward differentiates the very
    function the forward pass computed, in the same precision."""

    cuda: bool
    cuda_dtype: torch.dtype
    cpu: bool
    cpu_dtype: torch.dtype
    cache: bool

    @classmethod
    def capture(cls) -> Optional["_AutocastState"]:
        """The current settings, or ``None`` when autocast is off (the common case stores nothing)."""
        if not (torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()):
            return None
        return cls(
            torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype(),
            torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype(), torch.is_autocast_cache_enabled(),
        )  # fmt: skip

    @staticmethod
    def replay(state: Optional["_AutocastState"]) -> ContextManager[None]:
        """Enter ``state`` (``None``: autocast off, also when backward itself runs under autocast)."""
        if state is None:
            if not (torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()):
                return nullcontext()
            state = _AutocastState(False, torch.get_autocast_gpu_dtype(), False, torch.get_autocast_cpu_dtype(), True)
        return state._entered()

    @contextmanager
    def _entered(self) -> Iterator[None]:
        cuda = (
            torch.autocast("cuda", enabled=self.cuda, dtype=self.cuda_dtype, cache_enabled=self.cache)
            if torch.cuda.is_available()
            else nullcontext()
        )
        with cuda, torch.autocast("cpu", enabled=self.cpu, dtype=self.cpu_dtype, cache_enabled=self.cache):
            yield


# What a freed output still answers: metadata that does not depend on its data or its stand-in's shape.
_METADATA = frozenset(
    [
        getattr(Tensor, name).__get__
        for name in ("dtype", "device", "layout", "requires_grad", "grad_fn", "is_leaf", "is_cuda", "grad")
    ]
    + [Tensor.element_size, Tensor.__hash__]
)
# ... and its shape, as it was when freed (the object itself holds an empty stand-in meanwhile).
# (mypy does not see the getters' own descriptors on torch's C properties)
_SHAPE: Dict[Any, Callable[..., Any]] = {
    Tensor.shape.__get__: lambda shape, *a, **k: torch.Size(shape),  # type: ignore[attr-defined]
    Tensor.size: lambda shape, dim=None: torch.Size(shape) if dim is None else shape[dim],
    Tensor.dim: lambda shape: len(shape),
    Tensor.ndim.__get__: lambda shape, *a, **k: len(shape),  # type: ignore[attr-defined]
    Tensor.numel: lambda shape: math.prod(shape),
}


def _op_name(func: Callable) -> str:
    owner = getattr(func, "__self__", None)
    if getattr(func, "__name__", "") == "__get__" and owner is not None:  # an attribute getter
        return f"reading .{getattr(owner, '__name__', '?')}"
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    for prefix, public in (("_VariableFunctionsClass.", "torch."), ("TensorBase.", "Tensor.")):
        if name.startswith(prefix):
            return public + name[len(prefix) :]
    return name


class _FreedOutput(Tensor):
    """The class a block output takes while its storage is freed: any use raises
    :class:`~revgnn_dgl.errors.FreedOutputError`, never a crash.

    Freeing sets ``__class__`` of that very tensor object (the caller's variable, a list holding
    it, a hook's reference: all the same Python object) and refilling sets it back, so ordinary
    tensors pay nothing: no subclass and no check on the hot path, one attribute store per block.
    Meanwhile the object's data is an empty stand-in (``.data`` swapped, version counter kept),
    so that an autograd node that saved the output earlier and runs in a backward that skips
    the next block fails on a shape mismatch instead of reading freed memory.
    """

    @classmethod
    def __torch_function__(
        cls, func: Callable, types: Any, args: Sequence[Any] = (), kwargs: Optional[dict] = None
    ) -> Any:
        if func in _METADATA:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **(kwargs or {}))
        if func in _SHAPE and args and isinstance(args[0], _FreedOutput):
            shape = args[0]._revgnn_freed_shape  # type: ignore[attr-defined]  # set when freed
            return _SHAPE[func](shape, *args[1:], **(kwargs or {}))
        if func is Tensor.__repr__:
            with torch._C.DisableTorchFunctionSubclass():
                t = args[0]
                return f"<freed GroupRevRes output, shape {t._revgnn_freed_shape}, {t.dtype}, on {t.device}: see keep_output>"
        raise FreedOutputError(
            f"{_op_name(func)}: this tensor is the output of a GroupRevRes block, and the next reversible block "
            "freed its memory (the memory-saving backward rebuilds it; it is readable again after backward). "
            "To use it otherwise (a skip connection, jumping knowledge, a readout of intermediate layers, a hook), "
            "build that block with keep_output=True or call revgnn_dgl.nn.keep_outputs(model), "
            "at one activation of memory per kept block."
        )


def _storage_refs(x: Tensor) -> int:
    """How many tensors (and other holders) share ``x``'s storage; 0 where torch cannot tell.

    ``._cdata`` ends the temporary storage object's life before the count is taken.
    """
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    return int(use_count(x.untyped_storage()._cdata)) if use_count is not None else 0


@dataclass
class _CallSpec:
    """How to rebuild a call's ``*args, **kwargs`` from the flat list of its tensors."""

    args: Tuple[Any, ...]  # positional args, a tensor replaced by its index in the flat list
    kwargs: Dict[str, Any]
    split: Tuple[bool, ...]  # per flat tensor: chunked per group (True) or passed whole
    num_tensors: int


class _TensorSlot(int):
    """Index of a tensor argument in the flat tensor list."""


def _can_free(x: Tensor) -> bool:
    """Whether freeing ``x``'s storage after the forward pass is safe and refillable.

    Only the output of another reversible block (built without ``keep_output``) qualifies: it
    owns its whole storage, is reconstructed (and written back) by its successor's backward, and
    its Python object turns into a :class:`_FreedOutput` that refuses every use. A tensor that
    aliases it (a view, ``.detach()``, ``.data`` taken earlier) would read freed memory and is not
    guarded, so such an output is kept, with a warning.
    """
    refs = getattr(x, "_revgnn_block_output", None)
    if refs is None or type(x) is not Tensor:
        return False
    if not (
        x.is_contiguous() and x.storage_offset() == 0 and x.untyped_storage().nbytes() == x.numel() * x.element_size()
    ):
        return False
    if _storage_refs(x) != refs:
        warnings.warn(
            "GroupRevRes: the input, another reversible block's output, is also held by another tensor (a view, "
            ".detach() or .data of it), which freeing would leave pointing at freed memory; it is kept, so "
            "activation memory grows with depth. Build the block that made it with keep_output=True "
            "(or call revgnn_dgl.nn.keep_outputs) to keep it on purpose.",
            stacklevel=3,
        )
        return False
    return True
