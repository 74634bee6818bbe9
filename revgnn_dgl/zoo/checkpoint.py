"""Checkpoints: one safetensors file holding the weights and, in its header, the model's configuration.

The format is a plain `safetensors <https://github.com/huggingface/safetensors>`_ file. Its header
metadata (a ``str -> str`` map) holds one key, ``revgnn_dgl``, whose value is a JSON object::

    {"format_version": 2, "name": "revgnn-deep", "architecture": "revgnn",
     "arguments": {...}, "data_sha256": "...", "metadata": {...free: metrics, training, dataset...},
     "sha256": "..."}

so a checkpoint alone is enough to rebuild its model (:func:`build_from_checkpoint`). Nothing is
ever unpickled: loading parses a JSON header and copies raw tensor bytes, and cannot run code.

``data_sha256`` digests every tensor's name, dtype, shape and bytes; ``sha256`` digests the
canonical JSON of everything else (architecture, arguments, metadata and ``data_sha256``), so
no byte the package reads back is outside a checksum. Both are required. Format 1 files (whose
metadata no checksum covered) are read only when the caller pins the whole file's SHA-256, as
the model cards of the bundled weights do.

>>> import tempfile, os
>>> from revgnn_dgl import create_model
>>> model = create_model("revgnn-deep", num_layers=2)
>>> path = save_checkpoint(os.path.join(tempfile.mkdtemp(), "m.safetensors"), model, metadata={"epoch": 3})
>>> ckpt = load_checkpoint(path)
>>> ckpt.architecture, ckpt.arguments["num_layers"], ckpt.metadata["epoch"]
('revgnn', 2, 3)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ZooError
from ..faults import fault_point
from ..files import strict_json, whole_file
from ..limits import format_bytes
from .architectures import build_from_config, check_sizes, estimate_state_bytes
from .safetensors_header import read_header

PathLike = Union[str, "os.PathLike[str]"]

#: The header-metadata key under which our JSON configuration is stored.
METADATA_KEY = "revgnn_dgl"
#: Version of the JSON configuration; bump on incompatible changes (2: ``sha256`` covers the header).
FORMAT_VERSION = 2
#: The older version still read, only from files whose whole SHA-256 is pinned (the bundled weights).
PINNED_ONLY_VERSIONS = frozenset({1})
#: Arguments that do not change a model's weights, so a checkpoint fits a model that differs in them.
WEIGHT_NEUTRAL_ARGUMENTS = frozenset({"dropout", "disable", "reinit_groups"})


@dataclass
class Checkpoint:
    """The content of a checkpoint file.

    Attributes
    ----------
    state_dict : dict of str to Tensor
        The weights, keyed like the model's ``state_dict()``.
    name : str or None
        The model card's name (``revgnn-deep``), if the model came from one.
    architecture : str
        The registered architecture (``revgnn``) that :func:`build_from_checkpoint` builds.
    arguments : dict
        The architecture's keyword arguments.
    metadata : dict
        Free JSON metadata: metrics, training information, dataset, provenance.
    format_version : int
        Version of the stored configuration; 0 for a foreign file read with ``allow_foreign``.
    path : Path or None
        The file it was read from.
    """

    state_dict: Dict[str, Tensor]
    name: Optional[str]
    architecture: str
    arguments: Dict[str, Any]
    metadata: Dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    path: Optional[Path] = None


# ------------------------------------------------------------------ saving
def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    *,
    architecture: Optional[str] = None,
    arguments: Optional[Mapping[str, Any]] = None,
    name: Optional[str] = None,
    metadata: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Save a model's weights and configuration to one safetensors file, atomically.

    The file is written to a temporary file in the same directory, flushed to disk and then
    renamed over ``path``: a crash or an error at any point leaves either the previous file or
    the complete new one, never a partial file (and no temporary file after an error).

    Parameters
    ----------
    path : str or PathLike
        Destination file (conventionally ``*.safetensors``); parent directories are created.
    model : nn.Module
        The model. Models from :func:`revgnn_dgl.create_model` carry their configuration in
        ``model.zoo_config``, which supplies the defaults of the next three arguments.
    architecture : str, optional
        The registered architecture that rebuilds the model.
    arguments : mapping, optional
        The architecture's keyword arguments (JSON-serialisable).
    name : str, optional
        The model card's name.
    metadata : mapping, optional
        Free JSON-serialisable metadata (metrics, training information, dataset...).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    CheckpointError
        If the configuration is unknown or not JSON-serialisable, or writing fails.
    """
    path = Path(path)
    zoo = getattr(model, "zoo_config", None) or {}
    architecture = architecture if architecture is not None else zoo.get("architecture")
    arguments = dict(arguments) if arguments is not None else dict(zoo.get("arguments") or {})
    name = name if name is not None else zoo.get("name")
    if architecture is None:
        raise CheckpointError(
            f"cannot save {type(model).__name__} to {path}: its architecture is unknown; pass architecture= and "
            "arguments= (models from create_model() carry them)."
        )
    tensors = _storable_state_dict(model.state_dict())
    config = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "architecture": architecture,
        "arguments": arguments,
        "data_sha256": tensors_sha256(tensors),
        "metadata": dict(metadata or {}),
    }
    try:
        # Through JSON first: the checksum is of what a reader parses back.
        config = json.loads(json.dumps(config, sort_keys=True, default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"cannot save {path}: the configuration or metadata is not JSON-serialisable ({err})."
        ) from None
    config["sha256"] = config_sha256(config)
    header = json.dumps(config, sort_keys=True)

    try:
        write_safetensors(path, tensors, {METADATA_KEY: header}, fault="checkpoint")
    except Exception as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"could not write checkpoint {path}: {' '.join(str(err).split())[:200]}") from err
    return path


def write_safetensors(path: Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str], fault: str = "") -> None:
    """Write a safetensors file whole or not at all, through the project's own temporary name.

    The bytes are serialised in memory and written to ``.NAME.tmpXXXXXXXX`` beside ``path``
    (created exclusively, so never through a link), fsynced, then renamed over ``path`` (which
    replaces a link there instead of writing where it points). Not ``safetensors.save_file``:
    it writes through a ``.tmpXXXXXX`` file of its own, which a kill mid-write leaves behind
    under a name no cleanup can tell from a user's file.
    """
    from safetensors.torch import save

    path.parent.mkdir(parents=True, exist_ok=True)
    data = save(dict(tensors), metadata=dict(metadata))
    # The temporary name matches the repository's ignore pattern ``*.safetensors.tmp*``.
    with whole_file(
        path, "wb", error=CheckpointError, before_rename=(lambda: fault_point(fault)) if fault else None
    ) as fh:
        fh.write(data)


def _storable_state_dict(state: Mapping[str, Any]) -> Dict[str, Tensor]:
    """Detached, contiguous tensors that own their storage (safetensors refuses shared storage)."""
    out: Dict[str, Tensor] = {}
    seen: set = set()
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(
                f"cannot save state-dict entry {key!r}: it is a {type(value).__name__}, not a tensor."
            )
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        # Tied weights, views of a larger buffer or non-contiguous tensors get their own copy.
        if (
            ptr in seen
            or not t.is_contiguous()
            or t.storage_offset() != 0
            or t.numel() * t.element_size() != storage.nbytes()
        ):
            t = t.clone(memory_format=torch.contiguous_format)
        elif t.numel():
            seen.add(ptr)
        out[key] = t
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON-serialisable")


# ------------------------------------------------------------------ loading
def load_checkpoint(path: PathLike, *, pinned_sha256: Optional[str] = None, allow_foreign: bool = False) -> Checkpoint:
    """Read a checkpoint file, validating its structure and contents.

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`save_checkpoint`.
    pinned_sha256 : str, optional
        The whole file's expected SHA-256 (a model card's ``checkpoint.sha256``). Only with it
        is a format-1 file read: its header has no checksum of its own.
    allow_foreign : bool
        Accept a plain safetensors file without this package's metadata (no checksum, no
        architecture): its ``format_version`` is then 0 and only :func:`load_weights`, which
        demands the model's exact keys, dtypes and shapes, can use it.

    Returns
    -------
    Checkpoint

    Raises
    ------
    CheckpointError
        If the file is missing, is not a safetensors file, is truncated or corrupted, lacks this
        package's metadata or either checksum, or was written by a newer format version.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    header = read_header(path)
    foreign = allow_foreign and METADATA_KEY not in (header.get("__metadata__") or {})
    config = {} if foreign else _parse_config(path, header, pinned_sha256)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"{path} is corrupted: safetensors cannot read it ({' '.join(str(err).split())[:200]})."
        ) from None
    if foreign:
        return Checkpoint(state_dict=tensors, name=None, architecture="", arguments={}, metadata={}, format_version=0,
                          path=path)  # fmt: skip
    if tensors_sha256(tensors) != config["data_sha256"]:
        raise CheckpointError(
            f"{path} is corrupted: its tensor data does not match the checksum stored when it was saved."
        )
    return Checkpoint(
        state_dict=tensors,
        name=config.get("name"),
        architecture=config["architecture"],
        arguments=dict(config.get("arguments") or {}),
        metadata=dict(config.get("metadata") or {}),
        format_version=int(config["format_version"]),
        path=path,
    )


def load_weights(
    model: nn.Module,
    path: PathLike,
    expected_architecture: Optional[str] = None,
    expected_arguments: Optional[Mapping[str, Any]] = None,
    allow_nonfinite: bool = False,
    pinned_sha256: Optional[str] = None,
    allow_foreign: bool = False,
) -> Checkpoint:
    """Load a checkpoint's weights into ``model`` after checking that it is the same model.

    Parameters
    ----------
    model : nn.Module
        The model to fill.
    path : str or PathLike
        A checkpoint file.
    expected_architecture : str, optional
        Refuse a checkpoint of another architecture.
    expected_arguments : mapping, optional
        Refuse a checkpoint whose arguments differ (except :data:`WEIGHT_NEUTRAL_ARGUMENTS` such
        as ``dropout``); arguments that only one side records are left to the key/shape check.
    allow_nonfinite : bool
        Load weights holding NaN or inf instead of refusing them.
    pinned_sha256 : str, optional
        The file's expected SHA-256, as :func:`load_checkpoint` takes it.
    allow_foreign : bool
        Also accept a plain safetensors state dict (no revgnn_dgl header), when its keys, dtypes
        and shapes are exactly the model's.

    Returns
    -------
    Checkpoint
        The checkpoint read (its metadata may interest the caller).

    Raises
    ------
    CheckpointError
        On any mismatch, naming the differing argument or the first offending key.
    """
    ckpt = load_checkpoint(path, pinned_sha256=pinned_sha256, allow_foreign=allow_foreign)
    if ckpt.format_version == 0:  # a foreign file: nothing to compare but the tensors themselves
        _load_state(model, ckpt, allow_nonfinite)
        return ckpt
    if expected_architecture is not None and ckpt.architecture != expected_architecture:
        raise CheckpointError(
            f"{ckpt.path} is a checkpoint of architecture {ckpt.architecture!r}"
            + (f" (model {ckpt.name!r})" if ckpt.name else "")
            + f", not {expected_architecture!r}."
        )
    if expected_arguments is not None:
        _check_arguments(ckpt, expected_arguments)
    _load_state(model, ckpt, allow_nonfinite)
    return ckpt


def build_from_checkpoint(path: PathLike, allow_nonfinite: bool = False) -> nn.Module:
    """Rebuild a model from a checkpoint alone: its architecture, arguments and weights.

    The header's arguments are first checked against the file's tensor shapes on a model built
    on the ``meta`` device (no memory), so a crafted header (``hidden: 1048576``) is refused
    before anything is allocated. The model is returned in eval mode, with ``zoo_config`` set as
    :func:`create_model` does and the checkpoint's free metadata in ``model.checkpoint_metadata``.
    """
    ckpt = check_checkpoint(path)
    try:
        model = build_from_config(ckpt.architecture, ckpt.arguments)
    except ZooError as err:
        raise CheckpointError(f"cannot rebuild the model of {ckpt.path}: {err}") from None
    model.zoo_config = {"name": ckpt.name, "architecture": ckpt.architecture, "arguments": dict(ckpt.arguments)}  # type: ignore[assignment]
    _load_state(model, ckpt, allow_nonfinite)
    model.checkpoint_metadata = ckpt.metadata  # type: ignore[assignment]
    return model.eval()


def check_checkpoint(path: PathLike) -> Checkpoint:
    """Read a checkpoint and check that its header rebuilds a model its tensors fit, allocating nothing.

    The sizes are bounded and the weights' memory estimated first (two shallow meta builds),
    so a header asking for far more than the file holds is refused before the full meta build,
    whose time grows with the depth.
    """
    ckpt = load_checkpoint(path)
    try:
        check_sizes(ckpt.architecture, ckpt.arguments)
        held = sum(t.numel() * t.element_size() for t in ckpt.state_dict.values())
        wanted = estimate_state_bytes(ckpt.architecture, ckpt.arguments)
        if wanted > 2 * held + (1 << 20):
            raise CheckpointError(
                f"{ckpt.path}: its header describes a model of about {format_bytes(wanted)} of weights, "
                f"but the file holds {format_bytes(held)}; it is refused."
            )
        with torch.device("meta"):
            shapes = build_from_config(ckpt.architecture, ckpt.arguments).state_dict()
        _check_state(shapes, ckpt)
    except CheckpointError:
        raise
    except ZooError as err:
        raise CheckpointError(f"cannot rebuild the model of {ckpt.path}: {err}") from None
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as err:  # an argument the builder cannot handle
        raise CheckpointError(f"cannot rebuild the model of {ckpt.path}: {' '.join(str(err).split())[:300]}") from None
    return ckpt


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in chunks (files can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------ internals
def config_sha256(config: Mapping[str, Any]) -> str:
    """The SHA-256 of a configuration's canonical JSON, without its own ``sha256`` entry."""
    body = {k: v for k, v in config.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


_CONFIG_TYPES = {
    "format_version": (int,),
    "name": (str, type(None)),
    "architecture": (str,),
    "arguments": (dict,),
    "metadata": (dict,),
    "data_sha256": (str,),
    "sha256": (str,),
}


def _parse_config(path: Path, header: Mapping[str, Any], pinned_sha256: Optional[str] = None) -> Dict[str, Any]:
    meta = header.get("__metadata__") or {}
    if METADATA_KEY not in meta:
        raise CheckpointError(
            f"{path} is a safetensors file but not a revgnn_dgl checkpoint (no {METADATA_KEY!r} metadata); "
            "official .pth files must first be converted with `revgnn-dgl zoo import`; a plain state dict of a "
            "zoo model loads with `--model NAME --checkpoint FILE --foreign` (exact keys, dtypes and shapes)."
        )
    try:
        config = strict_json(meta[METADATA_KEY])
    except (TypeError, ValueError, RecursionError) as err:
        why = "nested too deeply" if "deeply" in str(err) or isinstance(err, RecursionError) else "not JSON"
        raise CheckpointError(f"{path} has corrupted {METADATA_KEY!r} metadata ({why}).") from None
    if not isinstance(config, dict) or "architecture" not in config or "format_version" not in config:
        raise CheckpointError(f"{path} has incomplete {METADATA_KEY!r} metadata (no architecture or format_version).")
    version = config["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path} has corrupted {METADATA_KEY!r} metadata (format_version {version!r:.40}).")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses checkpoint format {version!r}, newer than this version of revgnn_dgl "
            f"reads ({FORMAT_VERSION}); upgrade revgnn_dgl."
        )
    required = set(_CONFIG_TYPES) - ({"sha256"} if version in PINNED_ONLY_VERSIONS else set())
    for key in sorted(required):
        if key not in config:
            raise CheckpointError(f"{path} has incomplete {METADATA_KEY!r} metadata: no {key!r}; it is refused.")
    for key, types in _CONFIG_TYPES.items():
        if key in config and not isinstance(config[key], types):
            raise CheckpointError(
                f"{path} has corrupted {METADATA_KEY!r} metadata: {key} is a {type(config[key]).__name__}, "
                f"not a {' or '.join('null' if t is type(None) else t.__name__ for t in types)}."
            )
    if version in PINNED_ONLY_VERSIONS:
        # Format 1 checksummed the tensors only: read it where the whole file's hash is pinned.
        if not pinned_sha256 or sha256_file(path) != str(pinned_sha256).lower():
            raise CheckpointError(
                f"{path} uses checkpoint format {version}, whose metadata no checksum covers; it is read only "
                f"where a model card pins the file's sha256. Save it again with this version of revgnn_dgl."
            )
    elif config["sha256"] != config_sha256(config):
        raise CheckpointError(
            f"{path} is corrupted: its {METADATA_KEY!r} metadata does not match the checksum stored when it was saved."
        )
    return config


def tensors_sha256(tensors: Mapping[str, Tensor]) -> str:
    """A digest of names, dtypes, shapes and bytes: catches corruption safetensors cannot see."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _check_arguments(ckpt: Checkpoint, expected: Mapping[str, Any]) -> None:
    # Compare through JSON so that a tuple in the model and a list in the file are equal.
    want = json.loads(json.dumps(dict(expected), default=_json_default))
    for key in sorted(set(want) & set(ckpt.arguments)):
        if key in WEIGHT_NEUTRAL_ARGUMENTS:
            continue
        if want[key] != ckpt.arguments[key]:
            raise CheckpointError(
                f"{ckpt.path} was saved with {key}={ckpt.arguments[key]!r} but the model has {key}={want[key]!r}"
                + (f" (checkpoint of {ckpt.name!r})" if ckpt.name else "")
                + "."
            )


def _load_state(model: nn.Module, ckpt: Checkpoint, allow_nonfinite: bool = False) -> None:
    _check_state(model.state_dict(), ckpt)
    if not allow_nonfinite:
        _check_finite(ckpt)
    model.load_state_dict(ckpt.state_dict, strict=True)


def _check_finite(ckpt: Checkpoint) -> None:
    """Refuse weights holding NaN or inf: a model built from them computes nothing useful."""
    bad = {k: int((~torch.isfinite(v)).sum()) for k, v in ckpt.state_dict.items() if v.is_floating_point()}
    bad = {k: n for k, n in bad.items() if n}
    if bad:
        first = min(bad, key=_natural_key)
        raise CheckpointError(
            f"{ckpt.path} holds {sum(bad.values())} non-finite value(s) (NaN or inf) in {len(bad)} weight(s), "
            f"the first being {first!r}; it is refused. Load it anyway with allow_nonfinite=True "
            "(--allow-nonfinite on the command line)."
        )


def _check_state(expected: Mapping[str, Tensor], ckpt: Checkpoint) -> None:
    """Same keys and shapes; ``expected`` may hold meta tensors (shapes only)."""
    got = ckpt.state_dict
    missing = _first(k for k in expected if k not in got)
    if missing is not None:
        n = sum(k not in got for k in expected)
        raise CheckpointError(f"{ckpt.path} lacks {n} weight(s) of the model, the first being {missing!r}.")
    unexpected = _first(sorted((k for k in got if k not in expected), key=_natural_key))
    if unexpected is not None:
        n = sum(k not in expected for k in got)
        raise CheckpointError(f"{ckpt.path} has {n} weight(s) the model does not, the first being {unexpected!r}.")
    for key, value in expected.items():
        if tuple(got[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{ckpt.path}: weight {key!r} has shape {tuple(got[key].shape)} in the checkpoint but "
                f"{tuple(value.shape)} in the model."
            )
        if got[key].dtype != value.dtype:  # load_state_dict would cast it silently
            raise CheckpointError(
                f"{ckpt.path}: weight {key!r} is {str(got[key].dtype).replace('torch.', '')} in the checkpoint but "
                f"{str(value.dtype).replace('torch.', '')} in the model; it is refused, not cast."
            )


def _first(items: Iterable[str]) -> Optional[str]:
    return next(iter(items), None)


def _natural_key(key: str) -> list:
    """Sort ``layers.2`` before ``layers.10`` (safetensors stores keys in plain string order)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in key.split(".")]
