"""The header of a safetensors file, read without trusting it (for :mod:`.checkpoint`).

The length prefix, the JSON (strict, bounded), and each tensor's dtype, shape and byte span are
checked against the file's size and each other before anything is read or allocated.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Dict, Tuple, Union

from ..errors import CheckpointError
from ..files import strict_json

PathLike = Union[str, "os.PathLike[str]"]

#: The header-metadata key under which our JSON configuration is stored.
METADATA_KEY = "revgnn_dgl"
#: Version of the JSON configuration; bump on incompatible changes (2: ``sha256`` covers the header).
FORMAT_VERSION = 2
#: The older version still read, only from files whose whole SHA-256 is pinned (the bundled weights).
PINNED_ONLY_VERSIONS = frozenset({1})
#: Arguments that do not change a model's weights, so a checkpoint fits a model that differs in them.
WEIGHT_NEUTRAL_ARGUMENTS = frozenset({"dropout", "disable", "reinit_groups"})

# A safetensors header larger than this is certainly not one (the format itself caps it at 100 MB).
_MAX_HEADER_BYTES = 100_000_000
# safetensors dtypes torch reads here, and their element sizes.
_DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_MAX_DIMS = 16


def read_header(path: Path) -> Dict[str, Any]:
    """Parse and validate the safetensors header ourselves, for precise error messages."""
    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} does not exist.")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path {path} is not a file.")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is not a safetensors file: it has only {size} bytes (truncated or empty).")
        (header_len,) = struct.unpack("<Q", head)
        first = fh.read(1)
        if header_len > _MAX_HEADER_BYTES or first not in (b"{", b""):
            # torch.save writes a zip ("PK") or a raw pickle (0x80): say how to convert it.
            hint = (
                " It looks like a torch .pth file; import it with `revgnn-dgl zoo import`."
                if head[:2] == b"PK" or head[:1] == b"\x80"
                else ""
            )
            raise CheckpointError(
                f"{path} is not a safetensors file (it does not start with a safetensors header).{hint}"
            )
        fh.seek(8)
        if 8 + header_len > size:
            raise CheckpointError(
                f"{path} is truncated: its header needs {header_len} bytes but the file has {size} bytes in all."
            )
        raw = fh.read(header_len)
    try:
        header = strict_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{path} is not a safetensors file, or its header is corrupted (not JSON).") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a safetensors file, or its header is corrupted.")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise CheckpointError(f"{path} has a corrupted header: its __metadata__ is not a map of strings to strings.")
    spans = []
    for key, info in header.items():
        if key != "__metadata__":
            spans.append((*_tensor_span(path, key, info), key))
    # The tensors tile the data area exactly, in order, as safetensors writes them.
    data_end = 0
    for start, end, key in sorted(spans):
        if start != data_end:
            raise CheckpointError(
                f"{path} has a corrupted header: tensor {key!r:.80} does not start where the previous one ends."
            )
        data_end = end
    data_size = size - 8 - header_len
    if data_size < data_end:
        raise CheckpointError(
            f"{path} is truncated: its tensors need {data_end} bytes of data but only {data_size} are present."
        )
    if data_size > data_end:
        raise CheckpointError(f"{path} is corrupted: {data_size - data_end} unexpected bytes follow its tensor data.")
    return header


def _tensor_span(path: Path, key: str, info: Any) -> Tuple[int, int]:
    """A header entry's ``(start, end)`` byte offsets, after checking its dtype, shape and size agree."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path} has a corrupted header (entry {key!r:.80} {what}).")

    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise bad("is not a map of dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in _DTYPE_SIZES:
        raise bad(f"has dtype {str(dtype)[:20]!r}, not one of {', '.join(_DTYPE_SIZES)}")
    if not isinstance(shape, list) or len(shape) > _MAX_DIMS or not all(_is_count(n) for n in shape):
        raise bad("has no valid shape")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(n) for n in offsets):
        raise bad("has no valid data offsets")
    start, end = offsets
    numel = 1
    for n in shape:
        numel *= n
    if end < start or end - start != numel * _DTYPE_SIZES[dtype]:
        raise bad(f"needs {numel * _DTYPE_SIZES[dtype]} bytes for shape {shape} but its offsets span {end - start}")
    return start, end


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62
