"""A reader for ``torch.save`` files that never runs code from the file.

``torch.load(path, weights_only=True)`` is not safe on torch <= 2.5: it hands
a TorchScript archive to ``torch.jit.load``, which runs the archive's
scripted ``__setstate__`` (CVE-2025-32434), so a crafted ``.pt`` can write
files or worse. :func:`load_torch_file` never calls ``torch.load`` or
``torch.jit.load``. It opens the file itself and reads both layouts
``torch.save`` writes:

* the zip archive (torch >= 1.6): ``<prefix>/data.pkl``, one record
  ``<prefix>/data/<key>`` per storage, ``<prefix>/byteorder`` and
  ``<prefix>/version``;
* the legacy stream (``_use_new_zipfile_serialization=False``): magic
  number, protocol and system-info pickles, the object pickle, the pickled
  list of storage keys, then each storage as an int64 element count and its
  raw little-endian bytes.

TorchScript archives (``constants.pkl``, ``code/``, ``bytecode.pkl`` or
``.data/version`` members) are refused before anything is unpickled. The
pickle is read by an unpickler whose ``find_class`` resolves only tensor and
parameter rebuilds, storage types, ``torch.device``/``torch.Size``/dtypes,
``collections.OrderedDict`` and plain containers; its ``persistent_load``
builds each storage from the file's own bytes. Every failure is one line
starting with the file's path: :class:`UnsafeFileError` when the file was
refused because loading it could run code, :class:`TorchFileError` when it
is not a readable torch file (and what it seems to be instead).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DatasetError
from .safe_pickle import AllowListMixin, RefusedGlobalError
from .torch_pickle import (
    _ALLOWED,
    _ELEMENT_SIZE,
    _LEGACY_MAGIC,
    _LEGACY_PROTOCOL,
    _MAX_INT,
    _MAX_ZIP_VERSION,
    _TORCHSCRIPT_MEMBERS,
    _VIEW_BUDGET,
    _one_line,
    _Problem,
    _StorageType,
    _ViewBudget,
)

__all__ = ["TorchFileError", "UnsafeFileError", "load_torch_file"]


class TorchFileError(DatasetError):
    """A file is not a ``torch.save`` file this reader can load.

    The one-line message starts with the file's path and says what the
    file seems to be (text, JSON, safetensors, NumPy, a damaged archive...).
    """


class UnsafeFileError(TorchFileError):
    """A file was refused because loading it could run code: a TorchScript
    archive, or a pickle that names a global outside the allow-list."""


# ---------------------------------------------------------------- unpickler
class _TorchUnpickler(AllowListMixin, pickle._Unpickler):
    """The pure-Python unpickler with an allow-list, storages from the file,
    ``BUILD`` limited to an OrderedDict's attributes and no extension codes.

    The pure-Python class is used so that these opcodes can be restricted;
    the object pickle of a torch file is small (tensor data lies outside it).
    """

    allowed = _ALLOWED
    allowed_description = (
        "dense tensors, parameters, storages, torch.device/Size/dtypes, OrderedDicts and plain containers"
    )
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: io.BytesIO, storages: _ZipStorages | _LegacyStorages | None) -> None:
        super().__init__(file, encoding="utf-8")
        self._storages = storages

    def persistent_load(self, pid: Any) -> Any:
        if self._storages is None:
            raise _Problem("a persistent id outside a torch file's object pickle")
        return self._storages.load(pid)

    def _load_build(self) -> None:
        # A state dict's OrderedDict carries its `_metadata` this way; nothing
        # else torch.save writes needs BUILD, which may call __setstate__.
        stack = self.stack  # type: ignore[attr-defined]  # pickle._Unpickler's own, set in load()
        state = stack.pop()
        inst = stack[-1]
        if type(inst) is not OrderedDict or type(state) is not dict or not all(type(k) is str for k in state):
            raise _Problem(f"the pickle sets the state of a {type(inst).__name__}, which torch.save never does")
        inst.__dict__.update(state)

    def _refuse_extension(self) -> None:
        raise _Problem("the pickle uses the copyreg extension registry, which torch.save never does")

    dispatch[pickle.BUILD[0]] = _load_build  # type: ignore[assignment]  # a subclass's handler
    for _op in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op[0]] = _refuse_extension  # type: ignore[assignment]
    del _op


def _storage_pid(pid: Any, length: int) -> tuple[str, torch.dtype, int, Any]:
    """Check a storage persistent id; return its key, dtype, size in bytes and
    the fields after the element count."""
    if type(pid) is not tuple or len(pid) != length or pid[0] != "storage":
        raise _Problem(f"the pickle holds a persistent id (a {type(pid).__name__}) that is not a torch storage record")
    _, storage_type, key, location, numel, *rest = pid
    if isinstance(key, bytes):  # written by Python 2
        key = key.decode("ascii")
    if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
        raise _Problem("the pickle holds a storage record of unknown type or key")
    if not isinstance(location, (str, bytes)) or type(numel) is not int or not 0 <= numel < _MAX_INT:
        raise _Problem(f"storage {key!r:.20} has no valid location or element count")
    return key, storage_type.dtype, numel * _ELEMENT_SIZE[storage_type.dtype], rest


def _typed(untyped: torch.UntypedStorage, dtype: torch.dtype) -> torch.storage.TypedStorage:
    return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _check_bool_bytes(raw: bytes, dtype: torch.dtype, key: str) -> None:
    if dtype is torch.bool and raw and int(np.frombuffer(raw, np.uint8).max()) > 1:
        raise _Problem(f"bool storage {key!r:.20} holds bytes other than 0 and 1")


class _ZipStorages:
    """Storages of a zip archive, read from its ``data/<key>`` records on first use."""

    def __init__(self, zf: zipfile.ZipFile, prefix: str, big_endian: bool, file_size: int) -> None:
        self.zf, self.prefix, self.big_endian, self.file_size = zf, prefix, big_endian, file_size
        self.loaded: dict[str, tuple[torch.UntypedStorage, torch.dtype]] = {}

    def load(self, pid: Any) -> torch.storage.TypedStorage:
        key, dtype, nbytes, _ = _storage_pid(pid, 5)
        if key not in self.loaded:
            try:
                info = self.zf.getinfo(f"{self.prefix}/data/{key}")
            except KeyError:
                raise _Problem(f"its storage record data/{key:.20} is missing") from None
            if info.file_size != nbytes:
                raise _Problem(
                    f"storage record data/{key:.20} holds {info.file_size} bytes where the pickle expects {nbytes}"
                )
            raw = _read_member(self.zf, info, self.file_size)
            if self.big_endian:
                raw = _to_little_endian(raw, dtype)
            _check_bool_bytes(raw, dtype, key)
            self.loaded[key] = (_storage_from_bytes(raw), dtype)
        untyped, first_dtype = self.loaded[key]
        if untyped.nbytes() != nbytes or (dtype != first_dtype and nbytes):
            raise _Problem(f"storage {key!r:.20} is used with two different sizes or dtypes")
        return _typed(untyped, dtype)


class _LegacyStorages:
    """Storages of the legacy stream: allocated while the object pickle is read
    (their bytes come after it), filled by :meth:`fill`."""

    def __init__(self, budget: int) -> None:
        self.budget = budget  # bytes left in the file: no storage may need more
        self.loaded: dict[str, tuple[torch.UntypedStorage, torch.dtype]] = {}

    def load(self, pid: Any) -> torch.storage.TypedStorage:
        key, dtype, nbytes, (view_metadata,) = _storage_pid(pid, 6)
        if view_metadata is not None:
            raise _Problem("it holds storage views, a layout of torch < 0.4 this reader does not support")
        if key not in self.loaded:
            if nbytes > self.budget:
                raise _Problem(f"storage {key!r:.20} needs {nbytes} bytes, more than the file holds")
            self.budget -= nbytes
            self.loaded[key] = (torch.UntypedStorage(nbytes), dtype)
        untyped, first_dtype = self.loaded[key]
        if untyped.nbytes() != nbytes or (dtype != first_dtype and nbytes):
            raise _Problem(f"storage {key!r:.20} is used with two different sizes or dtypes")
        return _typed(untyped, dtype)

    def fill(self, buf: io.BytesIO, keys: Any) -> None:
        """Copy each storage's bytes, in the order of the pickled key list."""
        if type(keys) is not list or len(set(map(str, keys))) != len(keys) or set(keys) != set(self.loaded):
            raise _Problem("its list of storage keys does not match the storages its pickle uses")
        for key in keys:
            untyped, dtype = self.loaded[key]
            head = buf.read(8)
            if len(head) != 8:
                raise _Problem(f"it is truncated: storage {key!r:.20} is missing")
            (numel,) = struct.unpack("<q", head)
            nbytes = untyped.nbytes()
            if numel * _ELEMENT_SIZE[dtype] != nbytes:
                raise _Problem(f"storage {key!r:.20} holds {numel} elements where the pickle expects a different count")
            raw = buf.read(nbytes)
            if len(raw) != nbytes:
                raise _Problem(f"it is truncated inside storage {key!r:.20}")
            _check_bool_bytes(raw, dtype, key)
            if nbytes:
                untyped.copy_(_storage_from_bytes(raw))


def _storage_from_bytes(raw: bytes) -> torch.UntypedStorage:
    if not raw:
        return torch.UntypedStorage(0)
    return torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8)


def _to_little_endian(raw: bytes, dtype: torch.dtype) -> bytes:
    # A complex number is two floats, each swapped on its own (as torch does).
    unit = _ELEMENT_SIZE[dtype] // (2 if dtype.is_complex else 1)
    return raw if unit == 1 else np.frombuffer(raw, np.dtype(f"u{unit}")).byteswap().tobytes()


def _unpickle(buf: io.BytesIO, storages: _ZipStorages | _LegacyStorages | None) -> Any:
    """Run the restricted unpickler; a refused global becomes an unsafe-file problem."""
    token = _VIEW_BUDGET.set(_ViewBudget())  # the views of this load, bounded by its storages' bytes
    try:
        return _TorchUnpickler(buf, storages).load()
    except RefusedGlobalError as err:
        raise _Problem(
            f"it is a pickle that needs {err.global_name}, which could run code when loaded (only "
            f"{_TorchUnpickler.allowed_description} are allowed)",
            unsafe=True,
        ) from None
    finally:
        _VIEW_BUDGET.reset(token)


# ---------------------------------------------------------------- the layouts
def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int) -> bytes:
    if info.compress_type != zipfile.ZIP_STORED:
        raise _Problem(
            f"its member {info.filename!r:.60} is compressed, which torch.save never does (an altered archive?)"
        )
    if info.file_size > file_size:
        raise _Problem(f"its member {info.filename!r:.60} claims more bytes than the file holds")
    return zf.read(info)


def _load_zip(file: io.BufferedReader, file_size: int) -> Any:
    try:
        zf = zipfile.ZipFile(file)
    except Exception as err:  # zipfile raises many types on a damaged archive
        raise _Problem(f"it is a damaged zip archive ({_one_line(err)})") from None
    with zf:
        names = zf.namelist()
        if not names:
            raise _Problem("it is an empty zip archive, not a torch file")
        inner = [name.split("/", 1)[-1] for name in names]
        if any(n in _TORCHSCRIPT_MEMBERS or n.startswith("code/") for n in inner):
            raise _Problem(
                "it is a TorchScript archive, which can run code when loaded; "
                "save a state dict with torch.save instead",
                unsafe=True,
            )
        prefix = names[0].split("/", 1)[0]
        if f"{prefix}/data.pkl" not in names:
            if any(name.endswith(".npy") for name in names):
                raise _Problem("it is a NumPy .npz archive, not a torch file")
            raise _Problem("it is a zip archive without data.pkl, not a file written by torch.save")
        try:
            return _load_zip_records(zf, prefix, file_size)
        except _Problem:
            raise
        except Exception as err:  # a damaged archive or pickle raises many types
            raise _Problem(f"it is a damaged torch archive ({type(err).__name__}: {_one_line(err)})") from None


def _load_zip_records(zf: zipfile.ZipFile, prefix: str, file_size: int) -> Any:
    def record(name: str) -> bytes | None:
        try:
            info = zf.getinfo(f"{prefix}/{name}")
        except KeyError:
            return None
        return _read_member(zf, info, file_size)

    version = record("version")
    if version is None:
        raise _Problem("its version record is missing (a damaged torch archive?)")
    if not version.strip().isdigit() or not 1 <= int(version.strip()) <= _MAX_ZIP_VERSION:
        raise _Problem(f"its format version {version[:20]!r} is not one torch.save writes")
    byteorder = record("byteorder")  # absent in files of torch < 2.1: little-endian
    if byteorder not in (None, b"little", b"big"):
        raise _Problem(f"its byteorder record {byteorder[:20]!r} is neither 'little' nor 'big'")
    pickled = record("data.pkl")
    if pickled is None:
        raise _Problem("its data.pkl record is missing (a damaged torch archive?)")
    storages = _ZipStorages(zf, prefix, byteorder == b"big", file_size)
    return _unpickle(io.BytesIO(pickled), storages)


def _load_stream(data: bytes) -> Any:
    """A file that is not a zip archive: the legacy torch stream, or what else it is."""
    if not data:
        raise _Problem("it is empty (0 bytes), not a torch file")
    known = _known_binary_format(data)
    if known:
        raise _Problem(f"it is {known}, not a torch file")
    buf = io.BytesIO(data)
    try:
        first = _unpickle(buf, None)
    except Exception as err:  # not a pickle, or a damaged one
        if isinstance(err, _Problem) and err.unsafe:
            raise
        if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise _Problem(f"it is a damaged pickle ({type(err).__name__}: {_one_line(err)})") from None
        raise _Problem(_describe_other(data)) from None
    if type(first) is int and first == _LEGACY_MAGIC:
        return _load_legacy(buf, len(data))
    raise _Problem(f"it is a Python pickle (of type {type(first).__name__}), not a file written by torch.save")


def _load_legacy(buf: io.BytesIO, file_size: int) -> Any:
    try:
        protocol = _unpickle(buf, None)
        if type(protocol) is not int or protocol != _LEGACY_PROTOCOL:
            raise _Problem("it is a legacy torch file of a protocol this reader does not know")
        if type(_unpickle(buf, None)) is not dict:  # system info, unused: storages are little-endian
            raise _Problem("its system-info record is not a dict")
        storages = _LegacyStorages(file_size - buf.tell())
        result = _unpickle(buf, storages)
        storages.fill(buf, _unpickle(buf, None))
        return result
    except _Problem:
        raise
    except Exception as err:  # a damaged stream raises many types
        raise _Problem(f"it is a damaged legacy torch file ({type(err).__name__}: {_one_line(err)})") from None


def _known_binary_format(data: bytes) -> str | None:
    """Name a common non-torch binary format from the first bytes, else None."""
    if data.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array"
    if len(data) > 9 and data[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", data[:8])
        if header_len <= len(data) - 8:
            try:
                if isinstance(json.loads(data[8 : 8 + header_len]), dict):
                    return "a safetensors file (read it with safetensors.torch.load_file)"
            except ValueError:
                pass
    if data.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file"
    if data.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file"
    if data[257:262] == b"ustar":
        return "a tar archive (the torch < 0.4 format, which this reader does not support)"
    return None


def _describe_other(data: bytes) -> str:
    """Say what a file that is neither a pickle nor a known binary format is."""
    head = data[:4096]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:  # a character cut at the 4096th byte is fine
        cut = len(data) > len(head) and err.start > len(head) - 4
        text = head[: err.start].decode("utf-8") if cut else ""
    if text and sum(c.isprintable() or c in "\t\n\r" for c in text) >= 0.95 * len(text):
        kind = "plain text"
        if len(data) <= 2**24:
            try:
                json.loads(data)
                kind = "JSON text"
            except ValueError:
                pass
        return f"it is {kind} (starting {text.strip()[:40]!r}), not a torch file"
    return f"it is not a torch file: unrecognised binary data starting {data[:8].hex(' ')}"


# ---------------------------------------------------------------------- API
def load_torch_file(path: str | Path, *, what: str = "file") -> Any:
    """Load a file written by ``torch.save`` without running code from it.

    Reads the zip and the legacy layout. Tensors come back on the CPU
    whatever device they were saved from, as dense tensors that share
    storages as they did when saved (views, offsets and strides kept);
    ``nn.Parameter`` objects stay parameters.

    Parameters
    ----------
    path : str or Path
        The ``.pt`` / ``.pth`` file.
    what : str
        What the file should be, for error messages (``"the HumLoc split"``).

    Returns
    -------
    object
        The saved object: tensors, parameters, storages, ``torch.device``,
        ``torch.Size``, dtypes, ``OrderedDict`` and plain Python containers
        and scalars.

    Raises
    ------
    UnsafeFileError
        The file is a TorchScript archive, or a pickle that needs a global
        outside the allow-list (loading it could run code).
    TorchFileError
        The file is missing, not a torch file (the message says what it
        seems to be), truncated or damaged.

    Examples
    --------
    >>> import tempfile, torch
    >>> path = Path(tempfile.mkdtemp()) / "split.pt"
    >>> torch.save({"train": torch.arange(3), "test": torch.tensor([3])}, path)
    >>> load_torch_file(path)
    {'train': tensor([0, 1, 2]), 'test': tensor([3])}
    >>> _ = path.write_text("train: 0 1 2")
    >>> try:
    ...     load_torch_file(path, what="the split")
    ... except TorchFileError as err:
    ...     print(str(err).replace(str(path), "<path>"))
    <path>: cannot load the split: it is plain text (starting 'train: 0 1 2'), not a torch file
    """
    path = Path(path)
    try:
        return _load(path)
    except _Problem as err:
        reason = " ".join(err.reason.split())  # one line, whatever a damaged file held
        if err.unsafe:
            raise UnsafeFileError(f"{path}: refused to load {what}: {reason}") from None
        raise TorchFileError(f"{path}: cannot load {what}: {reason}") from None


def _load(path: Path) -> Any:
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block open(), a device never end
            raise _Problem("it is not a regular file")
        file = open(path, "rb")
    except OSError as err:
        raise _Problem(f"cannot open it ({err.strerror or _one_line(err)})") from None
    with file:
        try:
            size = os.fstat(file.fileno()).st_size
            if file.read(4) in (b"PK\x03\x04", b"PK\x05\x06"):
                file.seek(0)
                return _load_zip(file, size)
            file.seek(0)
            data = file.read()
        except OSError as err:
            raise _Problem(f"cannot read it ({err.strerror or _one_line(err)})") from None
    return _load_stream(data)
