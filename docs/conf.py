"""Sphinx configuration of the revgnn_dgl documentation (built offline: no intersphinx fetches).

python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import revgnn_dgl  # noqa: E402

project = "revgnn_dgl"
author = "the revgnn_dgl developers"
copyright = "2026, the revgnn_dgl developers"
release = version = revgnn_dgl.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_click",
    "zoo_pages",  # docs/zoo_pages.py: one page per model card, generated at build time
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"revgnn_dgl {release}"
html_static_path: list = []
# Offline: MathJax is loaded by the browser when a page shows math; nothing is fetched at build time.
intersphinx_mapping: dict = {}

# ---------------------------------------------------------------- repository links in the pages
# The Markdown pages link to files of the repository (`../results/runs/NAME`), which the site does
# not hold: on the site such a link becomes the path it names, as code.
import re  # noqa: E402

_REPO_LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(\.\./([^)#\s]*)(?:#[^)\s]*)?\)")


def _repository_paths(app, docname, source) -> None:
    def plain(match: "re.Match[str]") -> str:
        text, path = match.group(1), match.group(2)
        return f"`{path}`" if text.strip("`") in (path, path.rstrip("/")) else f"{text} (`{path}`)"

    source[0] = _REPO_LINK.sub(plain, source[0])


def setup(app) -> None:
    app.connect("source-read", _repository_paths)
