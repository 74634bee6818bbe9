"""The run directory: its files, and reading and writing them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Union

import yaml

from .config import TrainConfig

CONFIG_FILE = "config.yaml"

METRICS_FILE = "metrics.jsonl"

BEST_FILE = "best.safetensors"

LAST_FILE = "last.safetensors"

STATE_FILE = "state.safetensors"

SUMMARY_FILE = "summary.json"


def run_dirs(config: TrainConfig) -> List[Path]:
    """The run directories of a config: ``out`` itself for one run, ``out/run-I`` for several."""
    out = Path(config.out)
    return [out] if config.runs == 1 else [out / f"run-{i}" for i in range(config.runs)]


def read_metrics(run_dir: Union[str, Path]) -> List[Dict[str, Any]]:
    """The records of a run's ``metrics.jsonl``."""
    with open(Path(run_dir) / METRICS_FILE, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def truncate_metrics(path: Path, last_epoch: int) -> None:
    """Drop records past the saved state (written before an interruption, and about to be redone)."""
    records = read_metrics(path.parent) if path.exists() else []
    path.write_text("".join(json.dumps(r) + "\n" for r in records if r["epoch"] <= last_epoch))


def write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
