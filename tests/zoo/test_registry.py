"""The model zoo: cards, their schema, published parameter counts, errors, and cards shipped inside
an installed wheel (the full 1001-layer model's gradients: tests/models/test_revgnn_deep.py)."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from suite_env import missing_requirement
from torch import nn

import revgnn_dgl
from revgnn_dgl import ZooError, create_model, get_config, list_models, register_model
from revgnn_dgl.zoo.registry import REQUIRED_CARD_FIELDS, card_paths, resolve_name

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_SOURCES = ("official", "url", "bundled", "none")


def _card_files() -> dict:
    """path -> parsed YAML of every card shipped in zoo/NAME/card.yaml."""
    out = {}
    for path in card_paths():
        with open(path, encoding="utf-8") as fh:
            out[path] = yaml.safe_load(fh)
    return out


@functools.lru_cache(maxsize=None)
def _built(name: str) -> nn.Module:
    """Each card's model, built once per session (the 1001-layer one takes seconds)."""
    torch.manual_seed(0)
    return create_model(name)


@pytest.fixture(scope="module", autouse=True)
def _free_built_models():
    """Release the large models (about 350 MB) once this module's tests are done."""
    yield
    _built.cache_clear()


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------ listing and counts
def test_list_models_lists_the_cards():
    names = sorted(str(card["name"]).lower() for card in _card_files().values())
    assert names, "no model cards found in revgnn_dgl/zoo/cards/"
    assert set(names) <= set(list_models())
    assert {"revgnn-deep", "revgnn-wide", "revgnn-112", "wt-revgnn-80", "resgnn-112"} <= set(names)
    assert list_models("revgnn-*") == sorted(n for n in list_models() if n.startswith("revgnn-"))


@pytest.mark.parametrize(
    "name, expected",
    [("revgnn-deep", 20_031_384), ("revgnn-wide", 68_471_608)],  # the OGB leaderboard entries
)
def test_published_parameter_counts(name, expected):
    assert _num_params(_built(name)) == expected


# ------------------------------------------------------------------ card schema (every card)
@pytest.mark.parametrize("name", list_models())
def test_card_schema(name):
    card = get_config(name)
    missing = [f for f in REQUIRED_CARD_FIELDS if f not in card]
    assert not missing, f"card {name} lacks {missing}"
    assert card["name"] == name
    assert isinstance(card["architecture"], str) and card["architecture"] in revgnn_dgl.list_architectures()
    assert isinstance(card["arguments"], dict) and card["arguments"]
    assert isinstance(card["dataset"], str) and card["dataset"]
    assert isinstance(card["citation"], str) and card["citation"].strip()
    assert isinstance(card["parameters"], int) and card["parameters"] > 0

    ckpt = card["checkpoint"]
    assert isinstance(ckpt, dict) and ckpt.get("source") in CHECKPOINT_SOURCES, f"{name}: checkpoint.source"
    if ckpt["source"] != "none":
        assert ckpt.get("file", "").endswith(".safetensors"), f"{name}: checkpoint.file"
        assert ckpt.get("url") or ckpt.get("how"), f"{name}: a checkpoint needs a url or import instructions"
    if ckpt["source"] == "url":
        assert ckpt.get("sha256"), f"{name}: a downloadable checkpoint must record its sha256"
    if ckpt.get("official_file"):
        assert ckpt.get("how"), f"{name}: a manual import must say how"

    for alias in card.get("aliases", []):
        assert resolve_name(alias) == name
        assert get_config(alias)["name"] == name

    model = _built(name)
    assert _num_params(model) == card["parameters"], f"{name}: the card's parameter count is wrong"
    assert model.zoo_config == {"name": name, "architecture": card["architecture"], "arguments": card["arguments"]}


def test_card_folders_are_named_after_their_model():
    for path, card in _card_files().items():
        assert path.parent.name == card["name"], f"{path} holds card {card['name']!r}"
        assert path.parent.parent == REPO_ROOT / "zoo", f"{path} is not in the top-level zoo/ folder"
        # A model folder holds its card and, when bundled, its weights: nothing stray.
        extra = {p.name for p in path.parent.iterdir()} - {"card.yaml", "weights.safetensors"}
        assert not extra, f"{path.parent} holds {sorted(extra)}"
        bundled = (card.get("checkpoint") or {}).get("source") == "bundled"
        assert (path.parent / "weights.safetensors").is_file() == bundled, path.parent


# ------------------------------------------------------------------ errors
def test_unknown_model():
    with pytest.raises(ZooError, match=r"unknown model 'revgnn-dep'.*Known models: .*revgnn-deep"):
        create_model("revgnn-dep")


def test_unknown_model_suggests_close_names():
    with pytest.raises(ZooError, match=r"Did you mean .*revgnn-wide"):
        create_model("wid")


def test_unknown_override_argument():
    with pytest.raises(
        ZooError, match=r"unknown argument\(s\) num_layer for architecture 'revgnn'; valid: .*num_layers"
    ):
        create_model("revgnn-deep", num_layer=3)


def test_bad_argument_value():
    with pytest.raises(ZooError, match=r"cannot build 'revgnn'.*not divisible"):
        create_model("revgnn-deep", num_layers=2, hidden=81)


@pytest.mark.parametrize("key", ["name", "alias"])
def test_duplicate_registration(key):
    card = {**get_config("revgnn-deep"), "name": "a-new-name", "aliases": []}
    if key == "name":
        card["name"] = "revgnn-deep"
        pattern = "model name 'revgnn-deep' .* already registered"
    else:
        card["aliases"] = ["deep"]
        pattern = "model name 'deep' .* already registered"
    with pytest.raises(ZooError, match=pattern):
        register_model(card)
    assert "a-new-name" not in list_models()  # a refused card leaves nothing behind


def test_card_without_architecture():
    with pytest.raises(ZooError, match="lacks architecture"):
        register_model({"name": "no-arch-card", "arguments": {}})


# ------------------------------------------------------------------ cards from an installed wheel
def test_cards_found_from_installed_wheel(tmp_path):
    """Build a wheel offline, install it into a bare folder and list the cards from there.

    Built from a copy of the sources, so the build's egg-info and build/ folders never appear
    in the repository.
    """
    # setuptools<70 builds wheels only with the 'wheel' package (without it: "invalid command
    # 'bdist_wheel'"); the [test] extra installs it. Missing: fail in CI, skip on a user's checkout.
    for package in ("pip", "setuptools", "wheel"):
        if importlib.util.find_spec(package) is None:
            missing_requirement(
                f"building a wheel offline needs the {package!r} package, which is not installed",
                f"pip install {package}, or pip install -e '.[test]'",
            )
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO_ROOT / name, src / name)
    for folder in ("revgnn_dgl", "zoo"):
        shutil.copytree(REPO_ROOT / folder, src / folder, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    build = subprocess.run(
        pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert build.returncode == 0, f"building a wheel offline failed:\n{build.stdout[-2000:]}\n{build.stderr[-2000:]}"
    (wheel,) = (tmp_path / "dist").glob("revgnn_dgl-*.whl")
    target = tmp_path / "site"
    install = subprocess.run(
        pip + ["install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr[-2000:]

    probe = (
        "import json, revgnn_dgl; from revgnn_dgl.zoo.registry import card_paths; "
        "print(json.dumps({'file': revgnn_dgl.__file__, 'models': revgnn_dgl.list_models(), "
        "'cards': [str(p) for p in card_paths()]}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PYTHONPATH": str(target), "OUTDATED_IGNORE": "1"},
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(found["file"]).resolve().is_relative_to(target.resolve()), "imported the source tree, not the wheel"
    assert all(Path(p).resolve().is_relative_to(target.resolve()) for p in found["cards"])
    shipped = sorted(str(card["name"]) for card in _card_files().values())
    assert found["models"] == shipped
    # The bundled weights travel with their cards, byte for byte, and the zoo's index too.
    for card in _card_files().values():
        if (card.get("checkpoint") or {}).get("source") == "bundled":
            relative = card["checkpoint"]["file"]
            installed = target / "revgnn_dgl" / "zoo" / "cards" / relative
            assert installed.read_bytes() == (REPO_ROOT / "zoo" / relative).read_bytes(), relative
    assert (target / "revgnn_dgl" / "zoo" / "cards" / "README.md").is_file()

    # The data root of an installed package: $REVGNN_DGL_DATA, else the per-user folder (never a
    # path inside site-packages' parent, as ../shared/data of a checkout would be).
    probe = "from revgnn_dgl.data.paths import default_data_root; print(default_data_root())"
    home = tmp_path / "home"
    base_env = {k: v for k, v in env.items() if k not in ("REVGNN_DGL_DATA", "REVGNN_DGL_CACHE", "XDG_CACHE_HOME")}
    base_env.update(PYTHONPATH=str(target), OUTDATED_IGNORE="1", HOME=str(home))

    def data_root(**extra: str) -> Path:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                             env={**base_env, **extra}, cwd=tmp_path)  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        return Path(out.stdout.strip().splitlines()[-1])

    user = home / ".cache" / "revgnn_dgl" / "data"
    assert data_root() == user  # not there yet: named, so the error message says where to put data
    user.mkdir(parents=True)
    assert data_root() == user
    assert data_root(REVGNN_DGL_DATA=str(tmp_path / "mine")) == tmp_path / "mine"


def test_zoo_index_is_current():
    """zoo/README.md is exactly what `revgnn-dgl zoo list --markdown` writes from the cards."""
    from revgnn_dgl.zoo.registry import zoo_index_markdown

    text = (REPO_ROOT / "zoo" / "README.md").read_text(encoding="utf-8")
    assert text == zoo_index_markdown(), "zoo/README.md is stale: revgnn-dgl zoo list --markdown > zoo/README.md"
    for name in list_models():
        assert f"[`{name}`]({name}/card.yaml)" in text


def test_zoo_list_names_the_metric_and_the_measured_score():
    from revgnn_dgl.zoo.registry import card_rows

    rows = {row["name"]: row for row in card_rows()}
    assert rows["revgat-arxiv"]["paper test"] == "accuracy 74.02 ± 0.18"  # an accuracy card, not "-"
    assert rows["revgnn-deep"]["paper test"] == "rocauc 87.74 ± 0.13"
    card = get_config("revgnn-cora-64x64")  # a bundled card shows its own measured figures
    assert rows["revgnn-cora-64x64"]["measured val / test"] == (
        f"accuracy {card['metrics']['val']:.3f} / {card['metrics']['test']:.3f}"
    )
    assert rows["revgnn-deep"]["measured val / test"] == "-"


def test_unregister_model_removes_the_card_and_its_aliases():
    from revgnn_dgl import unregister_model

    register_model({"name": "tmp-unregister", "aliases": ["tmp-unreg"], "architecture": "mlp", "arguments": {}})
    assert get_config("tmp-unreg")["name"] == "tmp-unregister"
    unregister_model("tmp-unreg")
    assert "tmp-unregister" not in list_models()
    with pytest.raises(ZooError, match="unknown model"):
        get_config("tmp-unreg")
    register_model({"name": "tmp-unregister", "architecture": "mlp", "arguments": {}})  # the name is free again
    unregister_model("tmp-unregister")
