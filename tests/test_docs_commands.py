"""Every command the documentation prints can be copied as written into a fresh clone.

The commands are extracted from the Markdown files (inline code and ``bash`` blocks). Each
``revgnn-dgl`` command must name existing subcommands and options (parsed against the real
click commands); its repository paths (``--config``, ``--checkpoint``, ``--run``, ``--teacher``)
must exist; a ``train`` without ``--resume`` must not write into a folder that already holds a
run (a committed ``results/runs/NAME``); and its settings must resolve (the names of models and
datasets, the config file) the way ``train`` resolves them, without training. Each ``python
SCRIPT`` must name a script of the repository. Placeholders (``NAME``, ``FILE``, ``DIR``,
``PATH.bin``, ``...``) are words the reader replaces: a command with one is checked for its
subcommand and options only.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Iterator, List, Tuple

import click
import pytest

from revgnn_dgl.cli import cli
from revgnn_dgl.errors import DatasetError
from revgnn_dgl.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")),
        "benchmarks/README.md", "results/README.md", "zoo/README.md"]  # fmt: skip
PLACEHOLDER = re.compile(r"(^|[/=])([A-Z][A-Z_]+)(\.bin|\.pth|\.safetensors)?$|\.\.\.|^\[|\]$|^N$|,\.\.\.,")
REPO_PATH_OPTIONS = ("--config", "--checkpoint", "--run", "--teacher", "--partitions")


def documented_commands() -> Iterator[Tuple[str, str]]:
    """(file, command) for each ``revgnn-dgl`` or ``python`` command in the documentation."""
    for name in DOCS:
        text = (REPO / name).read_text(encoding="utf-8")
        found: List[str] = re.findall(r"`((?:revgnn-dgl|python) [^`]+)`", text)
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                for part in re.split(r"&&|;", line):
                    part = part.strip()
                    if part.startswith(("revgnn-dgl ", "python ")):
                        found.append(part)
        for command in dict.fromkeys(found):
            yield name, command


COMMANDS = list(documented_commands())


def _resolve(words: List[str]) -> Tuple[click.Command, List[str], List[str]]:
    """The click command a ``revgnn-dgl`` command line names, its path and its own arguments."""
    command: click.Command = cli
    path: List[str] = []
    with click.Context(cli) as ctx:
        while isinstance(command, click.Group) and words and not words[0].startswith("-"):
            sub = command.get_command(ctx, words[0])
            assert sub is not None, f"no subcommand {words[0]!r} after {' '.join(path) or 'revgnn-dgl'}"
            path.append(words.pop(0))
            command = sub
    return command, path, words


def test_the_documentation_has_commands() -> None:
    assert sum(c.startswith("revgnn-dgl train") for _, c in COMMANDS) >= 10
    assert any(c.startswith("python benchmarks/") for _, c in COMMANDS)


@pytest.mark.parametrize("where, command", COMMANDS, ids=[f"{w}:{c[:60]}" for w, c in COMMANDS])
def test_documented_command_runs_as_written(where: str, command: str, tmp_path: Path, monkeypatch) -> None:
    words = shlex.split(command)
    if words[0] == "python":
        if words[1] == "-m":
            assert words[2] in ("pytest", "revgnn_dgl"), command
        else:
            assert (REPO / words[1]).is_file(), f"{where}: {command}: no script {words[1]}"
        return
    placeholders = any(PLACEHOLDER.search(w) for w in words)
    cmd, path, args = _resolve(words[1:])
    known = {opt for param in cmd.params for opt in [*param.opts, *param.secondary_opts]}
    for word in args:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"{where}: {command}: revgnn-dgl {' '.join(path)} has no option {word}"
    values = dict(zip(args, args[1:]))
    for option in REPO_PATH_OPTIONS:
        if option in values and not PLACEHOLDER.search(values[option]) and not values[option].startswith("runs/"):
            assert (REPO / values[option]).exists(), f"{where}: {command}: {values[option]} is not in the repository"
    if path == ["tune"] and not placeholders and len(args) > 1:  # its search space and fixed settings must resolve
        monkeypatch.chdir(REPO)
        from revgnn_dgl.train.settings import resolve_train_config
        from revgnn_dgl.train.tune import parse_space, read_space_file

        params = cmd.make_context("tune", list(args)).params
        space = parse_space(params["space_items"])
        if params["space_file"]:
            read_space_file(params["space_file"], space)
        fixed = {k: v for k, v in params.items() if k in TrainConfig.keys() and v is not None and v != {}}
        config = resolve_train_config(fixed, config_file=params.get("config_file"))
        if space.params:  # none: tune searches the default space of the graph (train/spaces.py)
            space.check(config)
        return
    # A file under runs/ (e.g. a study's best.yaml) is written by a command before it in the same text.
    written_before = any(values.get(option, "").startswith("runs/") for option in REPO_PATH_OPTIONS)
    if path != ["train"] or placeholders or "--resume" in values or written_before:
        return
    # A fresh clone: the repository as it ships. train must not be refused there (a run the user
    # made by following the docs, in their own runs/, is theirs and not what is checked).
    monkeypatch.chdir(REPO)
    out = values.get("--out")
    if out:
        assert not _ships_a_run(out), f"{where}: {command}: the repository ships a run in {out}"
    ctx = cmd.make_context("train", list(args))
    # What train takes as its own parameters (not through **flags) is not part of the run's settings.
    import inspect

    own = {name for name, p in inspect.signature(cmd.callback).parameters.items() if p.kind is not p.VAR_KEYWORD}
    given = {k: v for k, v in ctx.params.items() if v is not None and v != {} and k not in own and k != "recipe"}
    from revgnn_dgl.train.settings import default_recipe, resolve_train_config

    recipe = ctx.params.get("recipe") or default_recipe(given, ctx.params.get("config_file"), None)
    if (
        recipe == "auto"
        and str(given.get("dataset", "")).endswith((".bin", ".dgl"))
        and not (REPO / given["dataset"]).exists()
    ):
        return  # auto measures the graph: a file the example before the command writes
    try:
        config = resolve_train_config(given, config_file=ctx.params.get("config_file"), recipe=recipe)
    except DatasetError as err:  # auto measures the graph: a real dataset must be there (skipped on a user's checkout)
        if recipe != "auto" or "not found" not in str(err):
            raise
        from suite_env import missing_data, shared_data_root

        missing_data(
            shared_data_root() / str(given.get("dataset")), f"the dataset {given.get('dataset')} (auto reads it)"
        )
    assert not _ships_a_run(str(config.out)), f"{where}: {command}: the repository ships a run in {config.out}"


def _ships_a_run(out: str) -> bool:
    """Whether the repository itself holds a run in ``out``: its ``config.yaml`` is a tracked file
    (git's index; outside a git checkout, nothing of the user's counts)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--", f"{out.rstrip('/')}/config.yaml"], capture_output=True, text=True
    )
    return listed.returncode == 0 and bool(listed.stdout.strip())
