"""``root`` has one meaning: the folder holding dataset folders (or a dataset's own folder)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from revgnn_dgl.data import DatasetError, load_dataset
from revgnn_dgl.data.paths import (
    DATA_ENV_VAR,
    DEFAULT_OGB_ROOT,
    PROJECT_ROOT,
    dataset_folder,
    default_data_root,
    ogb_root,
)


def test_default_data_root(tmp_path, monkeypatch):
    """Both kinds of checkout, whatever this machine has: with ``../shared/data`` beside it, and
    without (a user's clone), where the per-user folder is the answer."""
    from revgnn_dgl.data import paths

    for name in (DATA_ENV_VAR, "REVGNN_DGL_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    user = tmp_path / "home" / ".cache" / "revgnn_dgl" / "data"
    shared = tmp_path / "shared" / "data"
    monkeypatch.setattr(paths, "checkout_data_root", lambda: shared)
    assert default_data_root() == user  # a user's clone: no ../shared
    shared.mkdir(parents=True)
    assert default_data_root() == shared  # a checkout with ../shared/data beside it
    monkeypatch.setenv(DATA_ENV_VAR, "")  # empty counts as unset
    assert default_data_root() == shared
    monkeypatch.setenv(DATA_ENV_VAR, "/somewhere/data")
    assert default_data_root() == Path("/somewhere/data")
    assert (PROJECT_ROOT / "revgnn_dgl" / "data" / "paths.py").is_file()


def test_dataset_folder_rules(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "env"))
    assert dataset_folder("cora") == tmp_path / "env" / "cora"
    assert dataset_folder("cora", tmp_path) == tmp_path / "cora"  # the folder holding cora/
    own = tmp_path / "my_copy"
    own.mkdir()
    (own / "ind.cora.x").write_bytes(b"")
    assert dataset_folder("cora", own, files=("ind.cora.*",)) == own  # recognised by its files
    assert dataset_folder("cora", tmp_path / "x" / "cora") == tmp_path / "x" / "cora"  # by its name
    nested = tmp_path / "cora"
    (nested / "cora").mkdir(parents=True)
    assert dataset_folder("cora", nested) == nested / "cora"  # a data root that happens to be named cora


def test_ogb_root_rules(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    assert ogb_root("ogbn_proteins") == DEFAULT_OGB_ROOT.expanduser()
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    assert ogb_root("ogbn_proteins") == tmp_path
    assert ogb_root("ogbn_proteins", tmp_path / "r") == tmp_path / "r"
    assert ogb_root("ogbn_proteins", tmp_path / "ogbn_proteins") == tmp_path  # its own folder
    assert ogb_root("ogbn_proteins", tmp_path / "ogbn_proteins_dgl") == tmp_path
    renamed = tmp_path / "proteins"
    renamed.mkdir()
    (renamed / "RELEASE_v1.txt").write_text("")
    assert ogb_root("ogbn_proteins", renamed) == tmp_path


@pytest.mark.parametrize(
    "name, folder",
    [
        ("cora", "cora"),
        ("citeseer", "citeseer"),
        ("humloc", "humloc"),
        ("amazon-computers", "amazon_computers"),  # coauthor-cs reads the same way, 12x the features
    ],
)
def test_both_root_forms_and_env_load_the_same_data(dataset_dir, monkeypatch, name, folder):
    own = dataset_dir(folder)
    by_parent = load_dataset(name, root=own.parent)
    by_own = load_dataset(name, root=own)
    monkeypatch.setenv(DATA_ENV_VAR, str(own.parent))
    by_env = load_dataset(name)
    for ds in (by_own, by_env):
        assert ds.graph.num_nodes() == by_parent.graph.num_nodes()
        assert ds.graph.num_edges() == by_parent.graph.num_edges()
        assert (ds.train_idx == by_parent.train_idx).all()


def test_copied_dataset_folder_under_another_name(dataset_dir, tmp_path):
    copy = tmp_path / "my cora copy"
    shutil.copytree(dataset_dir("cora"), copy)
    assert load_dataset("cora", root=copy).graph.num_nodes() == 2708


@pytest.mark.parametrize(
    "name, folder",
    [
        ("cora", "cora"),
        ("citeseer", "citeseer"),
        ("humloc", "humloc"),
        ("amazon-computers", "amazon_computers"),
        ("amazon-photo", "amazon_photo"),
        ("coauthor-cs", "coauthor_cs"),
        ("coauthor-physics", "coauthor_physics"),
    ],
)
def test_missing_data_hint_is_cli_worded(tmp_path, monkeypatch, name, folder):
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(DatasetError) as err:
        load_dataset(name)
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / folder) in message
    assert f"pass --root DIR or set REVGNN_DGL_DATA=DIR, DIR being the folder that holds {folder}/" in message
    assert "root=" not in message and "<folder>" not in message


def test_ogbn_proteins_hint_is_cli_worded(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("ogbn-proteins", root=tmp_path, download="false")
    message = str(err.value)
    assert f"ogbn-proteins is not under {tmp_path}" in message
    assert "the option download=false turns downloads off" in message
    assert "pass --root DIR or set REVGNN_DGL_DATA=DIR, DIR being the folder that holds ogbn_proteins/" in message
    assert "root=<" not in message and "download=False" not in message


def test_ogbn_proteins_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(DatasetError, match=f"ogbn-proteins is not under {tmp_path} "):
        load_dataset("ogbn-proteins", download=False)


@pytest.mark.parametrize("name", ["cora", "humloc", "coauthor-cs", "ogbn-proteins"])
def test_root_that_is_a_file(tmp_path, name):
    path = tmp_path / "cora.zip"
    path.write_bytes(b"")
    with pytest.raises(DatasetError) as err:
        load_dataset(name, root=path)
    assert str(err.value).startswith(
        f"the data root {path} is a file, not a folder: pass --root DIR or set REVGNN_DGL_DATA=DIR"
    )


def test_default_data_root_order(tmp_path, monkeypatch):
    """$REVGNN_DGL_DATA, else the per-user folder if it exists, else this checkout's ../shared/data."""
    from revgnn_dgl.data.paths import PROJECT_ROOT, default_data_root, user_data_root

    for name in ("REVGNN_DGL_DATA", "REVGNN_DGL_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    shared = PROJECT_ROOT.parent / "shared" / "data"
    expected = shared if shared.is_dir() else tmp_path / ".cache" / "revgnn_dgl" / "data"
    assert default_data_root() == expected  # a checkout, no per-user folder
    (tmp_path / ".cache" / "revgnn_dgl" / "data").mkdir(parents=True)
    assert default_data_root() == user_data_root() == tmp_path / ".cache" / "revgnn_dgl" / "data"
    monkeypatch.setenv("REVGNN_DGL_CACHE", str(tmp_path / "cache"))
    assert user_data_root() == tmp_path / "cache" / "data"
    monkeypatch.setenv("REVGNN_DGL_DATA", str(tmp_path / "env"))
    assert default_data_root() == tmp_path / "env"


def test_a_per_user_folder_without_the_dataset_does_not_hide_the_checkouts(tmp_path, monkeypatch):
    """A clone whose user already has ~/.cache/revgnn_dgl/data (other datasets) still finds ../shared/data's."""
    from revgnn_dgl.data import paths
    from revgnn_dgl.data.base import default_data_dir

    for name in ("REVGNN_DGL_DATA", "REVGNN_DGL_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    shared = tmp_path / "shared" / "data"
    monkeypatch.setattr(paths, "checkout_data_root", lambda: shared)
    user = tmp_path / ".cache" / "revgnn_dgl" / "data"
    (user / "citeseer").mkdir(parents=True)
    (shared / "cora").mkdir(parents=True)
    assert paths.default_data_root() == user
    assert paths.dataset_folder("cora") == default_data_dir("cora") == shared / "cora"
    assert paths.dataset_folder("citeseer") == user / "citeseer"  # the per-user copy comes first
    assert paths.dataset_folder("humloc") == user / "humloc"  # in neither: the error names the user folder
    (user / "cora").mkdir()
    assert paths.dataset_folder("cora") == user / "cora"
    monkeypatch.setenv("REVGNN_DGL_DATA", str(tmp_path / "env"))
    assert paths.dataset_folder("cora") == tmp_path / "env" / "cora"  # the variable is the only place
