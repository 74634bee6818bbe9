"""A variant registered outside the package (tests/registered_variant.py) runs wherever the
package's own do: in this process, through ``--variants``, and in the fresh processes that
measure memory and time, which import the registering module by the name the configuration
records."""

from __future__ import annotations

import pytest
import registered_variant
from click.testing import CliRunner
from registered_variant import NAME
from variant_step import TINY

from revgnn_dgl.bench import StepConfig, TrainStep, memory_sweep, register_variant, run_speed, variant_names
from revgnn_dgl.bench.cli import benchmark
from revgnn_dgl.bench.workload import variant_available, variant_module


def test_a_configuration_records_the_registering_module():
    assert NAME in variant_names() and variant_module(NAME) == "registered_variant"
    cfg = StepConfig(model="revgnn-112", depth=2, variant=NAME, **TINY)
    assert cfg.to_dict()["variant_module"] == "registered_variant"
    assert StepConfig.from_dict(cfg.to_dict()) == cfg
    # The package's own variants need no module, whatever a copied dict says.
    assert StepConfig.from_dict({**cfg.to_dict(), "variant": "ours"}).variant_module is None


def test_a_registered_variant_is_measured_in_fresh_processes():
    ts = TrainStep(StepConfig(model="revgnn-112", depth=2, variant=NAME, **TINY))
    head_bytes = sum(p.numel() * p.element_size() for p in ts.net.model.head.parameters())
    assert head_bytes and all(not p.requires_grad for p in ts.net.model.head.parameters())

    rows = memory_sweep(["revgnn-112"], [2], ["ours", NAME], base=TINY, warmup=0, repeats=0, mem_cap_bytes=None)
    assert [(r["variant"], r["status"]) for r in rows] == [("ours", "ok"), (NAME, "ok")], [
        r.get("message") for r in rows
    ]
    ours, frozen = rows
    # The child built the registered variant, not ours: Adam steps everything but the head.
    assert ours["components"]["parameters"] - frozen["components"]["parameters"] == head_bytes
    # Adam's two moments of the head's parameters (and their step counters) are not there either.
    assert ours["components"]["adam_state"] - frozen["components"]["adam_state"] >= 2 * head_bytes

    speed = run_speed({"model": "revgnn-112", **TINY}, depths=[2], variants=["ours", NAME], warmup=1, repeats=1)
    assert [(r["variant"], r["status"]) for r in speed] == [("ours", "ok"), (NAME, "ok")], [
        r.get("message") for r in speed
    ]
    assert speed[0]["first_loss"] == pytest.approx(speed[1]["first_loss"], rel=1e-6)  # same weights before the step


def test_cli_variants_accept_a_registered_variant(tmp_path):
    res = CliRunner().invoke(
        benchmark,
        [
            "speed",
            "--model",
            "revgnn-112",
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
            "--variants",
            f"ours,{NAME}",
            "--in-process",
            "--no-plot",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    assert f"[{NAME}] depth 2: ok" in res.output


def test_register_variant_refuses_clashes_and_bad_names():
    with pytest.raises(ValueError, match="registered already"):
        register_variant("ours", registered_variant.frozen_head)
    with pytest.raises(ValueError, match="registered already"):
        register_variant(NAME, registered_variant.frozen_head, module="somewhere_else")
    for bad in ("", "a,b", " padded"):
        with pytest.raises(ValueError, match="variant name"):
            register_variant(bad, registered_variant.frozen_head)
    # Registering again from the same module (a re-import) replaces the entry.
    again = register_variant(NAME, registered_variant.frozen_head, module="registered_variant")
    assert again == registered_variant.VARIANT


def test_a_variant_that_a_fresh_process_cannot_find_says_why():
    assert "cannot import no_such_module_here" in variant_available("elsewhere", "no_such_module_here")
    assert "importing registered_variant did not register it" in variant_available("elsewhere", "registered_variant")
    assert "__main__" in variant_available("elsewhere", "__main__")
