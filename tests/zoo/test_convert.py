"""Importing the official RevGNN checkpoints.

The official layout and forward pass are re-implemented here in plain torch, directly from the
reference sheet (section 2 and 5), independently of the package's modules: converted weights in
our model must compute the same function as the official architecture on the official keys.
"""

from __future__ import annotations

import os
import uuid
from typing import Dict

import dgl
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from revgnn_dgl import create_model, get_config, register_model
from revgnn_dgl.zoo import registry
from revgnn_dgl.zoo.checkpoint import CheckpointError, load_checkpoint, sha256_file
from revgnn_dgl.zoo.convert import convert_official_state_dict, import_official_checkpoint, official_key_map
from revgnn_dgl.zoo.hub import checkpoints_dir

L, D, C = 3, 80, 2  # a small RevGNN with the released width and groups


# ------------------------------------------------------------------ the official layout and forward
def official_layout(num_layers: int, hidden: int, groups: int = 2, tasks: int = 112) -> Dict[str, tuple]:
    """Official state-dict keys and shapes, written out from the reference sheet (section 5)."""
    d = hidden // groups
    shapes: Dict[str, tuple] = {}
    for layer in range(num_layers):
        for g in range(groups):
            pre = f"gcns.{layer}._fn.Fms.{g}"
            shapes.update(
                {
                    f"{pre}.norm.weight": (d,),
                    f"{pre}.norm.bias": (d,),
                    f"{pre}.gcn.mlp.0.weight": (2 * d, d),
                    f"{pre}.gcn.mlp.0.bias": (2 * d,),
                    f"{pre}.gcn.mlp.1.weight": (2 * d,),
                    f"{pre}.gcn.mlp.1.bias": (2 * d,),
                    f"{pre}.gcn.mlp.3.weight": (d, 2 * d),
                    f"{pre}.gcn.mlp.3.bias": (d,),
                    f"{pre}.gcn.edge_encoder.weight": (d, hidden),
                    f"{pre}.gcn.edge_encoder.bias": (d,),
                }
            )
    shapes.update(
        {
            "last_norm.weight": (hidden,),
            "last_norm.bias": (hidden,),
            "node_one_hot_encoder.weight": (8, 8),
            "node_one_hot_encoder.bias": (8,),
            "node_features_encoder.weight": (hidden, 16),
            "node_features_encoder.bias": (hidden,),
            "edge_encoder.weight": (hidden, 8),
            "edge_encoder.bias": (hidden,),
            "node_pred_linear.weight": (tasks, hidden),
            "node_pred_linear.bias": (tasks,),
        }
    )
    return shapes


def official_state_dict(num_layers: int = L, hidden: int = D, groups: int = C, seed: int = 0) -> Dict[str, Tensor]:
    """Random weights in the official layout (norm scales near 1, so activations stay informative)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_layout(num_layers, hidden, groups).items():
        value = torch.randn(shape, generator=gen) * (0.3 if len(shape) == 2 else 0.1)
        is_norm_scale = key.endswith("norm.weight") or key.endswith("mlp.1.weight")
        state[key] = value + 1.0 if is_norm_scale else value
    return state


def official_forward(sd, num_layers, groups, src, dst, node_feat, edge_attr, species) -> Tensor:
    """The released forward pass in eval mode, on the official keys (PyG-style scatter max)."""

    def lin(x, name):
        return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]

    def ln(x, name):
        return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)

    n = node_feat.shape[0]
    h = lin(torch.cat([node_feat, lin(species, "node_one_hot_encoder")], dim=1), "node_features_encoder")
    edge_emb = lin(edge_attr, "edge_encoder")  # once; every group gets the full edge embedding
    for layer in range(num_layers):
        xs = h.chunk(groups, dim=-1)
        y_in = sum(xs[1:])
        ys = []
        for g in range(groups):
            pre = f"gcns.{layer}._fn.Fms.{g}"
            x = F.relu(ln(y_in, f"{pre}.norm"))  # norm -> relu -> (dropout: eval) -> GENConv
            e = lin(edge_emb, f"{pre}.gcn.edge_encoder")
            msg = F.relu(x[src] + e) + 1e-7
            agg = torch.zeros(n, x.shape[1]).scatter_reduce(
                0, dst[:, None].expand_as(msg), msg, reduce="amax", include_self=False
            )  # nodes without in-edges keep 0
            out = lin(F.relu(ln(lin(x + agg, f"{pre}.gcn.mlp.0"), f"{pre}.gcn.mlp.1")), f"{pre}.gcn.mlp.3")
            y_in = xs[g] + out
            ys.append(y_in)
        h = torch.cat(ys, dim=-1)
    return lin(F.relu(ln(h, "last_norm")), "node_pred_linear")


def random_graph(num_nodes: int = 40, num_edges: int = 160, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    dst = torch.randint(0, num_nodes - 5, (num_edges,), generator=gen)  # 5 nodes without in-edges
    edge_attr = torch.rand(num_edges, 8, generator=gen)
    node_feat = torch.zeros(num_nodes, 8).index_add_(0, src, edge_attr)
    species = F.one_hot(torch.randint(0, 8, (num_nodes,), generator=gen), 8).float()
    return src, dst, node_feat, edge_attr, species


def ours(model, src, dst, node_feat, edge_attr, species) -> Tensor:
    graph = dgl.graph((src, dst), num_nodes=node_feat.shape[0])
    model.eval()
    with torch.no_grad():
        return model(graph, node_feat, edge_attr, species)


@pytest.fixture
def official_card(tmp_path, monkeypatch):
    """A 3-layer card shaped like the official ones (manual import), in a private cache."""
    monkeypatch.setenv("REVGNN_DGL_CACHE", str(tmp_path / "cache"))
    name = f"test-official-{uuid.uuid4().hex[:8]}"
    deep = get_config("revgnn-deep")
    register_model(
        {
            **deep,
            "name": name,
            "aliases": [],
            "arguments": {**deep["arguments"], "num_layers": L},
            "parameters": sum(torch.Size(s).numel() for s in official_layout(L, D).values()),
            "checkpoint": {
                **deep["checkpoint"],
                "file": f"{name}.safetensors",
                "official_file": "tiny.pth",
                "how": f"run `revgnn-dgl zoo import tiny.pth --model {name}`.",
            },
        }
    )
    yield name
    registry._CONFIGS.pop(name, None)


# ------------------------------------------------------------------ key map
def test_official_layout_matches_the_published_parameter_counts():
    """The reference's official shapes give the leaderboard counts (no model built)."""
    count = lambda shapes: sum(torch.Size(s).numel() for s in shapes.values())  # noqa: E731
    assert count(official_layout(1001, 80)) == 20_031_384
    assert count(official_layout(448, 224)) == 68_471_608


def test_key_map_covers_both_layouts():
    key_map = official_key_map(L, C)
    assert list(key_map) == list(official_layout(L, D))
    model = create_model("revgnn-deep", num_layers=L)
    assert sorted(key_map.values()) == sorted(model.state_dict())
    assert len(official_key_map(1001)) == 20 * 1001 + 10
    assert official_key_map(2)["node_pred_linear.bias"] == "head.bias"


# ------------------------------------------------------------------ numerical equivalence
def test_converted_model_computes_the_official_function():
    sd = official_state_dict()
    converted = convert_official_state_dict(sd, "revgnn-deep", num_layers=L)
    model = create_model("revgnn-deep", num_layers=L)
    model.load_state_dict(converted, strict=True)
    data = random_graph()
    expected = official_forward(sd, L, C, *data)
    got = ours(model, *data)
    assert got.shape == (40, 112)
    assert expected.abs().max() > 0.1  # a non-trivial function
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # And it is a different function for different weights: the comparison can fail.
    other = official_forward(official_state_dict(seed=1), L, C, *data)
    assert not torch.allclose(got, other, atol=1e-3)


def test_converted_model_gradients_flow_through_the_reversible_path():
    """Training mode without dropout: the memory-saving path computes the same logits."""
    sd = official_state_dict()
    model = create_model("revgnn-deep", num_layers=L, dropout=0.0)
    model.load_state_dict(convert_official_state_dict(sd, model))
    src, dst, node_feat, edge_attr, species = random_graph()
    model.train()
    out = model(dgl.graph((src, dst), num_nodes=40), node_feat, edge_attr, species)
    out.sum().backward()
    torch.testing.assert_close(
        out.detach(), official_forward(sd, L, C, src, dst, node_feat, edge_attr, species), atol=1e-5, rtol=1e-5
    )
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_accepts_a_card_mapping_and_a_dataparallel_prefix():
    sd = {f"module.{k}": v for k, v in official_state_dict().items()}
    config = {"architecture": "revgnn", "arguments": {**get_config("deep")["arguments"], "num_layers": L}}
    converted = convert_official_state_dict(sd, config)
    assert torch.equal(converted["head.weight"], sd["module.node_pred_linear.weight"])


# ------------------------------------------------------------------ refused mismatches
def test_refuses_a_wrong_shape_naming_the_key():
    sd = official_state_dict()
    sd["gcns.1._fn.Fms.0.gcn.mlp.0.weight"] = torch.zeros(81, 40)
    with pytest.raises(
        CheckpointError,
        match=r"'gcns.1._fn.Fms.0.gcn.mlp.0.weight' .* shape \(81, 40\), but the model expects \(80, 40\)",
    ):
        convert_official_state_dict(sd, "revgnn-deep", num_layers=L)


def test_refuses_a_missing_key_naming_it():
    sd = official_state_dict()
    del sd["gcns.2._fn.Fms.1.norm.bias"]
    with pytest.raises(CheckpointError, match=r"lacks 1 key\(s\).*'gcns.2._fn.Fms.1.norm.bias'"):
        convert_official_state_dict(sd, "revgnn-deep", num_layers=L)


def test_refuses_leftover_keys_naming_the_first():
    sd = official_state_dict(num_layers=L + 1)  # a deeper checkpoint
    with pytest.raises(
        CheckpointError,
        match=r"has 20 key\(s\) that a 3-layer RevGNN does not, the first being 'gcns.3._fn.Fms.0.norm.weight'",
    ):
        convert_official_state_dict(sd, "revgnn-deep", num_layers=L)
    sd = official_state_dict()
    sd["gcns.0._fn.Fms.0.gcn.t"] = torch.ones(1)  # a softmax-aggregation parameter
    with pytest.raises(CheckpointError, match="'gcns.0._fn.Fms.0.gcn.t'"):
        convert_official_state_dict(sd, "revgnn-deep", num_layers=L)


def test_refuses_a_non_reversible_target():
    with pytest.raises(CheckpointError, match="only to a reversible RevGNN"):
        convert_official_state_dict(official_state_dict(), "wt-revgnn-80", num_layers=L)


# ------------------------------------------------------------------ importing .pth files
def test_import_wrapper_pth_then_create_pretrained(official_card, tmp_path, capsys):
    name = official_card
    sd = official_state_dict()
    pth = tmp_path / "tiny.pth"
    torch.save(
        {
            "epoch": 1234,
            "model_state_dict": sd,
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 0.001, "params": [0, 1]}]},
            "loss": torch.tensor(0.1875),
        },
        pth,
    )
    with pytest.raises(
        CheckpointError, match=f"must be imported by hand: run `revgnn-dgl zoo import tiny.pth --model {name}`"
    ):
        create_model(name, pretrained=True)

    dest = import_official_checkpoint(pth, model=name)
    assert dest == checkpoints_dir() / f"{name}.safetensors"
    printed = capsys.readouterr().out
    assert sha256_file(dest) in printed and str(dest) in printed
    assert not [p for p in dest.parent.iterdir() if p != dest]  # no temporary files

    meta = load_checkpoint(dest).metadata
    assert meta["converted_from"] == "tiny.pth" and meta["converted_from_sha256"] == sha256_file(pth)
    assert meta["training"]["official_epoch"] == 1234 and meta["training"]["official_loss"] == pytest.approx(0.1875)
    assert meta["dataset"] == "ogbn-proteins" and meta["metrics"]["test_rocauc"]

    model = create_model(name, pretrained=True)
    data = random_graph(seed=3)
    torch.testing.assert_close(ours(model, *data), official_forward(sd, L, C, *data), atol=1e-5, rtol=1e-5)


def test_import_bare_state_dict_to_explicit_path(official_card, tmp_path):
    pth = tmp_path / "bare.pth"
    sd = official_state_dict(seed=2)
    torch.save(sd, pth)
    out = import_official_checkpoint(pth, model=official_card, out=tmp_path / "x" / "bare.safetensors", verbose=False)
    model = create_model(official_card, pretrained=out)
    data = random_graph()
    torch.testing.assert_close(ours(model, *data), official_forward(sd, L, C, *data), atol=1e-5, rtol=1e-5)


def test_import_refuses_another_model(official_card, tmp_path):
    pth = tmp_path / "deeper.pth"
    torch.save({"model_state_dict": official_state_dict(num_layers=L + 1)}, pth)
    with pytest.raises(CheckpointError, match=f"does not fit model '{official_card}'.*'gcns.3._fn.Fms.0"):
        import_official_checkpoint(pth, model=official_card, verbose=False)
    assert not checkpoints_dir().exists() or not any(checkpoints_dir().iterdir())


class Unsafe:
    """Pickled by reference; a weights-only load must refuse it without ever creating one."""


def test_import_refuses_files_that_need_a_full_unpickle(official_card, tmp_path):
    pth = tmp_path / "unsafe.pth"
    torch.save({"model_state_dict": official_state_dict(), "extra": Unsafe()}, pth)
    with pytest.raises(
        CheckpointError,
        match="refused to load the official checkpoint: it is a pickle that needs .*Unsafe, which could run code",
    ):
        import_official_checkpoint(pth, model=official_card, verbose=False)


@pytest.mark.parametrize("content", [b"", b"garbage", None], ids=["empty", "garbage", "missing"])
def test_import_unreadable_files(official_card, tmp_path, content):
    pth = tmp_path / "broken.pth"
    if content is not None:
        pth.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(pth)):
        import_official_checkpoint(pth, model=official_card, verbose=False)


def test_import_refuses_non_state_dicts(official_card, tmp_path):
    pth = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], pth)
    with pytest.raises(CheckpointError, match="neither an official checkpoint dict"):
        import_official_checkpoint(pth, model=official_card, verbose=False)


def test_recorded_sha256_is_then_verified(official_card, tmp_path):
    """The printed hash is what a card records; the cache is then checked against it."""
    pth = tmp_path / "tiny.pth"
    torch.save({"model_state_dict": official_state_dict()}, pth)
    dest = import_official_checkpoint(pth, model=official_card, verbose=False)
    registry._CONFIGS[official_card]["checkpoint"]["sha256"] = sha256_file(dest)
    create_model(official_card, pretrained=True)
    with open(dest, "r+b") as fh:  # damage the cached file
        fh.seek(os.path.getsize(dest) - 4)
        fh.write(b"\0\0\0\0")
    with pytest.raises(CheckpointError, match="Delete it and import it again"):
        create_model(official_card, pretrained=True)


@pytest.mark.parametrize("num_layers, hidden, groups", [(3, 16, 2), (2, 24, 4)])
def test_zoo_import_infers_any_official_shape_and_prints_the_card_lines(
    tmp_path, monkeypatch, num_layers, hidden, groups
):
    from click.testing import CliRunner

    from revgnn_dgl.cli import cli
    from revgnn_dgl.zoo.checkpoint import build_from_checkpoint
    from revgnn_dgl.zoo.convert import infer_official_arguments

    state = official_state_dict(num_layers, hidden, groups)
    inferred = infer_official_arguments(state)
    assert inferred == {"num_layers": num_layers, "groups": groups, "hidden": hidden, "species_feats": 8,
                        "in_feats": 8, "edge_feats": 8, "out_feats": 112}  # fmt: skip
    pth = tmp_path / "mine.pth"
    torch.save({"epoch": 7, "model_state_dict": state, "loss": torch.tensor(0.25)}, pth)
    dest = tmp_path / "out" / "mine.safetensors"
    result = CliRunner().invoke(cli, ["zoo", "import", str(pth), "--out", str(dest)])
    assert result.exit_code == 0, result.output
    digest = sha256_file(dest)
    assert f"sha256 {digest}" in result.output and f"  sha256: {digest}" in result.output
    assert f"revgnn-official-{num_layers}x{hidden}" in result.output and "  file: mine.safetensors" in result.output
    model = build_from_checkpoint(dest)
    ours = model.state_dict()
    for theirs, key in official_key_map(num_layers, groups).items():
        assert torch.equal(ours[key], state[theirs]), key


def test_zoo_import_refuses_non_finite_official_weights(official_card, tmp_path):
    state = official_state_dict()
    next(iter(state.values()))[0] = float("nan")
    pth = tmp_path / "nan.pth"
    torch.save({"model_state_dict": state}, pth)
    with pytest.raises(CheckpointError, match="holds NaN or inf; refused"):
        import_official_checkpoint(pth, model=official_card, verbose=False)
    out = import_official_checkpoint(
        pth, model=official_card, verbose=False, allow_nonfinite=True, out=tmp_path / "x.safetensors"
    )
    assert out.is_file()


def test_import_over_an_existing_entry_needs_force(official_card, tmp_path):
    pth, other = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save(official_state_dict(seed=4), pth)
    torch.save(official_state_dict(seed=5), other)
    dest = import_official_checkpoint(pth, model=official_card, verbose=False)
    kept = sha256_file(dest)
    with pytest.raises(
        CheckpointError, match=r"already holds a converted checkpoint \(sha256 [0-9a-f]{64}\); pass --force"
    ):
        import_official_checkpoint(other, model=official_card, verbose=False)
    assert sha256_file(dest) == kept  # untouched
    assert import_official_checkpoint(other, model=official_card, verbose=False, force=True) == dest
    assert sha256_file(dest) != kept


@pytest.mark.slow
def test_concurrent_imports_print_the_sha256_of_the_file_they_left(tmp_path):
    """6 processes import 2 files into one cache entry at once: one wins, the rest are refused
    with one line; the winner's printed sha256 is the cached file's. With --force they take
    turns, and each printed sha256 is that of the file it left at its turn."""
    import re
    import subprocess
    import sys

    cache = tmp_path / "cache"
    files = []
    for seed in (6, 7):
        files.append(tmp_path / f"w{seed}.pth")
        torch.save(official_state_dict(seed=seed), files[-1])
    # The deep card at 3 layers: the official layout the tiny files have.
    common = ["-m", "revgnn_dgl", "zoo", "import", "--model", "deep", "--num-layers", str(L), "--hidden", str(D)]
    out = cache / "entry.safetensors"
    env = {**__import__("os").environ, "REVGNN_DGL_CACHE": str(cache), "OUTDATED_IGNORE": "1"}
    procs = [subprocess.Popen([sys.executable, *common, str(files[i % 2]), "--out", str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(6)]  # fmt: skip
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    ok = [r for r in results if r[0] == 0]
    refused = [r for r in results if r[0] != 0]
    assert len(ok) == 1, [r[2][-300:] for r in results]
    (printed,) = re.findall(r"^sha256 ([0-9a-f]{64})$", ok[0][1], re.M)
    assert printed == sha256_file(out)
    for _code, _, err in refused:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "already holds a converted checkpoint" in lines[0] and "--force" in lines[0], err
    for path in files:  # --force: in turn, each reports the file it left
        done = subprocess.run([sys.executable, *common, str(path), "--out", str(out), "--force"], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert re.findall(r"^sha256 ([0-9a-f]{64})$", done.stdout, re.M) == [sha256_file(out)]


def test_import_never_writes_through_a_link_in_the_cache(official_card, tmp_path):
    pth = tmp_path / "a.pth"
    torch.save(official_state_dict(seed=8), pth)
    victim = tmp_path / "precious"
    victim.write_text("precious\n")
    dest = checkpoints_dir() / f"{official_card}.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.symlink_to(victim)
    for force in (False, True):
        with pytest.raises(CheckpointError, match="is a symbolic link"):
            import_official_checkpoint(pth, model=official_card, verbose=False, force=force)
    assert victim.read_text() == "precious\n" and dest.is_symlink()
