"""The suites' summaries (benchmarks/suites.py), on made-up rows: no measuring."""

from __future__ import annotations

import pytest
from suites import summarize_paper_scale

from revgnn_dgl.bench import write_rows


def test_paper_scale_summary_extrapolates_and_prefers_a_measured_full_depth(tmp_path):
    # Rows in the suite's files, made up so that the arithmetic is known exactly: 1 MB of
    # activations at every depth, 100 bytes of parameter state per layer.
    def row(model, depth, **extra):
        state = 100 * depth
        return dict(
            kind="memory",
            model=model,
            variant="ours",
            status="ok",
            depth=depth,
            parameters=depth,
            model_state_bytes=state,
            peak_minus_model_state_bytes=10**6,
            peak_allocated_bytes=10**6 + state,
            step_time_s=float(depth),
            **extra,
        )

    write_rows([row("revgnn-deep", 2), row("revgnn-deep", 8)], tmp_path, "paper_scale")
    deep = summarize_paper_scale(tmp_path)["models"]["revgnn-deep"]
    assert deep["extrapolated_full_depth_peak_bytes"] == 10**6 + 100 * 1001
    assert deep["peak_measured"] is False and deep["below_paper"] is True
    assert deep["peak_minus_model_state_spread"] == 1.0

    # A full-depth row from its own file is preferred, and checked against the extrapolation.
    write_rows([row("revgnn-deep", 1001, time_source="profiled")], tmp_path, "paper_scale_full_revgnn-deep")
    deep = summarize_paper_scale(tmp_path)["models"]["revgnn-deep"]
    assert deep["measured_full_depth_peak_bytes"] == 10**6 + 100 * 1001
    assert deep["extrapolated_full_depth_peak_bytes"] == deep["measured_full_depth_peak_bytes"]
    assert deep["peak_measured"] is True and deep["measured_full_depth_time_source"] == "profiled"
    assert (tmp_path / "paper_scale_summary.json").exists() and (tmp_path / "paper_scale_vs_paper.png").exists()


@pytest.mark.parametrize("suite", ["memory_vs_depth", "paper_scale", "alternatives", "glibc_trap", "report"])
def test_a_suite_script_takes_no_positional_and_never_defaults_to_the_committed_results(suite: str, capsys) -> None:
    """`python benchmarks/<suite>.py --help` advertises only what the script takes; a reproduction
    writes to a new folder unless told to update benchmarks/results."""
    import suites

    with pytest.raises(SystemExit) as done:
        suites.main(suite, ["--help"])
    assert done.value.code == 0
    usage = capsys.readouterr().out
    assert "positional arguments" not in usage and "memory_vs_depth,paper_scale" not in usage
    if suite != "report":
        assert "never the committed" in usage
        fresh = suites.fresh_results_folder(suite)
        assert fresh.parts[:2] == ("runs", "benchmarks") and fresh.name.startswith(suite)
        assert fresh.resolve() != suites.RESULTS.resolve()
    with pytest.raises(SystemExit) as refused:  # a positional, as the old usage line suggested
        suites.main(suite, ["memory_vs_depth"])
    assert refused.value.code == 2
