"""Checkpoints: the safetensors format, loading by path and by name, hub cache and downloads, and
clear errors (missing, corrupted, truncated, wrong hash, another model) with nothing half-written."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import uuid
from pathlib import Path
from typing import Iterator

import dgl
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from revgnn_dgl import create_model, get_config, register_model
from revgnn_dgl.zoo import checkpoint as ckpt_mod
from revgnn_dgl.zoo import registry
from revgnn_dgl.zoo.checkpoint import (
    CheckpointError,
    build_from_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    sha256_file,
)
from revgnn_dgl.zoo.hub import cache_dir, checkpoint_file, checkpoints_dir, download, pretrained_path
from revgnn_dgl.zoo.registry import ZooError

TINY_ARGS = {**get_config("revgnn-deep")["arguments"], "num_layers": 2, "hidden": 16}


# ------------------------------------------------------------------ fixtures and helpers
@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private cache root (REVGNN_DGL_CACHE)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("REVGNN_DGL_CACHE", str(root))
    return root


@pytest.fixture
def make_card() -> Iterator:
    """Register test cards under unique names; remove them afterwards so other tests never see them."""
    names = []

    def make(checkpoint: dict, architecture: str = "revgnn", arguments: dict = TINY_ARGS) -> str:
        name = f"test-ckpt-{uuid.uuid4().hex[:8]}"
        register_model(
            {
                "name": name,
                "architecture": architecture,
                "arguments": dict(arguments),
                "dataset": "synthetic",
                "parameters": 0,
                "citation": "test card",
                "checkpoint": {"file": f"{name}.safetensors", **checkpoint},
            }
        )
        names.append(name)
        return name

    yield make
    for name in names:
        registry._CONFIGS.pop(name, None)


@functools.lru_cache(maxsize=None)
def _graph():
    gen = torch.Generator().manual_seed(0)
    src, dst = torch.randint(0, 30, (2, 120), generator=gen)
    edge_feat = torch.rand(120, 8, generator=gen)
    feat = torch.zeros(30, 8).index_add_(0, dst, edge_feat)
    species = F.one_hot(torch.randint(0, 8, (30,), generator=gen), 8).float()
    return dgl.graph((src, dst), num_nodes=30), feat, edge_feat, species


def outputs(model) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(*_graph())


def tiny_model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return create_model("revgnn-deep", **{**TINY_ARGS, **overrides})


def assert_no_temp_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.rglob("*") if ".tmp" in p.name or p.name.endswith(".part")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "tiny.safetensors", tiny_model(), metadata={"val_rocauc": 0.5, "epoch": 7})


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def http_dir(tmp_path) -> Iterator:
    """A local HTTP server on 127.0.0.1 serving a temporary folder (never the internet)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = type("Handler", (_CountingHandler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------------------ round trips
def test_round_trip_by_path(saved):
    model = tiny_model()
    ckpt = load_checkpoint(saved)
    assert ckpt.architecture == "revgnn" and ckpt.name == "revgnn-deep"
    assert ckpt.arguments == TINY_ARGS
    assert ckpt.metadata == {"val_rocauc": 0.5, "epoch": 7}
    assert ckpt.state_dict.keys() == model.state_dict().keys()
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in model.state_dict().items())

    loaded = create_model("revgnn-deep", pretrained=saved, **TINY_ARGS)
    assert torch.equal(outputs(loaded), outputs(model))
    rebuilt = build_from_checkpoint(saved)
    assert rebuilt.zoo_config["arguments"] == TINY_ARGS
    assert rebuilt.checkpoint_metadata["epoch"] == 7
    assert torch.equal(outputs(rebuilt), outputs(model))
    assert not torch.equal(outputs(tiny_model(seed=1)), outputs(model))  # the weights really matter


def test_round_trip_by_name_from_cache(saved, cache, make_card, http_dir):
    _, base, requests = http_dir
    digest = sha256_file(saved)
    # The card names a URL; the verified cached copy is used without ever asking for it.
    name = make_card({"source": "url", "url": f"{base}/never-fetched.safetensors", "sha256": digest})
    dest = checkpoints_dir() / f"{name}.safetensors"
    dest.parent.mkdir(parents=True)
    shutil.copy(saved, dest)
    assert checkpoint_file(get_config(name)) == dest
    assert cache_dir() == cache

    model = create_model(name, pretrained=True)
    assert torch.equal(outputs(model), outputs(tiny_model()))
    assert requests == []
    assert_no_temp_files(cache)


def test_save_is_readable_by_plain_safetensors(saved):
    """The file is a standard safetensors file: other tools read the weights and the JSON config."""
    from safetensors import safe_open

    with safe_open(str(saved), framework="pt") as fh:
        config = json.loads(fh.metadata()["revgnn_dgl"])
        assert "layers.1.gnn_modules.1.conv.mlp.3.weight" in fh.keys()
    assert config["format_version"] == 2 and config["architecture"] == "revgnn"
    assert len(config["sha256"]) == len(config["data_sha256"]) == 64


def test_save_handles_shared_tensors(tmp_path):
    """safetensors refuses tensors sharing storage: tied weights are saved as copies."""
    model = tiny_model()
    model.layers[0].gnn_modules[1].conv.mlp[0].weight = model.layers[0].gnn_modules[0].conv.mlp[0].weight  # tie
    path = save_checkpoint(tmp_path / "tied.safetensors", model)
    back = load_checkpoint(path).state_dict
    assert torch.equal(
        back["layers.0.gnn_modules.1.conv.mlp.0.weight"], back["layers.0.gnn_modules.0.conv.mlp.0.weight"]
    )
    wt = create_model("wt-revgnn-80", num_layers=3, hidden=16)
    assert torch.equal(outputs(build_from_checkpoint(save_checkpoint(tmp_path / "wt.safetensors", wt))), outputs(wt))


def test_save_requires_a_known_architecture(tmp_path):
    with pytest.raises(CheckpointError, match="architecture is unknown"):
        save_checkpoint(tmp_path / "x.safetensors", torch.nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="not JSON-serialisable"):
        save_checkpoint(tmp_path / "x.safetensors", tiny_model(), metadata={"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_error_is_a_zoo_error():
    assert issubclass(CheckpointError, ZooError)


# ------------------------------------------------------------------ broken files
def test_missing_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match=f"checkpoint file {missing} does not exist"):
        load_checkpoint(missing)
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("revgnn-deep", pretrained=missing, **TINY_ARGS)


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"", "not a safetensors file: it has only 0 bytes"),
        (b"PK\x03\x04" + bytes(200), "not a safetensors file"),  # a zip (.pth) file
        (
            (40).to_bytes(8, "little") + b"{this is not json" + bytes(40),
            "not a safetensors file, or its header is corrupted",
        ),
    ],
    ids=["empty", "zip", "bad-header"],
)
def test_not_a_safetensors_file(tmp_path, content, pattern):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(path)


def test_corrupted_tensor_data(saved):
    data = bytearray(saved.read_bytes())
    data[-10] ^= 0xFF  # flip bits inside the last tensor
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted: its tensor data does not match the checksum"):
        load_checkpoint(saved)


@pytest.mark.parametrize("keep", [0.5, 0.999, 12 / 1e9])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: max(int(len(data) * keep), 12)])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(saved)


def test_trailing_garbage(saved):
    saved.write_bytes(saved.read_bytes() + b"junk")
    with pytest.raises(CheckpointError, match="4 unexpected bytes"):
        load_checkpoint(saved)


def test_safetensors_without_our_metadata(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file(tiny_model().state_dict(), str(path))
    with pytest.raises(CheckpointError, match="not a revgnn_dgl checkpoint"):
        load_checkpoint(path)


def test_newer_format_version_refused(tmp_path):
    path = tmp_path / "future.safetensors"
    config = {"format_version": 99, "architecture": "revgnn", "arguments": TINY_ARGS}
    save_file(tiny_model().state_dict(), str(path), metadata={"revgnn_dgl": json.dumps(config)})
    with pytest.raises(CheckpointError, match="format 99, newer"):
        load_checkpoint(path)


# ------------------------------------------------------------------ another model
def test_checkpoint_of_another_architecture(tmp_path):
    path = save_checkpoint(tmp_path / "wt.safetensors", create_model("wt-revgnn-80", num_layers=2, hidden=16))
    with pytest.raises(CheckpointError, match="architecture 'wt-revgnn' \\(model 'wt-revgnn-80'\\), not 'revgnn'"):
        create_model("revgnn-deep", pretrained=path, **TINY_ARGS)


def test_checkpoint_with_other_arguments(saved):
    with pytest.raises(CheckpointError, match="saved with num_layers=2 but the model has num_layers=3"):
        create_model("revgnn-deep", pretrained=saved, **{**TINY_ARGS, "num_layers": 3})
    # Arguments that do not change the weights are not a mismatch.
    model = create_model("revgnn-deep", pretrained=saved, **{**TINY_ARGS, "dropout": 0.3})
    assert torch.equal(outputs(model), outputs(tiny_model()))


def test_missing_unexpected_and_misshaped_keys(saved):
    # Without argument checks, the key and shape checks still name the first offending key.
    with pytest.raises(
        CheckpointError,
        match="lacks 20 weight\\(s\\) of the model, the first being 'layers.2.gnn_modules.0.norm.weight'",
    ):
        load_weights(tiny_model(num_layers=3), saved)
    with pytest.raises(
        CheckpointError,
        match="has 20 weight\\(s\\) the model does not, the first being 'layers.1.gnn_modules.0.conv.edge_encoder.bias'",
    ):
        load_weights(tiny_model(num_layers=1), saved)
    with pytest.raises(
        CheckpointError,
        match="weight 'node_encoder.weight' has shape \\(16, 16\\) in the checkpoint but \\(32, 16\\) in the model",
    ):
        load_weights(tiny_model(hidden=32), saved)


# ------------------------------------------------------------------ hub: cache, hash, download
def test_cached_file_with_wrong_hash(saved, cache, make_card):
    name = make_card({"source": "url", "url": "http://127.0.0.1:9/x.safetensors", "sha256": "0" * 64})
    dest = checkpoints_dir() / f"{name}.safetensors"
    dest.parent.mkdir(parents=True)
    shutil.copy(saved, dest)
    with pytest.raises(CheckpointError, match=f"cached checkpoint {dest} has sha256 {sha256_file(saved)}.*Delete it"):
        create_model(name, pretrained=True)
    assert dest.read_bytes() == saved.read_bytes()  # the user's file is reported, not deleted
    assert_no_temp_files(cache)


def test_download_verifies_and_caches(saved, cache, make_card, http_dir):
    folder, base, requests = http_dir
    shutil.copy(saved, folder / "tiny.safetensors")
    name = make_card({"source": "url", "url": f"{base}/tiny.safetensors", "sha256": sha256_file(saved)})
    model = create_model(name, pretrained=True)
    assert torch.equal(outputs(model), outputs(tiny_model()))
    assert requests == ["/tiny.safetensors"]
    create_model(name, pretrained=True)  # second time: from the cache, no request
    assert requests == ["/tiny.safetensors"]
    assert sorted(p.name for p in checkpoints_dir().iterdir()) == [f"{name}.safetensors"]


def test_download_with_wrong_hash_leaves_nothing(saved, cache, make_card, http_dir):
    folder, base, _ = http_dir
    shutil.copy(saved, folder / "tiny.safetensors")
    name = make_card({"source": "url", "url": f"{base}/tiny.safetensors", "sha256": "f" * 64})
    with pytest.raises(CheckpointError, match="has sha256 .*expected f{64}; it was discarded"):
        create_model(name, pretrained=True)
    assert list(checkpoints_dir().iterdir()) == []


def test_download_errors_say_where_to_put_the_file(cache, make_card, http_dir):
    _, base, _ = http_dir
    name = make_card({"source": "url", "url": f"{base}/missing.safetensors", "sha256": "a" * 64})
    dest = checkpoint_file(get_config(name))
    with pytest.raises(CheckpointError, match=f"could not download .*missing.safetensors.*put it at {dest}"):
        pretrained_path(get_config(name))
    assert list(checkpoints_dir().iterdir()) == []


def test_offline_download_error(tmp_path):
    import socket

    with socket.socket() as sock:  # a port on which nothing listens: "connection refused", as offline
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dest = tmp_path / "c" / "x.safetensors"
    with pytest.raises(
        CheckpointError, match=f"could not download http://127.0.0.1:{port}/x.*offline.*put it at {dest}"
    ):
        download(f"http://127.0.0.1:{port}/x", dest, "0" * 64, timeout=5)
    assert list(dest.parent.iterdir()) == []


def test_manual_import_card_explains_what_to_do(cache):
    config = get_config("revgnn-deep")
    dest = cache / "checkpoints" / "revgnn-deep.safetensors"
    with pytest.raises(CheckpointError) as info:
        create_model("revgnn-deep", pretrained=True, num_layers=2)
    message = str(info.value)
    assert "revgnn-dgl zoo import revgnn_deep.pth --model deep" in message
    assert config["checkpoint"]["url"] in message and str(dest) in message
    assert "\n" not in message


def test_card_without_weights(cache):
    with pytest.raises(CheckpointError, match="'wt-revgnn-80' has no pretrained weights.*never released"):
        create_model("wt-revgnn-80", pretrained=True)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("REVGNN_DGL_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "revgnn_dgl"
    assert checkpoints_dir() == tmp_path / ".cache" / "revgnn_dgl" / "checkpoints"


# ------------------------------------------------------------------ kill safety
def test_failed_save_keeps_previous_file(saved, monkeypatch):
    before = saved.read_bytes()

    def crash(path):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt_mod.os, "fsync", crash)  # the new file is fully written, then this fails
    with pytest.raises(CheckpointError, match="could not write checkpoint .*disk full"):
        save_checkpoint(saved, tiny_model(seed=5))
    assert saved.read_bytes() == before
    assert_no_temp_files(saved.parent)
    assert torch.equal(outputs(build_from_checkpoint(saved)), outputs(tiny_model()))


def test_interrupted_save_keeps_previous_file(saved, monkeypatch):
    """An interrupt (KeyboardInterrupt, like a kill) half-way through writing."""
    import os as _os

    before = saved.read_bytes()
    real_fdopen = _os.fdopen

    class HalfWritten:  # the temporary file gets half the bytes, then the interrupt comes
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.os, "fdopen", lambda fd, *a, **k: HalfWritten(real_fdopen(fd, *a, **k)))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(saved, tiny_model(seed=5))
    assert saved.read_bytes() == before
    assert_no_temp_files(saved.parent)


def test_failed_rename_keeps_previous_file(saved, monkeypatch):
    import os

    before = saved.read_bytes()
    monkeypatch.setattr(ckpt_mod.os, "replace", lambda *a: (_ for _ in ()).throw(PermissionError("read-only")))
    with pytest.raises(CheckpointError, match="read-only"):
        save_checkpoint(saved, tiny_model(seed=5))
    monkeypatch.setattr(ckpt_mod.os, "replace", os.replace)
    assert saved.read_bytes() == before
    assert_no_temp_files(saved.parent)


# ------------------------------------------------------------------ format 1: only where a card pins the file
def test_format_1_is_read_only_where_the_whole_file_is_pinned(tmp_path):
    from revgnn_dgl.zoo import get_config
    from revgnn_dgl.zoo.hub import bundled_path

    card = get_config("revgnn-cora-64")
    path = bundled_path(card)  # a committed format-1 file, its sha256 in the card
    pinned = card["checkpoint"]["sha256"]
    assert load_checkpoint(path, pinned_sha256=pinned).format_version == 1
    with pytest.raises(CheckpointError, match="format 1, whose metadata no checksum covers"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="format 1, whose metadata no checksum covers"):
        load_checkpoint(path, pinned_sha256="0" * 64)
    # Saved again, it is format 2 with bit-identical weights.
    model = create_model("revgnn-cora-64", pretrained=True)
    again = save_checkpoint(tmp_path / "again.safetensors", model)
    reread = load_checkpoint(again)
    assert reread.format_version == 2
    original = load_checkpoint(path, pinned_sha256=pinned).state_dict
    assert all(torch.equal(reread.state_dict[k], original[k]) for k in original)
