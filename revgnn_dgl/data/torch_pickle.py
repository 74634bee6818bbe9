"""What the pickle of a ``torch.save`` file may name, for :mod:`.safe_torch`: the allow-list.

Each allowed global is either inert (a dtype, a storage type that only carries its dtype) or
a rebuild of our own that checks its arguments (indices in range, no overlapping views, no
hooks, a bounded number of views) before it builds anything; :class:`_Problem` is why a file
cannot be loaded, raised by them and turned into one line with the path by the reader.
"""

from __future__ import annotations

import contextvars
import math
from collections import OrderedDict
from typing import Any

import torch

from .safe_pickle import PLAIN_GLOBALS

# torch.save's legacy stream starts with these two pickled integers.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# Members only TorchScript (torch.jit.save / mobile) archives hold.
_TORCHSCRIPT_MEMBERS = ("constants.pkl", "bytecode.pkl", ".data/version")
# Zip "version" records torch's reader accepts (torch.save writes 3).
_MAX_ZIP_VERSION = 10
# Bound on sizes, offsets and element counts, far above any real tensor.
_MAX_INT = 2**62

# Storage classes as pickles name them -> element dtype.
_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexDoubleStorage": torch.complex128,
    "ComplexFloatStorage": torch.complex64,
    "UntypedStorage": torch.uint8,
}
_DTYPES = tuple(dict.fromkeys(_STORAGE_DTYPES.values()))
_ELEMENT_SIZE = {dtype: torch.empty((), dtype=dtype).element_size() for dtype in _DTYPES}


class _StorageType:
    """What ``find_class`` returns for a storage class: its dtype, nothing callable."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name, self.dtype = name, dtype


class _Problem(Exception):
    """Why a file cannot be loaded; :func:`load_torch_file` adds the path."""

    def __init__(self, reason: str, unsafe: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.unsafe = reason, unsafe


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or ("the data ends too early" if isinstance(err, EOFError) else "no details")
    return text if len(text) <= 160 else text[:157] + "..."


# ----------------------------------------------------------------- rebuilds
def _index_tuple(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or not all(type(v) is int and 0 <= v < _MAX_INT for v in values):
        raise _Problem(f"a tensor's {what} is not a tuple of non-negative integers")
    return tuple(values)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> torch.Tensor:
    """``torch._utils._rebuild_tensor``: a dense tensor viewing a loaded storage,
    checked to lie inside it."""
    if type(storage) is not torch.storage.TypedStorage:
        raise _Problem("a tensor is rebuilt from something that is not a storage of the file")
    size, stride = _index_tuple(size, "size"), _index_tuple(stride, "stride")
    if len(size) != len(stride) or type(storage_offset) is not int or not 0 <= storage_offset < _MAX_INT:
        raise _Problem("a tensor's size, stride and offset do not fit together")
    if math.prod(size) >= _MAX_INT:
        raise _Problem(f"a tensor of size {size} is too large")
    untyped = storage._untyped_storage
    if all(size):  # a tensor with elements must lie inside its storage
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if (last + 1) * _ELEMENT_SIZE[storage.dtype] > untyped.nbytes():
            raise _Problem(f"a tensor of size {size} reaches past the end of its storage ({untyped.nbytes()} bytes)")
        _check_no_overlap(size, stride)
        _count_view(untyped, storage_offset, size, stride, _ELEMENT_SIZE[storage.dtype])
    return torch.empty((0,), dtype=storage.dtype).set_(untyped, storage_offset, size, stride)


#: How much more the tensors of a file may view than its storages hold: a tied weight and a slice of a
#: saved tensor overlap a little; a converter copies each view, so this bounds its memory by the file's.
_VIEW_FACTOR = 2


class _ViewBudget:
    """What one load's tensors ask for against what its storages hold: each view is dense and inside its
    storage, but many views of one storage (aliases) could still ask a converter for far more memory
    than the file holds (a 2 MB storage seen as 1,500 whole-storage tensors: 3 GB)."""

    def __init__(self) -> None:
        self.storages: set[int] = set()  # distinct storages seen (by address)
        self.views: set[tuple[Any, ...]] = set()  # distinct views (a tied weight counts once)
        self.view_bytes = self.held = 0

    def add(self, untyped: torch.UntypedStorage, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
            element: int) -> None:  # fmt: skip
        address = untyped.data_ptr() or id(untyped)
        if address not in self.storages:
            self.storages.add(address)
            self.held += untyped.nbytes()
        key = (address, offset, size, stride, element)
        if key in self.views:
            return
        self.views.add(key)
        self.view_bytes += math.prod(size) * element
        held = self.held
        if self.view_bytes > _VIEW_FACTOR * held:
            raise _Problem(
                f"its tensors view {self.view_bytes} bytes in all, more than {_VIEW_FACTOR} x the {held} bytes its "
                "storages hold: tensors alias one another's storage far more than a saved state dict does"
            )


_VIEW_BUDGET: contextvars.ContextVar[_ViewBudget | None] = contextvars.ContextVar("_VIEW_BUDGET", default=None)


def _count_view(untyped: torch.UntypedStorage, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                element: int) -> None:  # fmt: skip
    budget = _VIEW_BUDGET.get()
    if budget is not None:
        budget.add(untyped, offset, size, stride, element)


def _check_no_overlap(size: tuple[int, ...], stride: tuple[int, ...]) -> None:
    """Refuse a view whose elements alias each other (stride 0, or strides too small for the
    sizes): it could ask for far more elements than its storage holds (a 32 KB file for 64 GB
    once copied), and torch.save only writes such a view for an expanded tensor. A
    non-overlapping view, a slice or a transpose, holds at most its storage's elements."""
    extent = 1  # elements spanned by the smaller-stride dimensions
    for n, s in sorted(((n, s) for n, s in zip(size, stride) if n > 1), key=lambda d: d[1]):
        if s < extent:
            raise _Problem(
                f"a tensor of size {size} has strides {stride} whose elements overlap (stride 0 or too small); "
                "only views that do not alias their elements are read"
            )
        extent = s * (n - 1) + extent


def _check_no_hooks(backward_hooks: Any) -> None:
    # torch.save always writes an empty OrderedDict ("don't serialize hooks").
    if not isinstance(backward_hooks, dict) or backward_hooks:
        raise _Problem("a tensor carries backward hooks; torch.save never writes them")


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    metadata: Any = None,
) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2``, checked."""
    tensor = _rebuild_tensor(storage, storage_offset, size, stride)
    if type(requires_grad) is not bool:
        raise _Problem("a tensor's requires_grad is not a bool")
    _check_no_hooks(backward_hooks)
    if metadata:  # the conj / neg bits of a view, {'conj': True}
        if not isinstance(metadata, dict) or not all(
            k in ("conj", "neg") and type(v) is bool for k, v in metadata.items()
        ):
            raise _Problem("a tensor's metadata is not a dict of its conj/neg bits")
        torch._utils.set_tensor_metadata(tensor, dict(metadata))
    return tensor.requires_grad_(requires_grad)


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> torch.nn.Parameter:
    """``torch._utils._rebuild_parameter``, checked."""
    if type(data) is not torch.Tensor or type(requires_grad) is not bool:
        raise _Problem("a parameter is rebuilt from something that is not a tensor")
    _check_no_hooks(backward_hooks)
    return torch.nn.Parameter(data, requires_grad)


def _no_tensor_args(fn: Any) -> Any:
    """``fn`` refusing tensor and storage arguments: ``list(t)`` on a huge
    expanded tensor (stride 0, one stored element) would never end, and
    torch.save never pickles such a call."""

    def call(*args: Any) -> Any:
        if any(isinstance(a, (torch.Tensor, torch.storage.TypedStorage, torch.UntypedStorage)) for a in args):
            raise _Problem(f"the pickle calls {fn.__name__} on a tensor or storage, which torch.save never does")
        return fn(*args)

    call.__name__ = fn.__name__
    return call


_BUILTINS = {name: _no_tensor_args(obj) for name, obj in (("set", set), ("frozenset", frozenset), ("complex", complex))}

_ALLOWED: dict[tuple[str, str], Any] = {
    **{key: _no_tensor_args(obj) if isinstance(obj, type) else obj for key, obj in PLAIN_GLOBALS.items()},
    **{(module, name): obj for module in ("__builtin__", "builtins") for name, obj in _BUILTINS.items()},
    ("collections", "OrderedDict"): _no_tensor_args(OrderedDict),
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "device"): _no_tensor_args(torch.device),
    ("torch", "Size"): _no_tensor_args(torch.Size),
    **{("torch", str(dtype).split(".", 1)[1]): dtype for dtype in _DTYPES},
    **{
        (module, name): _StorageType(name, dtype)
        for module in ("torch", "torch.cuda", "torch.storage")
        for name, dtype in _STORAGE_DTYPES.items()
        if module != "torch.storage" or name == "UntypedStorage"
    },
}
