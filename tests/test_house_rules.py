"""The package's size rules (issue 35): no module over 600 lines, no function over 80 lines of
code, and no ``echo`` callable threaded through library signatures (messages go through
:mod:`revgnn_dgl.log`). Each rule names every offender, and each check is shown to catch one."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path
from typing import List, Set

from suite_env import REPO_ROOT

PACKAGE = REPO_ROOT / "revgnn_dgl"
MAX_MODULE_LINES = 600
MAX_FUNCTION_CODE_LINES = 80


def _docstring_lines(tree: ast.AST) -> Set[int]:
    lines: Set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def _code_lines(source: str, tree: ast.AST) -> Set[int]:
    """Lines holding code: not blank, not only a comment, not a docstring."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    lines: Set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            lines.update(range(token.start[0], token.end[0] + 1))
    return lines - _docstring_lines(tree)


def long_modules(package: Path = PACKAGE) -> List[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > MAX_MODULE_LINES:
            found.append(f"{path.relative_to(package).as_posix()}: {count} lines")
    return found


def long_functions(package: Path = PACKAGE) -> List[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        code = _code_lines(source, tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
                count = sum(line in code for line in span)
                if count > MAX_FUNCTION_CODE_LINES:
                    found.append(f"{path.relative_to(package).as_posix()}:{node.lineno} {node.name}: {count} lines")
    return found


def echo_parameters(package: Path = PACKAGE) -> List[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
                if "echo" in names:
                    found.append(f"{path.relative_to(package).as_posix()}:{node.lineno} {node.name}(echo)")
    return found


def test_no_module_over_600_lines() -> None:
    assert not long_modules()


def test_no_function_over_80_lines_of_code() -> None:
    assert not long_functions()


def test_no_echo_parameter_in_library_signatures() -> None:
    assert not echo_parameters()


def test_the_checks_find_offenders(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(81))
    doc = '    """' + "\n" * 30 + '    """\n'
    (tmp_path / "big.py").write_text(
        f"def long():\n{body}\n\n\ndef documented():\n{doc}    # a comment\n\n    return 1\n\n\n"
        "def speak(text, echo=print):\n    echo(text)\n" + "\n" * 500
    )
    assert long_modules(tmp_path) == [f"big.py: {len((tmp_path / 'big.py').read_text().splitlines())} lines"]
    assert long_functions(tmp_path) == ["big.py:1 long: 82 lines"]
    speak = (tmp_path / "big.py").read_text().splitlines().index("def speak(text, echo=print):") + 1
    assert echo_parameters(tmp_path) == [f"big.py:{speak} speak(echo)"]
