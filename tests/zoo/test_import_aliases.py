"""``zoo import`` of an official-layout file whose tensors are dense, non-overlapping views of one
storage (issue 34): each view passes the per-tensor checks, but together they ask for far more than
the file holds; refused with the figures in seconds, before anything is allocated."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from revgnn_dgl.cli import cli
from revgnn_dgl.data.safe_torch import TorchFileError, load_torch_file


def _official_layout():
    """tests/zoo/test_convert.py's official layout (the folder is not on sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_official", Path(__file__).with_name("test_convert.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.official_layout


official_layout = _official_layout()


def aliased_official_file(path: Path, num_layers: int = 40, hidden: int = 512) -> int:
    """Every tensor of the official layout a view of one 2 MB storage; returns the views' bytes."""
    storage = torch.zeros(1 << 19)  # 2 MiB of float32
    state, total = {}, 0
    for i, (key, shape) in enumerate(official_layout(num_layers, hidden).items()):
        numel = 1
        for n in shape:
            numel *= n
        offset = i % ((1 << 19) - numel + 1)  # distinct views, each inside the storage
        state[key] = storage[offset : offset + numel].view(shape)
        total += numel * 4
    torch.save({"model_state_dict": state}, path)
    return total


def test_aliased_views_are_refused_in_seconds(tmp_path: Path) -> None:
    pth = tmp_path / "aliased.pth"
    asked = aliased_official_file(pth)
    assert asked > 50 * (1 << 21) and pth.stat().st_size < 3 * (1 << 20)
    tic = time.monotonic()
    with pytest.raises(TorchFileError, match="alias"):
        load_torch_file(pth)
    result = CliRunner().invoke(cli, ["zoo", "import", str(pth), "--out", str(tmp_path / "out.safetensors")])
    seconds = time.monotonic() - tic
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(lines) == 1 and "alias" in lines[0], result.output
    assert (
        "bytes its storages hold" in lines[0]
        and "2 x the 2097152 bytes" in lines[0]
        and not (tmp_path / "out.safetensors").exists()
    )
    assert seconds < 10, seconds


def test_a_tied_weight_is_still_read(tmp_path: Path) -> None:
    shared = torch.randn(4, 3)
    path = tmp_path / "tied.pt"
    torch.save({"a": shared, "b": shared, "c": shared[1:], "d": torch.ones(2)}, path)
    loaded = load_torch_file(path)
    assert torch.equal(loaded["a"], shared) and torch.equal(loaded["c"], shared[1:])
