"""The suite's own rule for missing data: fail in CI or with REVGNN_DGL_DATA set, naming the
folder; skip with the reason only on a user's checkout; a loader error is an error, never a skip.

Runs pytest in a subprocess on a small test file, with this folder's ``conftest.py`` and
``suite_env.py`` copied next to it (so that the default data folder, ``../shared/data`` of that
copy, is known to be missing), and reads the outcomes from its JUnit XML report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

TINY_TESTS = """
def test_folder(shared_data_dir):
    assert shared_data_dir.is_dir()


def test_cora(dataset_dir):
    assert dataset_dir("cora").is_dir()
"""

LOADER_TEST = """
from revgnn_dgl.data import load_dataset


def test_loader(dataset_dir):
    load_dataset("cora", root=dataset_dir("cora"))
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """``tmp_path/repo/tests`` holding the suite's conftest, its helper and the tiny tests;
    the default data folder ``tmp_path/shared/data`` does not exist."""
    tests = tmp_path / "repo" / "tests"
    tests.mkdir(parents=True)
    for name in ("conftest.py", "suite_env.py"):
        shutil.copy(TESTS_DIR / name, tests / name)
    (tests / "test_tiny.py").write_text(TINY_TESTS)
    (tests / "test_loader.py").write_text(LOADER_TEST)
    (tmp_path / "repo" / "pytest.ini").write_text("[pytest]\n")
    return tmp_path


def run_pytest(
    checkout: Path, target: str, ci: Optional[str] = None, data: Optional[Path] = None
) -> Tuple[int, Dict[str, Tuple[str, str]]]:
    """Exit status and ``{test name: (outcome, message)}`` of ``pytest target`` in the copy."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "REVGNN_DGL_DATA", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if ci is not None:
        env["CI"] = ci
    if data is not None:
        env["REVGNN_DGL_DATA"] = str(data)
    report = checkout / f"report-{len(list(checkout.glob('report-*')))}.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={report}", f"tests/{target}"],
        cwd=checkout / "repo",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        result = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        outcome = "passed" if result is None else result.tag
        message = "" if result is None else (result.get("message") or "") + (result.text or "")
        outcomes[case.get("name")] = (outcome, message)
    return proc.returncode, outcomes


def test_ci_fails_naming_the_missing_folder(checkout: Path) -> None:
    default = checkout / "shared" / "data"
    code, outcomes = run_pytest(checkout, "test_tiny.py", ci="true")
    assert code == 1
    assert set(outcomes) == {"test_folder", "test_cora"}
    for outcome, message in outcomes.values():
        assert outcome in ("error", "failure"), outcomes  # in setup (error) or in the test: never skipped
        assert f"the real datasets folder not found at {default}" in message and "CI='true' is set" in message


def test_explicit_data_variable_fails_naming_its_folder(checkout: Path) -> None:
    elsewhere = checkout / "elsewhere"
    code, outcomes = run_pytest(checkout, "test_tiny.py", data=elsewhere)
    assert code == 1
    for outcome, message in outcomes.values():
        assert outcome in ("error", "failure") and f"not found at {elsewhere}" in message, outcomes
        assert "REVGNN_DGL_DATA is set explicitly" in message


def test_user_checkout_skips_with_the_reason(checkout: Path) -> None:
    default = checkout / "shared" / "data"
    code, outcomes = run_pytest(checkout, "test_tiny.py", ci="")  # an empty CI counts as unset
    assert code == 0
    assert set(outcomes) == {"test_folder", "test_cora"}
    for outcome, message in outcomes.values():
        assert outcome == "skipped" and f"not found at {default}" in message, outcomes


def test_ci_fails_for_one_missing_dataset(checkout: Path) -> None:
    (checkout / "shared" / "data").mkdir(parents=True)
    code, outcomes = run_pytest(checkout, "test_tiny.py", ci="1")
    assert code == 1
    assert outcomes["test_folder"] == ("passed", "")
    outcome, message = outcomes["test_cora"]
    assert (
        outcome in ("error", "failure")
        and f"the dataset folder cora/ not found at {checkout / 'shared' / 'data' / 'cora'}" in message
    )


@pytest.mark.slow
def test_loader_error_is_an_error_not_a_skip(checkout: Path) -> None:
    (checkout / "shared" / "data" / "cora").mkdir(parents=True)  # there, but without its files
    code, outcomes = run_pytest(checkout, "test_loader.py")  # a user's checkout: skips allowed
    assert code == 1
    outcome, message = outcomes["test_loader"]
    assert outcome == "failure" and "DatasetError" in message and "Planetoid files not found" in message, outcomes


def test_missing_requirement_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from suite_env import missing_requirement

    what, fix = "building a wheel offline needs the 'wheel' package, which is not installed", "pip install wheel"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"needs the 'wheel' package.*CI='true' is set.*pip install wheel"):
        missing_requirement(what, fix)
    monkeypatch.setenv("CI", "")
    with pytest.raises(
        pytest.skip.Exception, match=r"needs the 'wheel' package, which is not installed \(pip install wheel\)"
    ):
        missing_requirement(what, fix)


def test_missing_data_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from suite_env import missing_data

    absent = tmp_path / "no_data"
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("REVGNN_DGL_DATA", raising=False)
    with pytest.raises(
        pytest.skip.Exception, match=f"the real datasets folder not found at {absent} \\(a user's checkout\\)"
    ):
        missing_data(absent)
    monkeypatch.setenv("REVGNN_DGL_DATA", str(absent))
    with pytest.raises(
        pytest.fail.Exception,
        match=f"the dataset folder cora/ not found at {absent}, and REVGNN_DGL_DATA is set explicitly",
    ):
        missing_data(absent, "the dataset folder cora/")
    monkeypatch.delenv("REVGNN_DGL_DATA")
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match=f"not found at {absent}, and CI='1' is set"):
        missing_data(absent)
