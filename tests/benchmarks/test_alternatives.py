"""DGL's and PyG's reversible blocks as benchmark variants (benchmarks/alternatives_variants.py)
compute the same training step as ours, in this process and in a fresh measuring one.

dgl needs only the package's own dependencies: it is always compared, and failing to run fails
the test. pyg needs torch_geometric, which comes with the [benchmark] extra and not with [test],
what CI installs (.ci/run: pip install -e ".[test]"). So the PyG comparison runs wherever
torch_geometric is installed, and otherwise skips saying so -- unless the [test] extra lists
torch_geometric and CI is set: then CI was meant to have it, and it fails.
"""

from __future__ import annotations

import configparser
import importlib.util
import re
from pathlib import Path

import alternatives_variants
import pytest
from suite_env import in_ci
from variant_step import TINY, assert_same_step, assert_speed_rows_agree, float64_step, one_step

from revgnn_dgl.bench import StepConfig, TrainStep, memory_sweep
from revgnn_dgl.bench.workload import variant_available

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPARED = ("ours", "disable", "dgl")


def extra_requirements(extra: str) -> list:
    """The requirements of one of setup.cfg's extras, as ``pip install -e ".[extra]"`` reads them."""
    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / "setup.cfg", encoding="utf-8")
    lines = parser["options.extras_require"][extra].splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


@pytest.fixture(scope="module")
def float64_reference():
    return float64_step()


def test_the_variants_are_registered_by_the_benchmarks_module():
    for name in ("dgl", "pyg"):
        cfg = StepConfig(model="revgnn-112", depth=2, variant=name, **TINY)
        assert cfg.variant_module == alternatives_variants.__name__ == "alternatives_variants"


def test_dgl_variant_computes_the_same_step(float64_reference):
    """DGL's GroupRevRes around our blocks against ordinary autograd: the same loss, gradients
    (after clipping) and weights after Adam's step, element by element, in float64."""
    assert variant_available("dgl") is None, variant_available("dgl")  # never dropped
    model, batch, reference = float64_reference
    result = one_step("dgl", model, batch)
    assert list(result["grads"]) == list(reference["grads"])
    assert_same_step(result, reference)


def test_pyg_variant_computes_the_same_step(float64_reference):
    """PyG's GroupAddRev and GENConv with our weights: the same step as ordinary autograd."""
    if importlib.util.find_spec("torch_geometric") is None:
        if in_ci() and any(re.match(r"torch[_-]geometric\b", r) for r in extra_requirements("test")):
            pytest.fail(f"torch_geometric is in the [test] extra but not installed, and {in_ci()}", pytrace=False)
        assert "torch_geometric" in variant_available("pyg")  # an unavailable row, saying why
        pytest.skip(
            "torch_geometric is not installed: it comes with the [benchmark] extra, not with [test] "
            "(what CI installs); pip install -e '.[benchmark]' to compare the pyg variant too"
        )
    assert variant_available("pyg") is None, variant_available("pyg")  # installed but broken: a failure
    model, batch, reference = float64_reference
    result = one_step("pyg", model, batch)
    assert sorted(result["grads"]) == sorted(reference["grads"])
    assert_same_step(result, reference)


def test_speed_compare_rows_record_the_same_first_loss():
    assert_speed_rows_agree(COMPARED)


def test_dgl_variant_is_measured_in_a_fresh_process():
    # The child imports alternatives_variants by the name the configuration records.
    rows = memory_sweep(["revgnn-112"], [2], ["dgl"], base=TINY, warmup=0, repeats=0, mem_cap_bytes=None)
    assert [(r["variant"], r["status"]) for r in rows] == [("dgl", "ok")], [r.get("message") for r in rows]
    assert rows[0]["peak_allocated_bytes"] > 0


def test_non_reversible_model_is_refused():
    with pytest.raises(ValueError, match="RevGNN"):
        TrainStep(StepConfig(model="resgnn-112", depth=2, variant="dgl", **TINY))
