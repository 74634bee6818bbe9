"""Import the official RevGNN checkpoints (``revgnn_deep.pth``, ``revgnn_wide.pth``).

The official code (``deep_gcns_torch/examples/ogb_eff/ogbn_proteins``) saves
``torch.save({"epoch", "model_state_dict", "optimizer_state_dict", "loss"})``. Its module tree
maps one-to-one onto ours:

=====================================================  ==============================================
official                                               revgnn_dgl
=====================================================  ==============================================
``node_one_hot_encoder``                               ``species_encoder``
``node_features_encoder``                              ``node_encoder``
``edge_encoder``                                       ``edge_encoder``
``gcns.{l}._fn.Fms.{g}.norm``                          ``layers.{l}.gnn_modules.{g}.norm``
``gcns.{l}._fn.Fms.{g}.gcn.mlp.{0,1,3}``               ``layers.{l}.gnn_modules.{g}.conv.mlp.{0,1,3}``
``gcns.{l}._fn.Fms.{g}.gcn.edge_encoder``              ``layers.{l}.gnn_modules.{g}.conv.edge_encoder``
``last_norm``                                          ``head_norm``
``node_pred_linear``                                   ``head``
=====================================================  ==============================================

Files are read by :func:`revgnn_dgl.data.safe_torch.load_torch_file`, never by ``torch.load``
(whose ``weights_only=True`` still runs TorchScript code on torch 2.2): tensors and plain
containers only, so a malicious file cannot run code; TorchScript archives and pickles that name
anything else are refused.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple, Union

from torch import Tensor, nn

from ..data.safe_torch import TorchFileError, load_torch_file
from ..errors import CheckpointError, ZooError
from ..files import file_lock
from ..limits import format_bytes
from .architectures import build_from_config
from .checkpoint import save_checkpoint, sha256_file
from .factory import create_model
from .registry import get_config

PathLike = Union[str, "os.PathLike[str]"]

# Top-level modules: official name -> ours, in the order the official RevGCN registers them.
_TOP_LEVEL = {
    "last_norm": "head_norm",
    "node_one_hot_encoder": "species_encoder",
    "node_features_encoder": "node_encoder",
    "edge_encoder": "edge_encoder",
    "node_pred_linear": "head",
}
# Inside one group's block: official sub-module -> ours.
_PER_GROUP = {
    "norm": "norm",
    "gcn.mlp.0": "conv.mlp.0",
    "gcn.mlp.1": "conv.mlp.1",
    "gcn.mlp.3": "conv.mlp.3",
    "gcn.edge_encoder": "conv.edge_encoder",
}


def official_key_map(num_layers: int, groups: int = 2) -> Dict[str, str]:
    """The official state-dict keys of a released RevGNN and the keys they become here.

    Parameters
    ----------
    num_layers : int
        Depth L (1001 for RevGNN-Deep, 448 for RevGNN-Wide).
    groups : int
        Channel groups C of each reversible block (2 in the releases).

    Returns
    -------
    dict
        ``official_key -> our_key``, in the official module order.

    Examples
    --------
    >>> official_key_map(1)["gcns.0._fn.Fms.1.gcn.mlp.3.weight"]
    'layers.0.gnn_modules.1.conv.mlp.3.weight'
    """
    mapping: Dict[str, str] = {}
    for layer in range(num_layers):
        for group in range(groups):
            for theirs, ours in _PER_GROUP.items():
                for param in ("weight", "bias"):
                    mapping[f"gcns.{layer}._fn.Fms.{group}.{theirs}.{param}"] = (
                        f"layers.{layer}.gnn_modules.{group}.{ours}.{param}"
                    )
    for theirs, ours in _TOP_LEVEL.items():
        for param in ("weight", "bias"):
            mapping[f"{theirs}.{param}"] = f"{ours}.{param}"
    return mapping


def convert_official_state_dict(
    state_dict: Mapping[str, Tensor],
    model: Union[str, Mapping[str, Any], nn.Module],
    **overrides: Any,
) -> "OrderedDict[str, Tensor]":
    """Rename an official RevGNN state dict to this package's keys, checking every key and shape.

    Parameters
    ----------
    state_dict : mapping
        The official ``model_state_dict`` (a ``module.`` prefix from DataParallel is removed).
    model : str, mapping or nn.Module
        The target: a model name or alias (built with :func:`create_model` and ``overrides``), a
        card-like mapping with ``architecture`` and ``arguments``, or a built model.
    **overrides
        Architecture arguments replacing the card's, when ``model`` is a name.

    Returns
    -------
    OrderedDict
        Our state dict, in the order of the model's ``state_dict()``, ready for
        ``load_state_dict(strict=True)``.

    Raises
    ------
    CheckpointError
        If the model is not a grouped reversible RevGNN, an official key is missing or
        unexpected, or a shape differs (the message names the first offending key).
    """
    target = _target_model(model, overrides)
    expected = target.state_dict()
    num_layers = getattr(target, "num_layers", None)
    layers = getattr(target, "layers", None)
    groups = getattr(layers[0], "groups", None) if layers is not None and len(layers) else None
    if (
        getattr(target, "connection", None) != "reversible"
        or groups is None
        or layers is None
        or len(layers) != num_layers
    ):
        raise CheckpointError(
            f"official RevGNN checkpoints convert only to a reversible RevGNN with one block per layer, "
            f"not to {type(target).__name__} (connection={getattr(target, 'connection', None)!r})."
        )
    state = _strip_prefix(state_dict, "module.")
    key_map = official_key_map(num_layers, groups)

    missing = [k for k in key_map if k not in state]
    if missing:
        raise CheckpointError(
            f"the official state dict lacks {len(missing)} key(s) of a {num_layers}-layer, {groups}-group RevGNN, "
            f"the first being {missing[0]!r}; is it a checkpoint of another depth or model?"
        )
    unexpected = [k for k in state if k not in key_map]
    if unexpected:
        raise CheckpointError(
            f"the official state dict has {len(unexpected)} key(s) that a {num_layers}-layer RevGNN does not, "
            f"the first being {unexpected[0]!r}; is it a checkpoint of a deeper model or other options?"
        )
    provided = set(key_map.values())
    ours_needed = [k for k in expected if k not in provided]
    if ours_needed:
        raise CheckpointError(
            f"the target model has weights that official checkpoints do not provide, the first being "
            f"{ours_needed[0]!r}; build it with the released options (max aggregation, layer norm, 2-layer MLP)."
        )
    converted: Dict[str, Tensor] = {}
    for theirs, ours in key_map.items():
        value = state[theirs]
        if not isinstance(value, Tensor):
            raise CheckpointError(f"official key {theirs!r} holds a {type(value).__name__}, not a tensor.")
        if tuple(value.shape) != tuple(expected[ours].shape):
            raise CheckpointError(
                f"official key {theirs!r} (our {ours!r}) has shape {tuple(value.shape)}, but the model expects "
                f"{tuple(expected[ours].shape)}; is the checkpoint of another width?"
            )
        converted[ours] = value.detach().to(dtype=expected[ours].dtype, device="cpu").contiguous()
    return OrderedDict((k, converted[k]) for k in expected)


def infer_official_arguments(state_dict: Mapping[str, Tensor]) -> Dict[str, int]:
    """The architecture arguments an official-layout RevGNN state dict was trained with.

    Depth and groups come from the ``gcns.{l}._fn.Fms.{g}`` keys, widths from the encoders'
    and the head's weight shapes.

    Raises
    ------
    CheckpointError
        When the keys are not the official RevGNN layout.

    Examples
    --------
    >>> import torch
    >>> from revgnn_dgl import create_model
    >>> ours = create_model("revgnn-deep", num_layers=3, hidden=16).state_dict()
    >>> theirs = {k: ours[v] for k, v in official_key_map(3).items()}
    >>> infer_official_arguments(theirs)["num_layers"], infer_official_arguments(theirs)["hidden"]
    (3, 16)
    """
    layers, groups = set(), set()
    for key in state_dict:
        parts = key.split(".")
        if (
            len(parts) > 4
            and parts[0] == "gcns"
            and parts[2:4] == ["_fn", "Fms"]
            and parts[1].isdigit()
            and parts[4].isdigit()
        ):
            layers.add(int(parts[1]))
            groups.add(int(parts[4]))
    needed = (
        "node_features_encoder.weight",
        "node_one_hot_encoder.weight",
        "edge_encoder.weight",
        "node_pred_linear.weight",
    )
    missing = [k for k in needed if k not in state_dict]
    if not layers or missing:
        raise CheckpointError(
            "not the official RevGNN layout: "
            + (f"no {missing[0]!r}" if missing else "no 'gcns.{l}._fn.Fms.{g}.*' keys")
            + "; give --num-layers, --hidden and --groups with a matching --model."
        )
    if layers != set(range(len(layers))) or groups != set(range(len(groups))):
        raise CheckpointError(
            f"the official layers or groups are not numbered 0..n-1 (layers {sorted(layers)[:5]}...)."
        )
    node, species = state_dict["node_features_encoder.weight"], state_dict["node_one_hot_encoder.weight"]
    return {
        "num_layers": len(layers),
        "groups": len(groups),
        "hidden": int(node.shape[0]),
        "species_feats": int(species.shape[1]),
        "in_feats": int(node.shape[1]) - int(species.shape[0]),
        "edge_feats": int(state_dict["edge_encoder.weight"].shape[1]),
        "out_feats": int(state_dict["node_pred_linear.weight"].shape[0]),
    }


def import_official_checkpoint(
    path: PathLike,
    model: Optional[str] = None,
    out: Optional[PathLike] = None,
    *,
    verbose: bool = True,
    allow_nonfinite: bool = False,
    force: bool = False,
    **overrides: Any,
) -> Path:
    """Convert an official ``.pth`` checkpoint into this package's format, in the cache.

    Afterwards ``create_model(name, pretrained=True)`` loads it (``name`` being the card the
    file fits). The SHA-256 of the converted file, which a model card's ``checkpoint.sha256``
    records, is printed with the card lines to paste.

    Parameters
    ----------
    path : str or PathLike
        An official checkpoint (``revgnn_deep.pth``, ``revgnn_wide.pth``, or any official-layout
        RevGNN): the wrapper dict ``{epoch, model_state_dict, optimizer_state_dict, loss}``, or a
        bare state dict. Read by our own safe reader: it never runs code from the file.
    model : str, optional
        The card to convert into (``deep``, ``wide``, any RevGNN card). None: depth, width and
        groups are inferred from the file (:func:`infer_official_arguments`), and the card is
        ``revgnn-deep`` or ``revgnn-wide`` if the file matches one, else a new name
        ``revgnn-official-{L}x{D}`` built on RevGNN-Deep's card.
    out : str or PathLike, optional
        Where to write; by default the cache path that :func:`revgnn_dgl.zoo.hub.pretrained_path`
        expects for the card.
    verbose : bool
        Print the destination, its SHA-256 and the card lines.
    allow_nonfinite : bool
        Convert weights holding NaN or inf instead of refusing them.
    force : bool
        Replace a file already at the destination (else the import is refused). Imports into one
        destination take turns under a lock, and each reports the SHA-256 of the file it left.
    **overrides
        Architecture arguments replacing the card's (``num_layers``, ``hidden``, ``groups``).

    Returns
    -------
    Path
        The written checkpoint.

    Raises
    ------
    CheckpointError
        If the file is missing, unsafe, not a state dict, holds non-finite weights, or does not
        match the model.
    """
    from .hub import checkpoint_file

    path = Path(path)
    raw = _safe_torch_load(path)
    state, info = _unwrap(raw, path)
    state = _strip_prefix(state, "module.")
    _check_conversion_memory(path, state)
    if model is None:
        inferred = {**infer_official_arguments(state), **overrides}
        model = next((n for n in ("revgnn-deep", "revgnn-wide") if _card_matches(n, inferred)), None)
        overrides = {} if model else inferred
    config = get_config(model or "revgnn-deep")
    if model is None:
        config["name"] = f"revgnn-official-{overrides['num_layers']}x{overrides['hidden']}"
        config["aliases"] = []
        config["checkpoint"] = {"source": "official", "file": f"{config['name']}.safetensors"}
    if not allow_nonfinite:
        bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
        if bad:
            raise CheckpointError(
                f"{path}: weight {bad[0]!r} (and {len(bad) - 1} more) holds NaN or inf; refused "
                "(--allow-nonfinite converts it anyway)."
            )
    try:
        target = build_from_config(config["architecture"], {**config["arguments"], **overrides})
        converted = convert_official_state_dict(state, target)
    except (CheckpointError, ZooError) as err:
        raise CheckpointError(f"{path} does not fit model {config['name']!r}: {err}") from None
    target.load_state_dict(converted, strict=True)
    arguments = {**config["arguments"], **overrides}

    metadata: Dict[str, Any] = {
        "source": "official",
        "converted_from": path.name,
        "converted_from_sha256": sha256_file(path),
        "dataset": config.get("dataset"),
        "metrics": config.get("paper") or {},
        "training": {**(config.get("training") or {}), **info},
        "citation": " ".join(str(config.get("citation") or "").split()) or None,
    }
    dest = Path(out) if out is not None else checkpoint_file(config)
    with _exclusive(dest):
        if dest.is_symlink():
            raise CheckpointError(f"{dest} is a symbolic link: revgnn-dgl never writes through a link; remove it.")
        if dest.exists() and not force:
            raise CheckpointError(
                f"{dest} already holds a converted checkpoint (sha256 {sha256_file(dest)}); "
                "pass --force to replace it, or --out FILE to write elsewhere."
            )
        save_checkpoint(dest, target, architecture=config["architecture"], arguments=arguments, name=config["name"],
                        metadata=metadata)  # fmt: skip
        report = official_import_report(path, dest, config["name"], arguments)  # the file as left, under the lock
    if verbose:
        print(report)
    return dest


@contextmanager
def _exclusive(dest: Path) -> Iterator[None]:
    """One import at a time into ``dest``'s folder: an advisory lock on the folder itself (no
    lock file is left in the cache; the kernel releases the lock when the process ends)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(dest.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as err:
        raise CheckpointError(f"cannot lock {dest.parent}: {err.strerror or err}") from None
    try:
        with file_lock(fd):  # waits for another import into the same file
            yield
    finally:
        os.close(fd)


def official_import_report(source: Path, dest: Path, name: str, arguments: Mapping[str, Any]) -> str:
    """What ``zoo import`` prints: where the file went, its SHA-256, and the card lines to paste."""
    digest = sha256_file(dest)
    shape = ", ".join(f"{k}={arguments[k]}" for k in ("num_layers", "hidden", "groups") if k in arguments)
    return "\n".join([
        f"imported {source} as {name!r} ({shape}) into {dest}",
        f"sha256 {digest}",
        f"card lines (zoo/{name}/card.yaml, or a card passed to register_model):",
        "checkpoint:",
        "  source: official",
        f"  file: {dest.name}",
        f"  sha256: {digest}",
    ])  # fmt: skip


def _card_matches(name: str, arguments: Mapping[str, Any]) -> bool:
    card = get_config(name)["arguments"]
    return all(card.get(k) == v for k, v in arguments.items())


# ------------------------------------------------------------------ internals
def _target_model(model: Union[str, Mapping[str, Any], nn.Module], overrides: Mapping[str, Any]) -> nn.Module:
    if isinstance(model, nn.Module):
        if overrides:
            raise ZooError("overrides apply only when the model is given by name.")
        return model
    if isinstance(model, str):
        return create_model(model, **overrides)
    if isinstance(model, Mapping) and "architecture" in model:
        return build_from_config(model["architecture"], {**(model.get("arguments") or {}), **overrides})
    raise ZooError(f"model must be a name, a card-like mapping or an nn.Module, not {type(model).__name__}.")


def _check_conversion_memory(path: Path, state: Mapping[str, Tensor]) -> None:
    """Refuse, before the model is built, a conversion whose peak does not fit: the file's tensors (loaded),
    the model holding a copy, and the serialised buffer of the checkpoint written, about as much again."""
    from ..limits import check_memory

    weights = sum(t.numel() * t.element_size() for t in state.values())
    check_memory(f"converting {path.name} ({len(state)} tensors, {format_bytes(weights)})", 3 * weights,
                 error=CheckpointError)  # fmt: skip


def _strip_prefix(state: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def _safe_torch_load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"official checkpoint {path} does not exist.")
    try:
        return load_torch_file(path, what="the official checkpoint")
    except TorchFileError as err:  # includes UnsafeFileError (TorchScript, foreign globals)
        raise CheckpointError(str(err)) from None


def _unwrap(raw: Any, path: Path) -> Tuple[Mapping[str, Tensor], Dict[str, Any]]:
    """The state dict and training information of an official file (wrapper dict or bare state dict)."""
    if isinstance(raw, Mapping) and "model_state_dict" in raw:
        info: Dict[str, Any] = {}
        for key in ("epoch", "loss"):
            value = raw.get(key)
            if isinstance(value, Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, (int, float, str)):
                info[f"official_{key}"] = value
        state = raw["model_state_dict"]
    else:
        state, info = raw, {}
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path} is neither an official checkpoint dict (with 'model_state_dict') nor a state dict of tensors."
        )
    return state, info
