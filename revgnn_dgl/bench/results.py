"""Result rows to CSV and JSON, and a short Markdown table for reports."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from ..files import whole_file

__all__ = ["write_rows", "read_rows", "markdown_table", "LEADING_COLUMNS", "ENV_FIELDS"]

#: Columns written first, in this order; any others follow alphabetically.
LEADING_COLUMNS = (
    "kind",
    "model",
    "architecture",
    "variant",
    "status",
    "depth",
    "hidden",
    "groups",
    "nodes",
    "edges",
    "edge_feats",
    "tasks",
    "parameters",
    "peak_allocated_bytes",
    "state_bytes",
    "step_peak_delta_bytes",
    "peak_rss_bytes",
    "step_time_s",
    "time_ratio_to_ours",
    "message",
)
#: The environment fields every row carries (see :func:`revgnn_dgl.env.environment`).
ENV_FIELDS = ("torch", "dgl", "device", "threads", "cpu_model")


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    if value is None:
        return ""
    return value


def write_rows(rows: Sequence[Dict[str, Any]], out_dir: Union[str, Path], name: str) -> Dict[str, Path]:
    """Write ``rows`` as ``<out_dir>/<name>.csv`` and ``<out_dir>/<name>.json``.

    Nested values (lists, dicts) become JSON strings in the CSV; the JSON file keeps them as
    they are. Files are replaced atomically, so a sweep can rewrite them after every row.

    Returns
    -------
    dict
        ``{"csv": path, "json": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys: List[str] = [k for k in LEADING_COLUMNS if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r} - set(keys))
    paths = {"csv": out / f"{name}.csv", "json": out / f"{name}.json"}
    with whole_file(paths["csv"], "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in keys})
    with whole_file(paths["json"], "w") as fh:
        json.dump({"rows": list(rows)}, fh, indent=1, default=str)
        fh.write("\n")
    return paths


def read_rows(path: Union[str, Path]) -> List[Dict[str, Any]]:
    """Rows from a JSON file written by :func:`write_rows`."""
    with open(path) as fh:
        return json.load(fh)["rows"]


def _fmt(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column.endswith("_bytes") and isinstance(value, (int, float)):
        return f"{value / 2**20:,.1f}"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and column == "parameters":
        return f"{value:,}"
    return str(value)


def markdown_table(
    rows: Iterable[Dict[str, Any]], columns: Sequence[str], headers: Optional[Sequence[str]] = None
) -> str:
    """A Markdown table of ``columns`` (``*_bytes`` shown in MiB)."""
    headers = list(headers or [c.replace("_bytes", " (MiB)") for c in columns])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c), c) for c in columns) + " |")
    return "\n".join(lines)
