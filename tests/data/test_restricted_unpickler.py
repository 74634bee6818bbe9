"""The Planetoid unpickler accepts arrays and CSR matrices and refuses code."""

from __future__ import annotations

import os
import pickle
import shutil
from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse as sp

from revgnn_dgl.data import DatasetError, load_dataset, restricted_load


class _Exploit:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_refuses_malicious_pickle(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(str(marker)), protocol=protocol)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        restricted_load(payload)
    assert not marker.exists()


def test_refuses_other_globals():
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global (__builtin__|builtins)\.eval"):
        restricted_load(pickle.dumps(eval, protocol=2))


@pytest.mark.parametrize("protocol", [2, 4])
def test_allowed_objects_round_trip(protocol):
    matrix = sp.random(5, 7, density=0.3, format="csr", dtype=np.float32, random_state=0)
    adjacency = defaultdict(list, {0: [1, 2], 3: [4]})
    obj = {"m": matrix, "a": np.arange(6, dtype=np.int32).reshape(2, 3), "g": adjacency}
    back = restricted_load(pickle.dumps(obj, protocol=protocol))
    assert (back["m"] != matrix).nnz == 0 and back["m"].dtype == np.float32
    np.testing.assert_array_equal(back["a"], obj["a"])
    assert back["g"] == adjacency and isinstance(back["g"], defaultdict)


def test_planetoid_loader_rejects_malicious_file(tmp_path, dataset_dir):
    for f in dataset_dir("cora").iterdir():
        shutil.copy(f, tmp_path / f.name)
    marker = tmp_path / "pwned"
    target = tmp_path / "ind.cora.graph"
    target.chmod(0o644)
    target.write_bytes(pickle.dumps(_Exploit(str(marker)), protocol=2))
    with pytest.raises(DatasetError, match="cannot read .*ind.cora.graph.*refusing"):
        load_dataset("cora", root=tmp_path)
    assert not marker.exists()


def test_codecs_only_decode_latin1_bytes():
    payload = pickle.dumps({"raw": b"\x00\xff"}, protocol=2)  # bytes: _codecs.encode(str, 'latin1')
    assert restricted_load(payload) == {"raw": b"\x00\xff"}
    other_codec = payload.replace(b"latin1", b"rot_13")  # same length, another codec
    with pytest.raises(pickle.UnpicklingError, match="refusing _codecs.encode with 'rot_13'"):
        restricted_load(other_codec)
