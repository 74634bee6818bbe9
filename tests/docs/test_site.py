"""The documentation: a README that routes, pages that say each thing once, and a site that
builds without a warning and renders in a browser (headless Chromium) with no broken link."""

from __future__ import annotations

import html.parser
import importlib.util
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
from suite_env import REPO_ROOT, missing_requirement

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"


def prose_paragraphs(text: str) -> List[str]:
    """Paragraphs of running text (no code, tables, headings, lists or markers), whitespace-folded."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.strip().splitlines() if line.strip()]
        if not lines or lines[0].lstrip().startswith(("#", "|", "<!--", "- ", "* ", "![", ">")):
            continue
        paragraph = " ".join(" ".join(lines).split())
        if len(paragraph) >= 160:  # a sentence or two of reference text, not a caption
            out.append(paragraph)
    return out


def test_the_readme_routes_and_holds_the_two_commands_exactly_as_ci_runs_them() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 180
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = 'python3 -m venv .venv && . .venv/bin/activate && pip install -c requirements/constraints.txt -e ".[test]" && python -m pytest'
    assert test_command in text and any(line.strip() == test_command for line in ci.splitlines())
    quick_start = re.search(r"^python3 -m venv .venv && .*revgnn-dgl train .*$", text, re.M)
    assert quick_start and "--out runs/quickstart" in quick_start.group(0)
    for page in re.findall(r"\]\((docs/[^)#]+)", text):  # every page it routes to exists
        assert (REPO_ROOT / page).is_file(), page


def test_no_paragraph_of_reference_text_is_written_twice() -> None:
    seen: Dict[str, str] = {}
    twice = []
    for path in [README, *sorted(DOCS.glob("*.md"))]:
        for paragraph in prose_paragraphs(path.read_text(encoding="utf-8")):
            if paragraph in seen and seen[paragraph] != path.name:
                twice.append(f"{seen[paragraph]} and {path.name}: {paragraph[:80]}...")
            seen.setdefault(paragraph, path.name)
    assert not twice, twice


def test_the_check_catches_a_repeated_paragraph() -> None:
    paragraph = "A paragraph long enough to count as reference text, " * 4
    assert prose_paragraphs(f"# Title\n\n{paragraph}\n\n```\n{paragraph}\n```\n") == [" ".join(paragraph.split())]


# ------------------------------------------------------------------ the built site
class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: List[str] = []
        self.ids: Set[str] = set()

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, object]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))


def broken_internal_links(site: Path) -> List[str]:
    """Every relative link of every page whose file (or #anchor in it) does not exist."""
    parsed: Dict[Path, _Links] = {}

    def page(path: Path) -> _Links:
        if path not in parsed:
            parser = _Links()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            parsed[path] = parser
        return parsed[path]

    broken = []
    for html_file in sorted(site.rglob("*.html")):
        for href in page(html_file).links:
            url = urllib.parse.urlparse(href)
            if url.scheme or href.startswith(("mailto:", "javascript:")):
                continue
            target = (html_file.parent / urllib.parse.unquote(url.path)).resolve() if url.path else html_file
            if not target.exists():
                broken.append(f"{html_file.relative_to(site)} -> {href}")
            elif url.fragment and target.suffix == ".html" and url.fragment not in page(target).ids:
                broken.append(f"{html_file.relative_to(site)} -> {href} (no such anchor)")
    return broken


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module, package in (
        ("sphinx", "sphinx"),
        ("furo", "furo"),
        ("sphinx_click", "sphinx-click"),
        ("myst_parser", "myst-parser"),
    ):
        if importlib.util.find_spec(module) is None:
            missing_requirement(
                f"{package} is not installed", "pip install -c requirements/constraints.txt -e '.[docs]'"
            )
    out = tmp_path_factory.mktemp("site") / "html"
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out),
                           "-d", str(out.parent / "doctrees")], capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, f"the docs do not build without warnings:\n{proc.stderr[-4000:]}"
    return out


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    missing_requirement("headless Chromium is not installed", "apt-get install chromium")


def _browse(url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", "--virtual-time-budget=8000", *extra, url],
                          capture_output=True, text=True, timeout=180)  # fmt: skip


@pytest.mark.slow
def test_the_site_has_no_broken_internal_link(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert not broken_internal_links(site)


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text('<a href="b.html">b</a><a href="a.html#here">x</a><p id="there"></p>')
    assert broken_internal_links(tmp_path) == ["a.html -> b.html", "a.html -> a.html#here (no such anchor)"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "page, headings",
    [("index.html", ["revgnn_dgl", "Using it"]), ("api.html", ["Python API", "GroupRevRes"]),
     ("cli.html", ["Command-line reference", ">train<", "full-graph"]), ("zoo/index.html", ["The model zoo", "revgnn-deep"])],
)  # fmt: skip
def test_pages_render_in_a_browser(site: Path, tmp_path: Path, page: str, headings: List[str]) -> None:
    """A screenshot that is not blank, and the expected headings in the rendered DOM."""
    shot = tmp_path / "page.png"
    done = _browse((site / page).as_uri(), f"--screenshot={shot}", "--window-size=1280,1000", "--hide-scrollbars")
    assert shot.is_file() and shot.stat().st_size > 5_000, done.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("L").getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 10, "the screenshot is blank"  # text and a theme, not one flat colour
    dom = _browse((site / page).as_uri(), "--dump-dom").stdout
    for heading in headings:
        assert heading in dom, (page, heading)


@pytest.mark.slow
def test_the_site_search_finds_the_engine(site: Path) -> None:
    dom = _browse((site / "search.html").as_uri() + "?q=GroupRevRes", "--dump-dom").stdout
    results = re.search(r'<ul[^>]*class="search[^"]*"[^>]*>(.*?)</ul>', dom, re.S)
    assert results and "GroupRevRes" in results.group(1), dom[-3000:]
