"""The benchmark code runs end to end on tiny sizes and writes what it promises.

Not timing tests: nothing here asserts that anything is fast. Fresh-process runs cost a few
seconds each (importing torch and DGL), so only three are made.
"""
from __future__ import annotations

import configparser
import csv
import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from revgnn_dgl.bench import StepConfig, TrainStep, measure_step, memory_sweep, write_rows
from revgnn_dgl.bench.cli import benchmark, parse_depths
from revgnn_dgl.bench.memory import _project, live_blocks_at_peak
from revgnn_dgl.bench.plots import plot_memory, plot_time
from revgnn_dgl.bench.results import ENV_FIELDS, read_rows
from revgnn_dgl.bench.speed import speed_compare
from revgnn_dgl.bench.workload import GraphBatch, make_batch, model_arguments, variant_available
from revgnn_dgl.zoo import create_model
from grad_check import assert_gradients_match
from suite_env import in_ci

REPO_ROOT = Path(__file__).resolve().parents[2]

TINY = dict(hidden=8, nodes=60, edges=240)


def test_parse_depths():
    assert parse_depths("8,2,4") == [2, 4, 8]
    assert parse_depths("2,4,8,...,1001") == [2, 4, 8, 16, 32, 64, 128, 256, 512, 1001]


def test_live_blocks_see_a_known_allocation():
    live = live_blocks_at_peak(lambda: torch.empty(1000, 1000))
    assert live["peak_bytes"] == 4_000_000
    assert live["blocks"] == [4_000_000]


def test_measure_step_accounts_for_the_state_exactly():
    # What is live between steps is known from tensor sizes: parameters, Adam's two moments,
    # the graph's sparse formats and the inputs. The measurement must see all of it.
    out = measure_step(StepConfig(model="revgnn-112", depth=2, **TINY).to_dict(), warmup=1, repeats=1, breakdown=True)
    expected = sum(out["components"].values())
    assert out["components"]["adam_state"] >= 2 * out["components"]["parameters"]
    assert abs(out["state_bytes"] - expected) <= 0.01 * expected, (out["state_bytes"], out["components"])
    assert out["peak_allocated_bytes"] == out["state_bytes"] + out["step_peak_delta_bytes"]
    assert out["step_peak_delta_bytes"] > 0 and out["step_time_s"] > 0
    assert out["breakdown"]["step_peak_delta_bytes"] > 0
    assert out["parameters"] == sum(p.numel() for p in TrainStep(StepConfig(model="revgnn-112", depth=2, **TINY)).params)


def test_sweep_rows_csv_json_with_environment_and_oom_instead_of_crash(tmp_path):
    ok = memory_sweep(["revgnn-112"], [2], base=TINY, warmup=0, repeats=1, mem_cap_bytes=None)
    # A cap below what the interpreter alone holds: the child's first allocations fail, and the
    # sweep records that and skips the deeper configuration without running it.
    capped = memory_sweep(["resgnn-112"], [2, 4], base=TINY, warmup=0, repeats=0, mem_cap_bytes=64 * 2**20)
    rows = ok + capped
    assert [r["status"] for r in rows] == ["ok", "oom", "skipped"], [(r["status"], r.get("message")) for r in rows]
    assert "cap" in capped[0]["message"] and "depth 2" in capped[1]["message"]
    row = ok[0]
    assert row["peak_allocated_bytes"] > 0 and row["peak_rss_bytes"] > row["peak_allocated_bytes"]
    assert row["mmap_threshold"] == "65536"  # the child ran with the fixed threshold

    paths = write_rows(rows, tmp_path, "sweep")
    with open(paths["csv"], newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [t["status"] for t in table] == ["ok", "oom", "skipped"]
    for t in table:
        for key in ENV_FIELDS:
            assert t[key], (key, t)
    assert int(table[0]["depth"]) == 2 and float(table[0]["peak_allocated_bytes"]) > 0
    back = read_rows(paths["json"])
    assert back[0]["parameters"] == row["parameters"] and back[0]["torch"] == torch.__version__

    png = plot_memory(rows, tmp_path / "memory.png")
    png2 = plot_time(rows, tmp_path / "time.png")
    for path in (png, png2):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_projection_is_linear_and_flat_series_stay_flat():
    assert _project([(2, 10.0)], 8) is None
    assert _project([(2, 10.0), (4, 20.0)], 8) == 40.0
    assert _project([(2, 10.0), (4, 9.0)], 1000) == 9.0


# ------------------------------------------------------------------ the variants compute one step
# ours, disable and dgl need only the package's own dependencies: they are always compared, and
# one that cannot run fails the test. pyg needs torch_geometric, which comes with the [benchmark]
# extra and not with [test], what CI installs (.ci/run: pip install -e ".[test]"). So the PyG
# comparison runs wherever torch_geometric is installed, and otherwise skips saying so -- unless
# the [test] extra lists torch_geometric and CI is set: then CI was meant to have it, and it fails.
REQUIRED_VARIANTS = ("ours", "disable", "dgl")
PYG_RENAMES = ((".convs.", ".gnn_modules."), (".conv.lin_edge.", ".conv.edge_encoder."), (".conv.mlp.4.", ".conv.mlp.3."))


def extra_requirements(extra: str) -> list:
    """The requirements of one of setup.cfg's extras, as ``pip install -e ".[extra]"`` reads them."""
    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / "setup.cfg", encoding="utf-8")
    lines = parser["options.extras_require"][extra].splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def canonical(name: str) -> str:
    """A variant's parameter name as the zoo model's own (``model.``/``base.`` dropped; PyG's
    ``GroupAddRev``/``GENConv`` names mapped onto ours, the way the pyg variant copies the weights)."""
    name = name.split(".", 1)[1]
    for theirs, ours in PYG_RENAMES:
        name = name.replace(theirs, ours)
    return name


def one_step(variant: str, model: torch.nn.Module, batch: GraphBatch) -> dict:
    """One training step (forward, loss, backward, clipping, Adam) of a variant, in float64:
    its loss, and its gradients and weights after the step by canonical name."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the pyg variant builds its blocks and copies weights
    try:
        ts = TrainStep(StepConfig(model="revgnn-112", depth=3, variant=variant, **TINY), batch=batch, model=model)
    finally:
        torch.set_default_dtype(default)
    loss = ts.step()
    named = list(ts.net.named_parameters())
    assert all(p.dtype == torch.float64 for _, p in named), variant
    return {
        "loss": loss,
        "grads": {canonical(n): p.grad.detach().clone() for n, p in named},
        "weights": {canonical(n): p.detach().clone() for n, p in named},
    }


@pytest.fixture(scope="module")
def float64_step():
    """The zoo model (weights seeded) and a generated batch, both in float64."""
    cfg = StepConfig(model="revgnn-112", depth=3, **TINY)
    name, _, args = model_arguments(cfg)
    torch.manual_seed(cfg.seed)
    model = create_model(name, **args).double()
    b = make_batch(cfg.nodes, cfg.edges, cfg.edge_feats, cfg.species, cfg.tasks, cfg.seed)
    batch = GraphBatch(graph=b.graph, feat=b.feat.double(), edge_feat=b.edge_feat.double(),
                       species=b.species.double(), labels=b.labels.double())
    reference = one_step("disable", model, batch)  # ordinary autograd
    return model, batch, reference


def assert_same_step(result: dict, reference: dict) -> None:
    assert result["loss"] == pytest.approx(reference["loss"], rel=1e-12)
    assert_gradients_match(result["grads"], reference["grads"])
    # The weights before the step are equal; after it, they are equal to float64 rounding too.
    assert_gradients_match(result["weights"], reference["weights"])


@pytest.mark.parametrize("variant", [v for v in REQUIRED_VARIANTS if v != "disable"])
def test_variants_compute_the_same_step(variant, float64_step):
    """ours and DGL's GroupRevRes against ordinary autograd: the same loss, gradients (after
    clipping) and weights after Adam's step, element by element, in float64."""
    assert variant_available(variant) is None, variant_available(variant)  # never dropped
    model, batch, reference = float64_step
    assert len(reference["grads"]) == 70
    result = one_step(variant, model, batch)
    assert list(result["grads"]) == list(reference["grads"])
    assert not torch.equal(reference["weights"]["head.weight"], model.head.weight)  # the step moved the weights
    assert_same_step(result, reference)


def test_pyg_variant_computes_the_same_step(float64_step):
    """PyG's GroupAddRev and GENConv with our weights: the same step as ordinary autograd."""
    if importlib.util.find_spec("torch_geometric") is None:
        if in_ci() and any(re.match(r"torch[_-]geometric\b", r) for r in extra_requirements("test")):
            pytest.fail(f"torch_geometric is in the [test] extra but not installed, and {in_ci()}", pytrace=False)
        pytest.skip(
            "torch_geometric is not installed: it comes with the [benchmark] extra, not with [test] "
            "(what CI installs); pip install -e '.[benchmark]' to compare the pyg variant too"
        )
    assert variant_available("pyg") is None, variant_available("pyg")  # installed but broken: a failure
    model, batch, reference = float64_step
    result = one_step("pyg", model, batch)
    assert sorted(result["grads"]) == sorted(reference["grads"])
    assert_same_step(result, reference)


def test_speed_compare_rows_record_the_same_first_loss():
    rows = speed_compare({"model": "revgnn-112", **TINY}, depths=[3], variants=list(REQUIRED_VARIANTS), repeats=1)
    assert [(r["variant"], r["status"]) for r in rows] == [(v, "ok") for v in REQUIRED_VARIANTS], rows
    losses = [r["first_loss"] for r in rows]
    # float32: the reversible paths differ from autograd by rounding only.
    assert all(math.isclose(x, losses[0], rel_tol=1e-6) for x in losses), dict(zip(REQUIRED_VARIANTS, losses))
    assert rows[0]["time_ratio_to_ours"] == 1.0
    assert len({r["parameters"] for r in rows}) == 1


def test_cli_memory_and_speed_write_results(tmp_path):
    runner = CliRunner()
    common = ["--model", "wt-revgnn-80", "--hidden", "8", "--nodes", "60", "--edges", "240", "--depths", "2",
              "--repeats", "1", "--out", str(tmp_path)]
    res = runner.invoke(benchmark, ["memory", *common, "--warmup", "0"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "memory.csv").exists() and (tmp_path / "memory.png").exists()
    assert json.loads((tmp_path / "memory.json").read_text())["rows"][0]["status"] == "ok"
    res = runner.invoke(benchmark, ["speed", *common, "--variants", "ours,disable", "--in-process", "--no-plot"])
    assert res.exit_code == 0, res.output
    rows = read_rows(tmp_path / "speed.json")
    assert [r["variant"] for r in rows] == ["ours", "disable"]


def test_unknown_variant_and_non_reversible_model_are_refused():
    assert "unknown variant" in variant_available("nope")
    with pytest.raises(ValueError, match="RevGNN"):
        TrainStep(StepConfig(model="resgnn-112", depth=2, variant="dgl", **TINY))
