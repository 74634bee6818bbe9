"""A Sphinx extension that writes the zoo's pages from the model cards at build time.

``docs/zoo/index.md`` (the table of ``revgnn-dgl zoo list --markdown``) and one page per card
(``docs/zoo/NAME.md``: description, arguments, parameter count, the paper's and the measured
scores, the recipe, the weights and the citation). The folder is generated: it is not committed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import yaml

DOCS = Path(__file__).resolve().parent
ZOO = DOCS.parents[0] / "zoo"
OUT = DOCS / "zoo"


def _card_files() -> List[Path]:
    return sorted(ZOO.glob("*/card.yaml"))


def _value(v: Any) -> str:
    return f"`{v}`" if not isinstance(v, (dict, list)) else f"`{yaml.safe_dump(v, default_flow_style=True).strip()}`"


def card_page(card: Dict[str, Any]) -> str:
    name = card["name"]
    lines = [f"# `{name}`", ""]
    if card.get("description"):
        lines += [" ".join(str(card["description"]).split()), ""]
    aliases = ", ".join(f"`{a}`" for a in card.get("aliases") or []) or "none"
    lines += ["| | |", "|---|---|", f"| architecture | `{card.get('architecture')}` |", f"| dataset | `{card.get('dataset')}` |",
              f"| aliases | {aliases} |"]  # fmt: skip
    if card.get("parameters") is not None:
        lines.append(f"| parameters | {int(card['parameters']):,} (checked against the built model by the tests) |")
    lines += ["", "## Arguments", "", "| argument | value |", "|---|---|"]
    lines += [f"| `{k}` | {_value(v)} |" for k, v in (card.get("arguments") or {}).items()]
    for section, title in (("paper", "The paper's figures"), ("measured", "Measured here"), ("training", "Recipe")):
        if card.get(section):
            lines += ["", f"## {title}", "", "| key | value |", "|---|---|"]
            lines += [f"| `{k}` | {_value(v)} |" for k, v in card[section].items()]
    checkpoint = card.get("checkpoint") or {}
    lines += ["", "## Weights", ""]
    if checkpoint:
        lines += [
            f"Source: `{checkpoint.get('source', 'none')}`."
            + (f" {' '.join(str(checkpoint['how']).split())}" if checkpoint.get("how") else "")
        ]
    else:
        lines += ["None: build it with random weights and train it."]
    lines += ["", "```python", "import revgnn_dgl", f'model = revgnn_dgl.create_model("{name}")', "```", "",
              f"`revgnn-dgl zoo show {name}` prints this card."]  # fmt: skip
    if card.get("citation"):
        lines += ["", "## Citation", "", " ".join(str(card["citation"]).split())]
    return "\n".join(lines) + "\n"


def write_zoo_pages(*_: Any) -> None:
    from click.testing import CliRunner

    from revgnn_dgl.cli import cli

    OUT.mkdir(exist_ok=True)
    table = CliRunner().invoke(cli, ["zoo", "list", "--markdown"]).output
    cards = [yaml.safe_load(path.read_text(encoding="utf-8")) for path in _card_files()]
    names = [card["name"] for card in cards]
    for name in names:
        table = table.replace(f"[`{name}`]({name}/card.yaml)", f"[`{name}`]({name}.md)")
    index = ["# The model zoo", "",
             "Every card in the repository's `zoo/` folder: architecture, arguments, dataset, the paper's and the measured "
             "scores, the recipe and where the weights come from. `revgnn_dgl.create_model(NAME)` builds one; "
             "`revgnn-dgl zoo show NAME` prints it.", "", table.strip(), "", "```{toctree}", ":hidden:", "",
             *names, "```", ""]  # fmt: skip
    pages = {"index.md": "\n".join(index)}
    pages.update({f"{card['name']}.md": card_page(card) for card in cards})
    for stale in OUT.glob("*.md"):
        if stale.name not in pages:
            stale.unlink()
    for name, text in pages.items():
        path = OUT / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:  # unchanged pages keep their time stamp
            path.write_text(text, encoding="utf-8")


def setup(app: Any) -> Dict[str, Any]:
    app.connect("builder-inited", write_zoo_pages)
    return {"parallel_read_safe": True, "version": "1"}
