"""Bundled pretrained weights (``checkpoint.source: bundled``): every such card's metrics are
reproduced exactly by ``revgnn-dgl evaluate --model NAME --pretrained``, and a modified copy of
its weights is refused."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from suite_env import DATA_ENV_VAR

from revgnn_dgl import get_config, list_models
from revgnn_dgl.cli import cli
from revgnn_dgl.data.catalog import dataset_info
from revgnn_dgl.zoo import hub
from revgnn_dgl.zoo.checkpoint import CheckpointError, sha256_file

BUNDLED = [name for name in list_models() if (get_config(name).get("checkpoint") or {}).get("source") == "bundled"]


def test_some_cards_bundle_weights():
    assert BUNDLED, "no zoo card ships bundled weights"


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_file_matches_card(name):
    card = get_config(name)
    path = hub.pretrained_path(card)
    assert path.is_file() and path.is_relative_to(hub.zoo_dir())
    assert sha256_file(path) == card["checkpoint"]["sha256"]
    assert path.stat().st_size < 5 * 2**20, "bundled weights must stay small"


@pytest.mark.parametrize("name", BUNDLED)
def test_evaluate_pretrained_reproduces_card_metrics(name, request, monkeypatch):
    card = get_config(name)
    info = dataset_info(card["dataset"])
    if info.storage != "generated":
        # Missing data fails in CI (or with REVGNN_DGL_DATA set) and skips only on a user's
        # checkout (tests/suite_env.py); a loader that fails on data that is there fails the test.
        folder = request.getfixturevalue("dataset_dir")(info.folder)
        monkeypatch.setenv(DATA_ENV_VAR, str(folder.parent))  # the CLI reads the same folder
    result = CliRunner().invoke(
        cli, ["evaluate", "--model", name, "--pretrained", "--json", "--threads", "1", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output.strip().splitlines()[-1])
    metrics = card["metrics"]
    assert scores["metric"] == metrics["metric"]
    assert scores["val"] == pytest.approx(metrics["val"], abs=1e-6)
    assert scores["test"] == pytest.approx(metrics["test"], abs=1e-6)
    assert (scores["eval_parts"], scores["eval_views"], scores["seed"]) == tuple(
        card["eval"][k] for k in ("parts", "views", "seed")
    )
    assert scores["card"] == {"metric": metrics["metric"], "val": metrics["val"], "test": metrics["test"]}


def test_evaluate_pretrained_prints_the_cards_figures_beside_its_own():
    result = CliRunner().invoke(cli, ["evaluate", "--model", "revgnn-synthetic-proteins", "--pretrained", "--threads", "1",
                                      "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = get_config("revgnn-synthetic-proteins")["metrics"]
    assert result.output.splitlines()[-1] == (
        f"the card says val {metrics['val']:.6f}, test {metrics['test']:.6f}: reproduced."
    )


@pytest.mark.parametrize("name", BUNDLED[:1])
def test_tampered_bundled_weights_are_refused(name, tmp_path, monkeypatch):
    card = get_config(name)
    relative = card["checkpoint"]["file"]
    copy = tmp_path / relative
    copy.parent.mkdir(parents=True)
    shutil.copyfile(hub.pretrained_path(card), copy)
    monkeypatch.setattr(hub, "zoo_dir", lambda: tmp_path)
    assert hub.pretrained_path(card) == copy  # an intact copy is accepted

    data = bytearray(copy.read_bytes())
    data[-1] ^= 0x01  # one bit of the last weight
    copy.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        hub.pretrained_path(card)
    result = CliRunner().invoke(cli, ["evaluate", "--model", name, "--pretrained", "--threads", "1", "--device", "cpu"])
    assert result.exit_code == 1 and "sha256" in result.output

    copy.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        hub.pretrained_path(card)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"source": "bundled", "file": "../escape.safetensors", "sha256": "0" * 64}, "inside the zoo folder"),
        ({"source": "bundled", "file": "weights/x.safetensors"}, "sha256"),
    ],
)
def test_bad_bundled_cards(section, message):
    with pytest.raises(CheckpointError, match=message):
        hub.pretrained_path({"name": "bad", "checkpoint": section})
