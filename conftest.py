"""Test-session settings shared by tests/ and the doctests in revgnn_dgl/."""

import os

# OGB checks PyPI for a newer version at import; offline that only produces a warning.
os.environ.setdefault("OUTDATED_IGNORE", "1")
# The profiler behind revgnn_dgl.bench.profiling prints progress lines unless told not to.
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

import torch  # noqa: E402

# One intra-op thread: tiny graphs run faster without OpenMP spin contention, and
# floating-point reductions are reproducible from run to run.
torch.set_num_threads(1)
