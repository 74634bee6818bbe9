"""benchmarks/gcnii_memory.py: the reversible GCNII's activation peak stays flat in depth while a
plain dgl.nn.GCN2Conv stack's grows, each depth measured in a fresh process."""

from __future__ import annotations

import gcnii_memory
import pytest


@pytest.mark.slow
def test_reversible_gcnii_flat_plain_gcn2conv_grows(tmp_path):
    rows = gcnii_memory.sweep([2, 16], tmp_path, echo=lambda line: None)
    assert all(r["status"] == "ok" for r in rows), rows
    peak = {(r["model"], r["depth"]): r["activation_peak_bytes"] for r in rows}
    assert peak["revgnn-gcnii", 16] <= 1.1 * peak["revgnn-gcnii", 2]
    assert peak["gcn2conv", 16] >= 2.5 * peak["gcn2conv", 2]
    assert peak["revgnn-gcnii-disable", 16] >= 2.5 * peak["revgnn-gcnii-disable", 2]
    assert (tmp_path / "gcnii_memory.json").exists()
    table = gcnii_memory.report(rows)
    assert table.count("\n") == 3 and "| 16 |" in table
