"""The docs' graph-file example (docs/own-graph.md), run exactly as written, produces a file that trains."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from revgnn_dgl.cli import cli
from revgnn_dgl.train import read_metrics

README = Path(__file__).resolve().parents[1] / "docs" / "own-graph.md"  # where the graph-file example lives


def example_code() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- graph-file-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/own-graph.md lost its graph-file example"
    return match.group(1)


def test_readme_graph_file_example_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = example_code()
    assert len(code.strip().splitlines()) <= 10
    exec(compile(code, "README.md", "exec"), {})
    with _no_unused_key_warning():
        result = CliRunner().invoke(cli, ["train", "--dataset", "my_graph.bin", "--model", "revgnn-112",
                                          "--num-layers", "4", "--hidden", "16", "--train-parts", "1",
                                          "--epochs", "3", "--device", "cpu", "--out", "runs/mine"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in read_metrics(tmp_path / "runs" / "mine")] == [1, 2, 3]
    assert "edge_feats 8 -> 2" in result.output and "in_feats 8 -> 16" in result.output


@pytest.mark.slow
def test_readme_graph_file_example_is_learnable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its labels can be learned (a newcomer's first run should not look like a failure): a short
    run of a small model is far above chance (0.25 for its 4 classes)."""
    monkeypatch.chdir(tmp_path)
    exec(compile(example_code(), "README.md", "exec"), {})
    result = CliRunner().invoke(cli, ["train", "--dataset", "my_graph.bin", "--model", "revgnn-112",
                                      "--num-layers", "4", "--hidden", "16", "--train-parts", "1", "--epochs", "40",
                                      "--lr", "0.01", "--threads", "1", "--device", "cpu", "--out", "runs/mine"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert max(r["val"] for r in read_metrics(tmp_path / "runs" / "mine")) >= 0.5


class _no_unused_key_warning:
    """Every key the example writes is read: no DatasetWarning."""

    def __enter__(self):
        import warnings

        self._catcher = warnings.catch_warnings(record=True)
        self.records = self._catcher.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catcher.__exit__(*exc)
        from revgnn_dgl.data import DatasetWarning

        assert not [w for w in self.records if issubclass(w.category, DatasetWarning)]
