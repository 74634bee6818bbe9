"""``revgnn-dgl info --check``: the checks run and pass on CPU, and a failing one is named on the last line."""

from __future__ import annotations

from typing import List

import pytest
import torch
from click.testing import CliRunner

from revgnn_dgl.bench import selfcheck
from revgnn_dgl.cli import cli


def test_info_check_passes_on_cpu() -> None:
    result = CliRunner().invoke(cli, ["info", "--check", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == "check: passed"
    backward = next(line for line in lines if "reversible backward vs autograd" in line)
    assert backward.lstrip().startswith("ok") and "relative error" in backward
    memory = next(line for line in lines if "memory flat in depth" in line)
    assert "at 4 layers" in memory and "at 16" in memory
    assert any(line.lstrip().startswith("skip") and "distributed step" in line for line in lines)


def test_a_failing_check_is_named_on_the_last_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # Memory that grows with depth, as a non-reversible network's does, must fail the check.
    peaks = {4: 10.0, 16: 40.0}
    monkeypatch.setattr(selfcheck, "_step_peak", lambda device, depth: peaks[depth])
    assert not selfcheck.run_checks("cpu")
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("check: FAILED: memory flat in depth (") and "x4.00" in lines[-1]


def test_reversible_check_detects_a_wrong_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    original = selfcheck._gradients

    def skewed(model: torch.nn.Module, run, seed: int) -> List[torch.Tensor]:
        grads = original(model, run, seed)
        if any(getattr(m, "disable", True) is False for m in model.modules() if hasattr(m, "disable")):
            grads[0] = grads[0] * 1.01  # the memory-saving path off by 1 %
        return grads

    monkeypatch.setattr(selfcheck, "_gradients", skewed)
    result = selfcheck.check_reversible_backward(torch.device("cpu"))
    assert not result.passed and result.detail.startswith("relative error")
