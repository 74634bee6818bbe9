"""Resumable training state, stored without pickle.

One safetensors file holds every tensor (model weights, optimizer moments, the torch and
numpy generator states); its header holds everything else as JSON (epoch, best score,
optimizer hyper-parameters, Python's generator state). Loading it never executes code.

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
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..faults import fault_point
from ..errors import TrainingStateError, ZooError
from ..zoo.checkpoint import tensors_sha256

#: Key of the JSON document in the safetensors header.
HEADER_KEY = "revgnn_dgl.training_state"
FORMAT_VERSION = 1

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
    from safetensors.torch import save_file

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
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(header)})
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # like the checkpoints beside it (safetensors creates the file private)
        fault_point("state")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
        header = json.loads(meta[HEADER_KEY])
    except json.JSONDecodeError:
        raise TrainingStateError(f"{path}: the training-state header is damaged (not valid JSON).") from None
    if not isinstance(header, dict) or header.get("version") != FORMAT_VERSION:
        version = header.get("version") if isinstance(header, dict) else None
        raise TrainingStateError(f"{path} has training-state format {version}, expected {FORMAT_VERSION}.")
    if header.get("data_sha256") != tensors_sha256(tensors):
        raise TrainingStateError(
            f"{path} is damaged: its tensors do not match the checksum in its header. "
            "Resume from an intact copy, or start the run again."
        )
    try:
        return _state_from(header, tensors)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise TrainingStateError(f"{path}: the training-state header is incomplete ({type(err).__name__}: {err}).") from None


def _state_from(header: Dict[str, Any], tensors: Dict[str, Tensor]) -> TrainingState:

    model = {key[len("model/"):]: value for key, value in tensors.items() if key.startswith("model/")}
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
