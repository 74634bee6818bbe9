"""Turn one seed of a committed training run into a zoo card with bundled weights.

The card's architecture, arguments, dataset options and metrics come from the seed's
``best.safetensors`` (the checkpoint the trainer kept at its best validation epoch); its training
section from the run's ``config.yaml`` and ``summary.json``. The weights are copied into
``zoo/NAME/weights.safetensors`` and the card written to ``zoo/NAME/card.yaml``, both through a
temporary file and a rename.
``tests/zoo/test_pretrained.py`` then checks that ``revgnn-dgl evaluate --model NAME
--pretrained`` reproduces the card's metrics.

    python results/make_card.py RUN --name NAME --description TEXT [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CARDS = REPO / "zoo"
CITATION = (
    "Guohao Li, Matthias Müller, Bernard Ghanem, Vladlen Koltun. Training Graph Neural Networks with 1000 "
    "Layers. ICML 2021. arXiv:2106.07476. Weights: trained by revgnn_dgl."
)
# The training options a card records (the rest of config.yaml is bookkeeping).
RECIPE_KEYS = (
    "epochs", "optimizer", "lr", "weight_decay", "layer_weight_decay", "schedule", "warmup_epochs", "min_lr", "patience", "dropout",
    "input_dropout", "edge_dropout", "label_smoothing", "loss", "use_labels", "label_iters", "grad_clip",
    "train_parts", "eval_parts", "eval_views", "eval_every", "threads",
)  # fmt: skip


def seed_folder(run: Path, seed: int) -> Path:
    """The folder of one seed: ``run-K`` of a multi-seed run, or the run itself."""
    for folder in sorted(run.glob("run-*")) or [run]:
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        if config["seed"] == seed:
            return folder
    raise SystemExit(f"{run} has no run with seed {seed}")


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def make_card(run: Path, name: str, description: str, seed: int, aliases: Optional[List[str]]) -> Dict[str, Any]:
    from revgnn_dgl.zoo.checkpoint import build_from_checkpoint, sha256_file

    folder = seed_folder(run, seed)
    # Rebuilding checks the weights against the header and gives the parameter count.
    model = build_from_checkpoint(folder / "best.safetensors")
    meta, built = model.checkpoint_metadata, model.zoo_config
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    weights = CARDS / name / "weights.safetensors"
    write_atomically(weights, (folder / "best.safetensors").read_bytes())
    command = summary.get("command") or f"revgnn-dgl train --config {run.relative_to(REPO)}/config.yaml"
    card: Dict[str, Any] = {"name": name}
    if aliases:
        card["aliases"] = aliases
    card.update(
        architecture=built["architecture"],
        description=description,
        dataset=meta["dataset"],
    )
    if meta.get("dataset_options"):
        card["dataset_options"] = meta["dataset_options"]
    card.update(
        arguments=dict(sorted(built["arguments"].items())),
        parameters=sum(p.numel() for p in model.parameters()),
        metrics={
            "metric": meta["metric"],
            "val": round(float(meta["val"]), 8),
            "test": round(float(meta["test"]), 8),
            "best_epoch": int(meta["epoch"]),
            "command": f"revgnn-dgl evaluate --model {name} --pretrained --threads 1",
        },
        training={
            "command": command,
            "run": f"results/runs/{run.name}",
            "seed": seed,
            # Options added since older runs (layer_weight_decay) are left out where unused.
            **{key: config[key] for key in RECIPE_KEYS if key in config and not (key == "layer_weight_decay" and config[key] is None)},
        },
        eval={"parts": int(meta.get("eval_parts", 1)), "views": int(meta.get("eval_views", 1)), "seed": seed},
        checkpoint={
            "source": "bundled",
            "file": f"{name}/weights.safetensors",
            "sha256": sha256_file(weights),
            "how": f"Ships with the package (zoo/{name}/): seed {seed} of the committed run "
            f"results/runs/{run.name}, trained with training.command.",
        },
        citation=CITATION,
    )
    text = f"# Model card written by results/make_card.py from results/runs/{run.name} (seed {seed}).\n"
    text += yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=100)
    write_atomically(CARDS / name / "card.yaml", text.encode("utf-8"))
    return card


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run folder (results/runs/NAME)")
    parser.add_argument("--name", required=True, help="the card's name")
    parser.add_argument("--description", required=True)
    parser.add_argument("--seed", type=int, default=0, help="which seed's best checkpoint to bundle (default 0)")
    parser.add_argument("--alias", action="append", help="another name of the card (repeatable)")
    args = parser.parse_args(argv)
    if not (args.run / "summary.json").is_file():
        parser.error(f"{args.run} is not a finished run folder (no summary.json)")
    card = make_card(args.run.resolve(), args.name, args.description, args.seed, args.alias)
    print(f"wrote {CARDS / args.name / 'card.yaml'} ({card['parameters']:,} parameters, "
          f"val {card['metrics']['val']:.4f}, test {card['metrics']['test']:.4f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
