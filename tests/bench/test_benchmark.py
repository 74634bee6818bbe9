"""The benchmark code runs end to end on tiny sizes and writes what it promises.

Not timing tests: nothing here asserts that anything is fast. Fresh-process runs cost a few
seconds each (importing torch and DGL), so only three are made.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner
from variant_step import TINY, assert_same_step, assert_speed_rows_agree, float64_step, one_step

from revgnn_dgl.bench import VARIANTS, StepConfig, TrainStep, measure_step, memory_sweep, write_rows
from revgnn_dgl.bench.cli import benchmark, parse_depths
from revgnn_dgl.bench.memory import _project, live_blocks_at_peak
from revgnn_dgl.bench.plots import plot_memory, plot_time
from revgnn_dgl.bench.results import ENV_FIELDS, read_rows
from revgnn_dgl.bench.workload import variant_available


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
    assert out["parameters"] == sum(
        p.numel() for p in TrainStep(StepConfig(model="revgnn-112", depth=2, **TINY)).params
    )


@pytest.mark.slow
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
# DGL's and PyG's blocks are compared in tests/benchmarks/test_alternatives.py.
@pytest.fixture(scope="module")
def float64_reference():
    return float64_step()


def test_ours_computes_the_same_step_as_autograd(float64_reference):
    """Our reversible blocks against ordinary autograd: the same loss, gradients (after
    clipping) and weights after Adam's step, element by element, in float64."""
    model, batch, reference = float64_reference
    assert len(reference["grads"]) == 70
    result = one_step("ours", model, batch)
    assert list(result["grads"]) == list(reference["grads"])
    assert not torch.equal(reference["weights"]["head.weight"], model.head.weight)  # the step moved the weights
    assert_same_step(result, reference)


def test_speed_compare_rows_record_the_same_first_loss():
    assert_speed_rows_agree(VARIANTS)


def test_cli_memory_and_speed_write_results(tmp_path):
    runner = CliRunner()
    common = [
        "--model",
        "wt-revgnn-80",
        "--hidden",
        "8",
        "--nodes",
        "60",
        "--edges",
        "240",
        "--depths",
        "2",
        "--repeats",
        "1",
        "--out",
        str(tmp_path),
    ]
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
    with pytest.raises(ValueError, match="reversible blocks"):
        TrainStep(StepConfig(model="resgnn-112", depth=2, variant="disable", **TINY))
    res = CliRunner().invoke(benchmark, ["speed", "--model", "revgnn-112", "--variants", "ours,nope", "--in-process"])
    assert res.exit_code == 2 and "unknown variant" in res.output and "nope" in res.output, res.output
