"""A run's ``metrics.jsonl``: one JSON line per epoch, appended and flushed as the epoch ends.

A kill mid-write can leave a torn last line; reading drops it (with a note on ``--resume``, which
also cuts the file back to the epoch its state resumes from). Nothing is written through a link.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from ..errors import ConfigError
from ..faults import fault_point
from ..files import open_nofollow, to_json, write_whole

METRICS_FILE = "metrics.jsonl"

PathLike = Union[str, Path]


def append_metrics(path: PathLike, record: Mapping[str, Any]) -> None:
    """Append one epoch's record as a line, flushed to disk."""
    line = to_json(dict(record)) + "\n"
    try:
        with os.fdopen(open_nofollow(Path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a", encoding="utf-8") as fh:
            half = len(line) // 2
            fh.write(line[:half])
            fh.flush()
            fault_point("metrics")  # a kill here leaves a torn line, which --resume drops
            fh.write(line[half:])
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:  # no space: name the file (a torn line is dropped on resume)
        err.filename = str(path)
        raise


def _parse_metrics(path: Path) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """The records of a metrics file and a note when its last line was torn (and dropped)."""
    if not path.exists():
        return [], None
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    records: List[Dict[str, Any]] = []
    note = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) or all(not rest.strip() for rest in lines[number:]):
                note = f"{path}: dropped a torn last line (line {number}, {len(line)} characters), left by an interrupted write"
                break
            raise ConfigError(f"{path} line {number} is not valid JSON; the metrics file is damaged.") from None
    return records, note


def read_metrics(run_dir: PathLike) -> List[Dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (a torn last line is left out)."""
    return _parse_metrics(Path(run_dir) / METRICS_FILE)[0]


def truncate_metrics(path: PathLike, last_epoch: int) -> Optional[str]:
    """Keep the records up to ``last_epoch`` (later ones are about to be redone); drop a torn line.

    Returns a note when a torn line was dropped.
    """
    path = Path(path)
    records, note = _parse_metrics(path)
    write_whole(path, "".join(to_json(r) + "\n" for r in records if r["epoch"] <= last_epoch))
    return note
