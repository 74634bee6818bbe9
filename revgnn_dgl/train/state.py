"""Resumable training state, stored without pickle.

One safetensors file holds every tensor (model weights, optimizer moments, the torch and
numpy generator states); its header holds everything else as JSON (epoch, best score,
optimizer hyper-parameters, Python's generator state). Loading it never executes code.
Two checksums cover all of it: ``data_sha256`` the tensors' names, dtypes, shapes and bytes,
``sha256`` the canonical JSON of the header (``data_sha256`` included); both are required.
:func:`check_state_fits` refuses a state that would not resume a model and its optimizer exactly.

>>> import tempfile, torch
>>> model = torch.nn.Linear(2, 1)
>>> opt = torch.optim.Adam(model.parameters())
>>> path = tempfile.mkdtemp() + "/state.safetensors"
>>> save_training_state(path, model=model, optimizer=opt, epoch=3, extra={"best_val": 0.5})
>>> load_training_state(path).epoch
3
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import TrainingStateError
from ..files import strict_json
from ..zoo.checkpoint import config_sha256, tensors_sha256, write_safetensors

#: Key of the JSON document in the safetensors header.
HEADER_KEY = "revgnn_dgl.training_state"
#: 2: the header's JSON is checksummed too (``sha256``).
FORMAT_VERSION = 2

PathLike = Union[str, Path]


@dataclass
class TrainingState:
    """Everything needed to continue a run exactly where it stopped.

    Attributes
    ----------
    epoch : int
        Last completed epoch.
    model : dict of str to Tensor
        The model's ``state_dict``.
    optimizer : dict
        An optimizer ``state_dict``, ready for ``optimizer.load_state_dict``.
    rng : dict
        Generator states, ready for :func:`restore_rng`.
    extra : dict
        The caller's JSON-serialisable bookkeeping (best score, ...).
    """

    epoch: int
    model: Dict[str, Tensor]
    optimizer: Dict[str, Any]
    rng: Dict[str, Any]
    extra: Dict[str, Any]


def capture_rng() -> Dict[str, Any]:
    """The states of Python's, numpy's and torch's (CPU and CUDA) global generators."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(rng: Dict[str, Any]) -> None:
    """Put the global generators back in the states of :func:`capture_rng`."""
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    # A state saved on a GPU machine can be resumed on CPU: the CUDA states then do not apply.
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_training_state(
    path: PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, extra: Dict[str, Any]
) -> None:
    """Write the state atomically (a temporary file renamed over ``path``), with the current RNG states.

    Parameters
    ----------
    path : str or Path
        The ``.safetensors`` file to write.
    model, optimizer
        Their ``state_dict`` are saved.
    epoch : int
        The last completed epoch.
    extra : dict
        JSON-serialisable bookkeeping returned as :attr:`TrainingState.extra`.
    """
    from safetensors import SafetensorError

    tensors: Dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        tensors[f"model/{key}"] = value
    opt_state = optimizer.state_dict()
    opt_scalars: Dict[str, Dict[str, Any]] = {}
    for pid, entries in opt_state["state"].items():
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer/{pid}/{name}"] = value
            else:
                opt_scalars.setdefault(str(pid), {})[name] = value
    rng = capture_rng()
    version, mt_words, gauss = rng["python"]
    _, np_keys, np_pos, np_has_gauss, np_gauss = rng["numpy"]
    tensors["rng/torch"] = rng["torch"]
    tensors["rng/numpy"] = torch.from_numpy(np_keys.astype(np.int64))  # uint32 has no torch dtype here
    for i, state in enumerate(rng["cuda"]):
        tensors[f"rng/cuda/{i}"] = state
    header = {
        "version": FORMAT_VERSION,
        "epoch": epoch,
        "extra": extra,
        "optimizer": {"param_groups": opt_state["param_groups"], "scalars": opt_scalars},
        "rng": {
            "python": [version, list(mt_words), gauss],
            "numpy": [np_pos, np_has_gauss, np_gauss],
            "cuda_devices": len(rng["cuda"]),
        },
    }
    # safetensors wants contiguous CPU tensors that share no memory.
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    # A checksum of every tensor's bytes: damaged bytes are refused on load, not resumed into NaN.
    header["data_sha256"] = tensors_sha256(tensors)
    path = Path(path)
    try:
        # Through JSON first: the checksum is of what a reader parses back.
        header = json.loads(json.dumps(header, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TrainingStateError(f"cannot save {path}: its bookkeeping is not JSON-serialisable ({err}).") from None
    header["sha256"] = config_sha256(header)
    try:
        write_safetensors(path, tensors, {HEADER_KEY: json.dumps(header)}, fault="state")
    except (SafetensorError, OSError) as err:  # no space, read-only, permission: the previous state stays
        raise TrainingStateError(
            f"could not write the training state {path}: {' '.join(str(err).split())[:200]}; "
            "the previous state is kept and the run can be resumed once this is fixed."
        ) from None


def load_training_state(path: PathLike) -> TrainingState:
    """Read a state written by :func:`save_training_state`.

    Raises
    ------
    TrainingStateError
        When the file is missing, is not a safetensors file, or has no training state.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise TrainingStateError(f"no training state at {path}; is this a run directory written by `revgnn-dgl train`?")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError) as err:
        raise TrainingStateError(f"{path} is not a readable training state ({err}).") from None
    if HEADER_KEY not in meta:
        raise TrainingStateError(f"{path} is a safetensors file without a training state.")
    try:
        header = strict_json(meta[HEADER_KEY])
    except (ValueError, RecursionError):
        raise TrainingStateError(
            f"{path}: the training-state header is damaged (not valid JSON, or nested too deeply)."
        ) from None
    if not isinstance(header, dict) or header.get("version") != FORMAT_VERSION:
        version = header.get("version") if isinstance(header, dict) else None
        older = (
            " (written by an older revgnn_dgl, whose header no checksum covered; start the run again)"
            if version == 1
            else ""
        )
        raise TrainingStateError(f"{path} has training-state format {version!r:.20}, expected {FORMAT_VERSION}{older}.")
    if not isinstance(header.get("sha256"), str) or header["sha256"] != config_sha256(header):
        raise TrainingStateError(
            f"{path} is damaged: its header does not match the checksum stored with it. "
            "Resume from an intact copy, or start the run again."
        )
    if header.get("data_sha256") != tensors_sha256(tensors):
        raise TrainingStateError(
            f"{path} is damaged: its tensors do not match the checksum in its header. "
            "Resume from an intact copy, or start the run again."
        )
    try:
        _check_header(header, tensors)
        return _state_from(header, tensors)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise TrainingStateError(
            f"{path}: the training-state header is incomplete or malformed ({type(err).__name__}: {str(err)[:160]})."
        ) from None


def _is_int(value: Any, low: int = 0, high: int = 2**63) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value < high


def _check_header(header: Dict[str, Any], tensors: Dict[str, Tensor]) -> None:
    """Types and ranges of every header entry, so that a crafted one fails here in one line."""
    if not _is_int(header.get("epoch")):
        raise ValueError(f"epoch must be a non-negative integer, got {header.get('epoch')!r:.40}")
    extra = header["extra"]
    if not isinstance(extra, dict) or not isinstance(extra.get("best", {}), dict):
        raise TypeError("extra must be a mapping with a mapping 'best'")
    for key in ("since_best", "at_chance"):
        if key in extra and not _is_int(extra[key]):
            raise ValueError(f"extra.{key} must be a non-negative integer")
    best = extra.get("best", {})
    for key in ("val", "test", "val_loss"):
        value = best.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"best.{key} must be a number or null")
    if best.get("epoch") is not None and not _is_int(best["epoch"], 0, header["epoch"] + 1):
        raise ValueError("best.epoch must be an epoch already trained")
    groups = header["optimizer"]["param_groups"]
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups
    ):
        raise TypeError("optimizer.param_groups must be a list of mappings with params")
    if not all(_is_int(p) for g in groups for p in g["params"]):
        raise TypeError("optimizer.param_groups' params must be parameter indices")
    scalars = header["optimizer"]["scalars"]
    if not isinstance(scalars, dict) or not all(isinstance(v, dict) for v in scalars.values()):
        raise TypeError("optimizer.scalars must map parameter indices to mappings")
    if extra.get("stopped") is not None and not _is_int(extra["stopped"]):
        raise ValueError("extra.stopped must be an epoch or null")
    version, mt_words, gauss = header["rng"]["python"]
    if not (version == random.getstate()[0] and isinstance(mt_words, list) and len(mt_words) == 625
            and all(_is_int(w, 0, 2**32) for w in mt_words) and mt_words[-1] <= 624):  # fmt: skip
        raise ValueError("rng.python is not a Mersenne Twister state")
    if gauss is not None and not isinstance(gauss, float):
        raise TypeError("rng.python's gauss must be a float or null")
    np_pos, np_has_gauss, np_gauss = header["rng"]["numpy"]
    if not (_is_int(np_pos, 0, 625) and _is_int(np_has_gauss, 0, 2) and isinstance(np_gauss, (int, float))):
        raise ValueError("rng.numpy is not a Mersenne Twister state")
    np_keys = tensors["rng/numpy"]
    if (
        np_keys.dtype != torch.int64
        or tuple(np_keys.shape) != (624,)
        or bool(((np_keys < 0) | (np_keys >= 2**32)).any())
    ):
        raise ValueError("rng/numpy is not 624 words of a Mersenne Twister state")
    if tensors["rng/torch"].dtype != torch.uint8 or tensors["rng/torch"].shape != torch.get_rng_state().shape:
        raise ValueError("rng/torch is not a CPU generator state")
    cuda = header["rng"]["cuda_devices"]
    if not _is_int(cuda, 0, 1025) or any(f"rng/cuda/{i}" not in tensors for i in range(cuda)):
        raise ValueError("rng.cuda_devices does not match the CUDA generator states held")


def check_optimizer_state(optimizer: torch.optim.Optimizer, saved: Dict[str, Any]) -> None:
    """Refuse a saved optimizer state that would resume differently from the run's own.

    The hyper-parameters (all but the scheduled learning rate) must equal ``optimizer``'s, which
    was built from the run's configuration, and every parameter's state must hold the entries
    one step of this optimizer creates, shaped like the parameter. Raises ValueError.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    groups = saved["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise ValueError(f"it has {len(groups)} parameter group(s), the optimizer {len(optimizer.param_groups)}")
    for ours, theirs in zip(optimizer.param_groups, groups):
        for key, value in ours.items():
            if key in ("params", "lr", "initial_lr"):
                continue
            if key not in theirs or _plain(theirs[key]) != _plain(value):
                raise ValueError(f"its optimizer {key} is {theirs.get(key)!r:.60}, the run's {value!r:.60}")
        if len(theirs["params"]) != len(ours["params"]):
            raise ValueError("its parameter groups hold another number of parameters")
    probe = torch.nn.Parameter(torch.zeros(1))
    fresh = type(optimizer)([probe], **{k: v for k, v in optimizer.defaults.items() if k != "params"})
    probe.grad = torch.ones(1)
    fresh.step()
    want = set(fresh.state[probe])
    for pid, entry in saved["state"].items():
        if not _is_int(pid, 0, len(params)):
            raise ValueError(f"it holds the state of parameter {pid!r:.20}, which the model does not have")
        if set(entry) != want:
            raise ValueError(f"parameter {pid}'s state holds {sorted(entry)}, not {sorted(want)}")
        for name, value in entry.items():
            ref = fresh.state[probe][name]
            if name == "step":
                if not isinstance(value, Tensor) or value.numel() != 1 or not value.dtype.is_floating_point:
                    raise ValueError(f"parameter {pid}'s step is not a scalar")
                if not (torch.isfinite(value).all() and value.item() >= 0):
                    raise ValueError(f"parameter {pid}'s step is negative or not finite")
            elif (
                not isinstance(value, Tensor)
                or tuple(value.shape) != tuple(params[pid].shape)
                or value.dtype != ref.dtype
            ):
                raise ValueError(f"parameter {pid}'s {name} does not match the parameter's shape or dtype")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _state_from(header: Dict[str, Any], tensors: Dict[str, Tensor]) -> TrainingState:

    model = {key[len("model/") :]: value for key, value in tensors.items() if key.startswith("model/")}
    opt_state: Dict[int, Dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, pid, name = key.split("/", 2)
            opt_state.setdefault(int(pid), {})[name] = value
    for pid, entries in header["optimizer"]["scalars"].items():
        opt_state.setdefault(int(pid), {}).update(entries)
    # JSON turned tuples (Adam's betas) into lists; optimizers expect the originals.
    param_groups: List[Dict[str, Any]] = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
        for group in header["optimizer"]["param_groups"]
    ]
    version, mt_words, gauss = header["rng"]["python"]
    np_pos, np_has_gauss, np_gauss = header["rng"]["numpy"]
    rng = {
        "python": (version, tuple(mt_words), gauss),
        "numpy": ("MT19937", tensors["rng/numpy"].numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss),
        "torch": tensors["rng/torch"],
        "cuda": [tensors[f"rng/cuda/{i}"] for i in range(header["rng"]["cuda_devices"])],
    }
    return TrainingState(
        epoch=int(header["epoch"]),
        model=model,
        optimizer={"state": opt_state, "param_groups": param_groups},
        rng=rng,
        extra=header["extra"],
    )


def check_state_fits(model: nn.Module, optimizer: torch.optim.Optimizer, state: Any, path: Path, name: str) -> None:
    """Refuse a training state whose weights or optimizer state would not resume this model as it was trained."""
    try:
        _check_model_state(model, state.model)
        check_optimizer_state(optimizer, state.optimizer)
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise TrainingStateError(f"{path} does not fit model {name!r}: {' '.join(str(err).split())[:300]}") from None


def _check_model_state(model: nn.Module, saved: Dict[str, Tensor]) -> None:
    """Same keys, shapes and dtypes as the model: load_state_dict would cast another dtype silently."""
    ours = model.state_dict()
    if set(saved) != set(ours):
        raise ValueError(f"its weights are not the model's ({len(saved)} tensors against {len(ours)})")
    for key, value in ours.items():
        if saved[key].shape != value.shape or saved[key].dtype != value.dtype:
            raise ValueError(
                f"weight {key!r} is {saved[key].dtype} {tuple(saved[key].shape)}, "
                f"the model's {value.dtype} {tuple(value.shape)}"
            )
