"""The safe torch-file reader: it loads what torch.save writes, bit for bit,
and refuses code (TorchScript, foreign globals) before running any of it.

Every test here runs with ``torch.load`` and ``torch.jit.load`` replaced by
functions that fail the test, so no reader can fall back on them.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import shutil
import signal
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Tuple

import numpy as np
import pandas as pd
import pytest
import torch
from test_ogb_proteins import write_mini_proteins

from revgnn_dgl.data import DatasetError, load_dataset
from revgnn_dgl.data.safe_torch import TorchFileError, UnsafeFileError, load_torch_file

_TORCH_LOAD, _JIT_LOAD = torch.load, torch.jit.load


@pytest.fixture(autouse=True)
def forbid_torch_load(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load / torch.jit.load was called")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(torch.serialization, "load", forbidden)
    monkeypatch.setattr(torch.jit, "load", forbidden)


def _one_line_error(err: pytest.ExceptionInfo, path: Path) -> str:
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    assert err.value.__cause__ is None and err.value.__suppress_context__
    return message


# ------------------------------------------------------------------ exploits
class _SetStateWritesFile(torch.nn.Module):
    """Scripted ``__setstate__`` that creates the file named in its state
    (``torch.from_file(..., shared=True)`` creates the file it maps)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.buf = torch.zeros(1)

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        self.buf = torch.from_file(self.marker, True, 8)  # kept in an attribute: not dead code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _ShellTouch:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def exploits(tmp_path_factory) -> dict[str, tuple[bytes, Path, str]]:
    """name -> (file bytes, marker path, what the error must say). Each payload
    is shown live: the loader it targets does create its marker."""
    folder = tmp_path_factory.mktemp("exploits")
    out = {}

    marker = folder / "pwned_jit"
    torch.jit.save(torch.jit.script(_SetStateWritesFile(str(marker))), folder / "jit.pt")
    assert not marker.exists()
    with pytest.warns(UserWarning, match="TorchScript"):  # CVE-2025-32434 on the pinned torch
        _TORCH_LOAD(folder / "jit.pt", weights_only=True)
    assert marker.exists()
    marker.unlink()
    out["torchscript"] = ((folder / "jit.pt").read_bytes(), marker, "a TorchScript archive")

    for name, kwargs in (("reduce_zip", {}), ("reduce_legacy", {"_use_new_zipfile_serialization": False})):
        marker = folder / f"pwned_{name}"
        torch.save({"train": _ShellTouch(marker)}, folder / f"{name}.pt", **kwargs)
        _TORCH_LOAD(folder / f"{name}.pt", weights_only=False)
        assert marker.exists()
        marker.unlink()
        out[name] = ((folder / f"{name}.pt").read_bytes(), marker, "a pickle that needs posix.system")
    for protocol in (0, 2):
        marker = folder / f"pwned_pickle{protocol}"
        payload = pickle.dumps(_ShellTouch(marker), protocol=protocol)
        pickle.loads(payload)
        assert marker.exists()
        marker.unlink()
        out[f"plain_pickle{protocol}"] = (payload, marker, "a pickle that needs posix.system")
    return out


EXPLOITS = ["torchscript", "reduce_zip", "reduce_legacy", "plain_pickle0", "plain_pickle2"]


@pytest.mark.parametrize("name", EXPLOITS)
def test_reader_refuses_exploits(tmp_path, exploits, name):
    data, marker, kind = exploits[name]
    path = tmp_path / "evil.pt"
    path.write_bytes(data)
    with pytest.raises(UnsafeFileError) as err:
        load_torch_file(path, what="the checkpoint")
    message = _one_line_error(err, path)
    assert message.startswith(f"{path}: refused to load the checkpoint: it is {kind}"), message
    assert "could run code" in message or "can run code" in message
    assert not marker.exists()


def _write_tiny_humloc(folder: Path, split: object, legacy: bool = False) -> None:
    """Six nodes in HumLoc's file layout (header row in edge_list.csv, floats as ids)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    edges = np.array([[0.0, 1.0], [1.0, 2.0], [3.0, 4.0], [4.0, 5.0]])
    edge_feat = rng.integers(0, 99, size=(4, 21)) / 100
    pd.DataFrame(np.hstack([edges, edge_feat]), columns=["u", "v"] + [f"e{i}" for i in range(21)]).to_csv(
        folder / "edge_list.csv", index=False
    )
    pd.DataFrame(rng.random((6, 32))).to_csv(folder / "features.csv", header=False, index=False)
    pd.DataFrame(rng.integers(0, 2, size=(6, 14))).to_csv(folder / "labels.csv", header=False, index=False)
    if isinstance(split, bytes):
        (folder / "split.pt").write_bytes(split)
    else:
        torch.save(split, folder / "split.pt", _use_new_zipfile_serialization=not legacy)


HUMLOC_SPLIT = {"train_mask": torch.tensor([0, 1, 2]), "val_mask": torch.tensor([3]), "test_mask": torch.tensor([4, 5])}


@pytest.mark.parametrize("legacy", [False, True])
def test_humloc_reads_its_split(tmp_path, legacy):
    _write_tiny_humloc(tmp_path, HUMLOC_SPLIT, legacy=legacy)
    ds = load_dataset("humloc", root=tmp_path)
    assert ds.graph.num_nodes() == 6 and ds.graph.num_edges() == 8
    for field, key in (("train_idx", "train_mask"), ("val_idx", "val_mask"), ("test_idx", "test_mask")):
        assert torch.equal(getattr(ds, field), HUMLOC_SPLIT[key])


def test_humloc_split_without_index_tensors(tmp_path):
    _write_tiny_humloc(tmp_path, {"train_mask": [0, 1], "val_mask": torch.tensor([3])})
    with pytest.raises(DatasetError, match="split.pt lacks the index tensors train_mask, test_mask$"):
        load_dataset("humloc", root=tmp_path)


@pytest.mark.parametrize("name", EXPLOITS)
def test_humloc_refuses_exploit_split(tmp_path, exploits, name):
    data, marker, kind = exploits[name]
    _write_tiny_humloc(tmp_path, data)
    with pytest.raises(UnsafeFileError) as err:
        load_dataset("humloc", root=tmp_path)
    message = _one_line_error(err, tmp_path / "split.pt")
    assert f"refused to load the HumLoc split: it is {kind}" in message
    assert not marker.exists()


def _proteins_split_file(root: Path) -> Path:
    path = root / "ogbn_proteins" / "split" / "species" / "split_dict.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("legacy", [False, True])
def test_ogbn_proteins_reads_cached_split(tmp_path, legacy):
    data = write_mini_proteins(tmp_path)
    # A cached split that differs from the csv files: it is what gets used.
    cached = {"train": torch.arange(0, 20), "valid": torch.arange(20, 30), "test": torch.arange(30, 40)}
    torch.save(cached, _proteins_split_file(tmp_path), _use_new_zipfile_serialization=not legacy)
    ds = load_dataset("ogbn-proteins", root=tmp_path, download=False)
    assert torch.equal(ds.train_idx, cached["train"]) and torch.equal(ds.test_idx, cached["test"])
    assert not torch.equal(ds.train_idx, torch.from_numpy(data["train"]))


def test_ogbn_proteins_split_from_csv_without_ogb(tmp_path, monkeypatch):
    from ogb.nodeproppred import DglNodePropPredDataset

    def refuse(*args, **kwargs):
        raise AssertionError("OGB's get_idx_split (a bare torch.load) was called")

    monkeypatch.setattr(DglNodePropPredDataset, "get_idx_split", refuse)
    data = write_mini_proteins(tmp_path)
    ds = load_dataset("ogbn-proteins", root=tmp_path, download=False)
    for field, part in (("train_idx", "train"), ("val_idx", "valid"), ("test_idx", "test")):
        assert torch.equal(getattr(ds, field), torch.from_numpy(data[part]))


def test_ogbn_proteins_cached_split_of_wrong_shape(tmp_path):
    write_mini_proteins(tmp_path)
    path = _proteins_split_file(tmp_path)
    torch.save({"train": torch.arange(3)}, path)
    with pytest.raises(DatasetError, match="split_dict.pt: OGB's cached split is not a dict of 'train', 'valid'"):
        load_dataset("ogbn-proteins", root=tmp_path, download=False)


@pytest.mark.parametrize("name", EXPLOITS)
def test_ogbn_proteins_refuses_exploit_split(tmp_path, exploits, name):
    data, marker, kind = exploits[name]
    write_mini_proteins(tmp_path)
    path = _proteins_split_file(tmp_path)
    path.write_bytes(data)
    with pytest.raises(UnsafeFileError) as err:
        load_dataset("ogbn-proteins", root=tmp_path, download=False)
    message = _one_line_error(err, path)
    assert f"refused to load OGB's cached split: it is {kind}" in message
    assert not marker.exists()


# ---------------------------------------------------------------- round trip
def _official_checkpoint() -> dict:
    """The layout of the released RevGNN checkpoints, plus every tensor kind we read."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 4)).square().sum().backward()
    optimizer.step()
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    cplx = torch.randn(3, dtype=torch.complex64)
    extras = {
        "base": base,
        "transposed": base.t(),
        "strided": base[1:3, ::2],
        "row": base[2],
        "special": torch.tensor([float("nan"), float("inf"), -0.0, 1e-45]),
        "f16": torch.randn(2, 3).half(),
        "bf16": torch.randn(5).bfloat16(),
        "f64": torch.randn(3, dtype=torch.float64),
        "i64": torch.tensor([-(2**62), 0, 2**62]),
        "i32": torch.tensor([-5, 7], dtype=torch.int32),
        "i16": torch.tensor([300], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "c128": torch.randn(2, dtype=torch.complex128),
        "conj": cplx.conj(),
        "neg": torch.randn(3, dtype=torch.complex64).conj().imag,  # a float view with the neg bit
        "scalar": torch.tensor(3.25),
        "int_scalar": torch.tensor(7),
        "empty": torch.empty(0, 4),
        "empty_long": torch.zeros(0, dtype=torch.int64),
        "param": torch.nn.Parameter(torch.randn(2)),
        "frozen": torch.nn.Parameter(torch.randn(2), requires_grad=False),
        "device": torch.device("cpu"),
        "dtype": torch.bfloat16,
        "size": torch.Size([2, 3]),
        "misc": [1, 2.5, None, True, "text", b"\x00bytes", (3, 4), {5, 6}, frozenset({7}), 1 + 2j],
    }
    return {
        "epoch": 17,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "loss": torch.tensor(0.6931),
        "extras": extras,
    }


def _bits(t: torch.Tensor) -> bytes:
    return bytes(t.detach().resolve_conj().resolve_neg().clone().untyped_storage().tolist())


def _assert_same(got, want, where="obj") -> None:
    assert type(got) is type(want), f"{where}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, torch.Tensor):
        assert (got.dtype, got.shape, got.stride(), got.storage_offset()) == (
            want.dtype,
            want.shape,
            want.stride(),
            want.storage_offset(),
        ), where
        assert (got.requires_grad, got.is_conj(), got.is_neg()) == (want.requires_grad, want.is_conj(), want.is_neg())
        assert _bits(got) == _bits(want), f"{where}: values differ"
    elif isinstance(want, dict):
        assert list(got) == list(want), where
        for key in want:
            _assert_same(got[key], want[key], f"{where}[{key!r}]")
        assert getattr(got, "__dict__", {}).keys() == getattr(want, "__dict__", {}).keys(), where
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{where}[{i}]")
    else:
        assert got == want, where


@pytest.mark.parametrize("legacy", [False, True])
def test_round_trip_bit_for_bit(tmp_path, legacy):
    obj = _official_checkpoint()
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    back = load_torch_file(path)
    _assert_same(back, obj)
    assert back["model_state_dict"]._metadata == obj["model_state_dict"]._metadata
    assert back["optimizer_state_dict"]["state"][0]["step"].item() == 1.0
    extras = back["extras"]
    # Views share their storage as when saved.
    extras["base"][2, 4] = 100.0
    assert extras["transposed"][4, 2] == 100.0 and extras["strided"][1, 2] == 100.0 and extras["row"][4] == 100.0
    assert extras["param"].requires_grad and not extras["frozen"].requires_grad


def test_reads_the_real_humloc_split(shared_data_dir):
    # Written by an older torch: no byteorder record.
    split = load_torch_file(shared_data_dir / "humloc" / "split.pt")
    assert [len(split[k]) for k in ("train_mask", "val_mask", "test_mask")] == [1675, 187, 1244]
    assert all(v.dtype == torch.int64 for v in split.values())


# ------------------------------------------------------- hand-made archives
class _Storage:
    """Pickles as a storage record ('storage', type, key, location, numel)."""

    def __init__(self, key: str, numel: int, storage_type=torch.FloatStorage) -> None:
        self.key, self.numel, self.storage_type = key, numel, storage_type


class _Tensor:
    """Pickles as torch's ``_rebuild_tensor_v2`` call with chosen arguments."""

    def __init__(self, *args, state=None) -> None:
        self.args, self.state = args, state

    def __reduce__(self):
        if self.state is None:
            return torch._utils._rebuild_tensor_v2, self.args
        return torch._utils._rebuild_tensor_v2, self.args, self.state


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
        return None


def _tensor(key, numel, size, stride=None, offset=0, storage_type=torch.FloatStorage, **kw) -> _Tensor:
    stride = stride if stride is not None else tuple(int(np.prod(size[i + 1 :])) for i in range(len(size)))
    return _Tensor(_Storage(key, numel, storage_type), offset, size, stride, False, OrderedDict(), **kw)


def _write_archive(path: Path, obj, records: dict, byteorder: bytes | None = b"little", version=b"3\n") -> Path:
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        for key, raw in records.items():
            zf.writestr(f"archive/data/{key}", raw)
        zf.writestr("archive/version", version)
        if byteorder is not None:
            zf.writestr("archive/byteorder", byteorder)
    return path


def test_big_endian_archive(tmp_path):
    want = {
        "f": torch.tensor([1.5, -2.25, 3e38]),
        "d": torch.tensor([np.pi, -1e300], dtype=torch.float64),
        "h": torch.tensor([1, -300], dtype=torch.int16),
        "c": torch.tensor([1 + 2j, -3.5 - 0.25j], dtype=torch.complex64),
        "bf": torch.tensor([1.0, -0.5], dtype=torch.bfloat16),
        "b": torch.tensor([True, False]),
    }
    types = {"f": torch.FloatStorage, "d": torch.DoubleStorage, "h": torch.ShortStorage}
    types.update(c=torch.ComplexFloatStorage, bf=torch.BFloat16Storage, b=torch.BoolStorage)
    obj, records = {}, {}
    for key, t in want.items():
        obj[key] = _tensor(key, t.numel(), tuple(t.shape), storage_type=types[key])
        as_numpy = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
        records[key] = as_numpy.byteswap().tobytes()  # complex: each part swapped on its own
    assert records["h"] != want["h"].numpy().tobytes()
    back = load_torch_file(_write_archive(tmp_path / "big.pt", obj, records, byteorder=b"big"))
    _assert_same(back, want)


@pytest.mark.parametrize(
    "obj, records, kwargs, phrase",
    [
        ({"x": _tensor("0", 4, (4,))}, {}, {}, "its storage record data/0 is missing"),
        ({"x": _tensor("0", 4, (4,))}, {"0": b"\0" * 12}, {}, "holds 12 bytes where the pickle expects 16"),
        ({"x": _tensor("0", 2, (3,))}, {"0": b"\0" * 8}, {}, "reaches past the end of its storage"),
        ({"x": _tensor("0", 4, (2, 2), stride=(1, 3))}, {"0": b"\0" * 16}, {}, "reaches past the end"),
        ({"x": _tensor("0", 4, (2,), offset=3)}, {"0": b"\0" * 16}, {}, "reaches past the end"),
        ({"x": _tensor("0", 1, (1,), state={"a": 1})}, {"0": b"\0" * 4}, {}, "sets the state of a Tensor"),
        ({"x": _tensor("0", 2, (2,), storage_type=torch.BoolStorage)}, {"0": b"\x01\x07"}, {}, "other than 0 and 1"),
        ({"x": 1}, {}, {"byteorder": b"middle"}, "neither 'little' nor 'big'"),
        ({"x": 1}, {}, {"byteorder": None, "version": b"99\n"}, "its format version b'99\\n' is not one torch.save"),
    ],
)
def test_damaged_archives(tmp_path, obj, records, kwargs, phrase):
    path = _write_archive(tmp_path / "bad.pt", obj, records, **kwargs)
    with pytest.raises(TorchFileError) as err:
        load_torch_file(path)
    assert phrase in _one_line_error(err, path)
    assert not isinstance(err.value, UnsafeFileError)


def test_backward_hooks_refused(tmp_path):
    hooks = OrderedDict({0: torch._utils._rebuild_tensor_v2})
    obj = {"x": _Tensor(_Storage("0", 1), 0, (1,), (1,), False, hooks)}
    path = _write_archive(tmp_path / "hooks.pt", obj, {"0": b"\0" * 4})
    with pytest.raises(TorchFileError, match="carries backward hooks"):
        load_torch_file(path)


@pytest.mark.parametrize("member", ["archive/constants.pkl", "archive/code/__torch__.py", "archive/.data/version"])
def test_torchscript_members_refused_before_unpickling(tmp_path, member):
    # data.pkl is garbage: were it unpickled, the error would say "damaged".
    path = tmp_path / "script.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"\xff garbage")
        zf.writestr("archive/version", b"3\n")
        zf.writestr(member, b"")
    with pytest.raises(UnsafeFileError, match="it is a TorchScript archive, which can run code when loaded"):
        load_torch_file(path)


@pytest.mark.parametrize(
    "payload, needs",
    [
        (lambda: pickle.dumps(eval, protocol=3), "builtins.eval"),
        (lambda: pickle.dumps(torch.randn(2), protocol=2), "torch.storage._load_from_bytes"),
        (lambda: pickle.dumps(shutil.rmtree, protocol=4), "shutil.rmtree"),
    ],
)
def test_foreign_globals_named(tmp_path, payload, needs):
    path = tmp_path / "x.pt"
    path.write_bytes(payload())
    with pytest.raises(UnsafeFileError) as err:
        load_torch_file(path)
    assert f"it is a pickle that needs {needs}, which could run code" in _one_line_error(err, path)


def test_parameter_with_python_state_refused(tmp_path):
    param = torch.nn.Parameter(torch.ones(2))
    param.note = "extra attribute"
    torch.save({"p": param}, tmp_path / "p.pt")
    with pytest.raises(UnsafeFileError, match="needs torch._utils._rebuild_parameter_with_state"):
        load_torch_file(tmp_path / "p.pt")


# ------------------------------------------------------------- not torch files
def _safetensors_bytes() -> bytes:
    from safetensors.torch import save

    return save({"w": torch.ones(2)})


def _npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(3))
    return buf.getvalue()


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(3))
    return buf.getvalue()


@pytest.mark.parametrize(
    "make, phrase",
    [
        (lambda: b"", "it is empty (0 bytes), not a torch file"),
        (lambda: b"train_mask: 0 1 2\nval_mask: 3\n", "it is plain text (starting 'train_mask: 0 1 2"),
        (lambda: json.dumps({"train": [0, 1]}).encode(), "it is JSON text (starting '{\"train\": [0, 1]}')"),
        (_safetensors_bytes, "it is a safetensors file"),
        (_npy_bytes, "it is a NumPy .npy array, not a torch file"),
        (_npz_bytes, "it is a NumPy .npz archive, not a torch file"),
        (lambda: random.Random(0).randbytes(4096), "it is not a torch file: unrecognised binary data starting"),
        (lambda: pickle.dumps({"train": [0, 1]}), "it is a Python pickle (of type dict), not a file written by"),
        (lambda: pickle.dumps({"train": [0, 1]}, protocol=2)[:-4], "it is a damaged pickle ("),
        (lambda: b"PK\x03\x04 not really a zip", "it is a damaged zip archive"),
    ],
)
def test_says_what_a_non_torch_file_is(tmp_path, make, phrase):
    path = tmp_path / "split.pt"
    path.write_bytes(make())
    with pytest.raises(TorchFileError) as err:
        load_torch_file(path, what="the split")
    message = _one_line_error(err, path)
    assert message.startswith(f"{path}: cannot load the split: {phrase}"), message
    assert not isinstance(err.value, UnsafeFileError)


def test_missing_file_folder_and_fifo(tmp_path):
    with pytest.raises(TorchFileError, match=r"missing.pt: cannot load file: cannot open it \(No such file"):
        load_torch_file(tmp_path / "missing.pt")
    with pytest.raises(TorchFileError, match="cannot load file: it is not a regular file"):
        load_torch_file(tmp_path)
    os.mkfifo(tmp_path / "fifo.pt")  # open() would block on it
    with pytest.raises(TorchFileError, match="fifo.pt: cannot load file: it is not a regular file"):
        load_torch_file(tmp_path / "fifo.pt")


@pytest.mark.parametrize(
    "legacy, cut, phrase",
    [
        (False, 30, "it is a damaged zip archive"),
        (True, 4, "it is truncated inside storage"),
        (True, 200, "it is a damaged legacy torch file"),
    ],
)
def test_truncated_files(tmp_path, legacy, cut, phrase):
    path = tmp_path / "cut.pt"
    torch.save({"w": torch.randn(10), "b": torch.zeros(3)}, path, _use_new_zipfile_serialization=not legacy)
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(TorchFileError) as err:
        load_torch_file(path)
    assert phrase in _one_line_error(err, path)


class _CallOn:
    """Pickles as ``fn(arg)``."""

    def __init__(self, fn, arg) -> None:
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


@pytest.mark.parametrize("fn", [list, set, torch.Size, OrderedDict])
def test_iterating_a_tensor_refused(tmp_path, fn):
    # A huge expanded view is refused when rebuilt (test_overlapping_views_refused); the call is refused anyway.
    small = _tensor("0", 4, (4,))
    path = _write_archive(tmp_path / "small.pt", {"x": _CallOn(fn, small)}, {"0": b"\0" * 16})
    with pytest.raises(TorchFileError, match=f"the pickle calls {fn.__name__} on a tensor or storage"):
        load_torch_file(path)


# ------------------------------------------------------------------- fuzzing
def _mutate(data: bytes, rng: random.Random) -> bytes:
    kind = rng.choice(("flip", "truncate", "insert"))
    pos = rng.randrange(len(data))
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ rng.randrange(1, 256)]) + data[pos + 1 :]
    if kind == "truncate":
        return data[:pos]
    return data[:pos] + rng.randbytes(rng.randrange(1, 9)) + data[pos:]


_ALLOWED_LEAVES = (torch.Tensor, torch.device, torch.dtype, torch.Size, int, float, complex, str, bytes, bool)


def _only_allowed(obj) -> bool:
    if obj is None or isinstance(obj, _ALLOWED_LEAVES):
        return True
    if isinstance(obj, dict):
        return all(_only_allowed(k) and _only_allowed(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return all(_only_allowed(v) for v in obj)
    return False


@pytest.mark.parametrize("legacy", [False, True])
def test_mutated_files_load_or_fail_in_one_line(tmp_path, legacy):
    """Several hundred seeded mutations: each load returns a result or raises
    TorchFileError, never another exception (a watchdog turns a hang into a failure)."""
    small = {
        "epoch": 3,
        "model_state_dict": OrderedDict(w=torch.randn(3, 2), b=torch.zeros(3), n=torch.tensor(5)),
        "view": torch.arange(6.0)[1::2],
        "mask": torch.tensor([True, False]),
        "half": torch.ones(2, dtype=torch.float16),
    }
    source = tmp_path / "ok.pt"
    torch.save(small, source, _use_new_zipfile_serialization=not legacy)
    data = source.read_bytes()
    rng = random.Random(1234 + legacy)
    path = tmp_path / "mutated.pt"
    outcomes = {"loaded": 0, "error": 0}

    def watchdog(signum, frame):
        raise AssertionError("loading a mutated file hung")

    previous = signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(300)
    try:
        for _ in range(400):
            path.write_bytes(_mutate(data, rng))
            try:
                back = load_torch_file(path)
            except TorchFileError as err:
                message = str(err)
                assert "\n" not in message and message.startswith(f"{path}: "), message
                outcomes["error"] += 1
                continue
            outcomes["loaded"] += 1
            if legacy:  # no checksums: bytes may change, the kinds of objects may not
                assert _only_allowed(back)
            else:  # every record is CRC-checked: a load that succeeds is exact
                _assert_same(back, small)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert outcomes["error"] > 100 and outcomes["loaded"] + outcomes["error"] == 400


@pytest.mark.parametrize("name", EXPLOITS)
def test_zoo_import_and_checkpoint_loading_refuse_exploits(tmp_path, exploits, name, monkeypatch):
    """Every other reader of foreign files: `zoo import` (Python and CLI) and the checkpoint loader."""
    from click.testing import CliRunner

    from revgnn_dgl.cli import cli
    from revgnn_dgl.zoo.checkpoint import CheckpointError, build_from_checkpoint
    from revgnn_dgl.zoo.convert import import_official_checkpoint

    data, marker, kind = exploits[name]
    path = tmp_path / "revgnn_deep.pth"
    path.write_bytes(data)
    monkeypatch.setenv("REVGNN_DGL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError) as err:
        import_official_checkpoint(path, model="deep", verbose=False)
    assert "\n" not in str(err.value) and f"it is {kind}" in str(err.value)
    result = CliRunner().invoke(cli, ["zoo", "import", str(path), "--model", "deep"])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1 and f"it is {kind}" in errors[0], result.output
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        build_from_checkpoint(path)
    assert not marker.exists()
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.safetensors"))
