"""The audit's hostile and unlucky inputs, through the command line: each gets one ``Error:`` line
and a non-zero exit, and leaves nothing behind in ``--out``."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable, List

import dgl
import pytest
import torch
from click.testing import CliRunner, Result
from safetensors.torch import save_file

from revgnn_dgl.cli import cli
from revgnn_dgl.train import STATE_FILE, TrainConfig, train

SMALL = ["--model", "wide", "--num-layers", "2", "--hidden", "8", "--train-parts", "1", "--eval-parts", "1",
         "--device", "cpu"]  # fmt: skip
PROTEINS = ["--dataset", "synthetic-proteins", "--dataset-option", "num_nodes=150"]


def invoke(args: List[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=True)


def one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert len(errors[0]) < 600, errors[0]  # no C++ backtrace folded into the line
    for needle in needles:
        assert needle in errors[0], result.output


def graph_file(path: Path, mutate: Callable[[dgl.DGLGraph], None] = lambda g: None) -> Path:
    g = dgl.rand_graph(40, 160)
    g.ndata["feat"] = torch.randn(40, 4)
    g.ndata["label"] = torch.arange(40) % 7
    split = torch.arange(40) % 4
    g.ndata["train_mask"], g.ndata["val_mask"], g.ndata["test_mask"] = split < 2, split == 2, split == 3
    mutate(g)
    dgl.save_graphs(str(path), [g])
    return path


def set_nan(g: dgl.DGLGraph) -> None:
    g.ndata["feat"][17, 2] = float("nan")


def stray_label(g: dgl.DGLGraph) -> None:
    g.ndata["label"][17] = 10**6


def empty_val(g: dgl.DGLGraph) -> None:
    g.ndata["val_mask"][:] = False


@pytest.mark.parametrize(
    "mutate, needles",
    [
        (set_nan, ["non-finite", "node 17"]),
        (stray_label, ["1000000", "node 17"]),
        (empty_val, ["val_mask", "selects no node"]),
    ],
    ids=["nan-features", "label-10^6", "empty-val-mask"],
)
def test_bad_graph_files_are_refused_before_training(mutate, needles, tmp_path: Path) -> None:
    path = graph_file(tmp_path / "g.bin", mutate)
    out = tmp_path / "run"
    one_line_error(invoke(["train", *SMALL, "--dataset", str(path), "--out", str(out)]), *needles)
    assert not out.exists()


@pytest.mark.parametrize(
    "content, needle",
    [(b"", "empty"), (bytes(random.Random(0).randrange(256) for _ in range(4096)), "not a DGL graph file")],
    ids=["empty", "random-bytes"],
)
def test_unreadable_graph_files(content: bytes, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "g.bin"
    path.write_bytes(content)
    one_line_error(invoke(["train", *SMALL, "--dataset", str(path), "--out", str(tmp_path / "o")]), needle)


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--lr", "inf"], ["lr must be a positive finite number"]),
        (["--seed", "-1"], ["seed must be in"]),
        (["--seed", "99999999999"], ["seed must be in"]),
        (["--dataset-option", "num_nodes=abc"], ["num_nodes must be an integer, got 'abc'"]),
        (["--hidden", "15"], ["hidden=15 is not divisible by groups=2"]),
    ],
    ids=["lr-inf", "seed-negative", "seed-huge", "option-type", "hidden-groups"],
)
def test_bad_settings(extra: List[str], needles: List[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    one_line_error(invoke(["train", *SMALL, *PROTEINS, *extra, "--out", str(out)]), *needles)
    assert not out.exists()  # the corrected command is not blocked by a leftover config.yaml


def test_a_folder_given_as_dataset(tmp_path: Path) -> None:
    one_line_error(invoke(["train", *SMALL, "--dataset", str(tmp_path), "--out", str(tmp_path / "o")]), "directory")


def test_exploding_training_exits_non_zero_with_the_epoch(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(
        ["train", *SMALL, *PROTEINS, "--lr", "1e30", "--grad-clip", "0", "--epochs", "20", "--out", str(out)]
    )
    one_line_error(result, "epoch", "stopped")
    assert not (out / "summary.json").exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("done") / "run"
    assert invoke(["train", *SMALL, *PROTEINS, "--epochs", "2", "--out", str(out)]).exit_code == 0
    return out


def test_damaged_state_and_empty_config_on_resume(finished: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for path in finished.iterdir():
        if path.is_file():
            (run / path.name).write_bytes(path.read_bytes())
    state = bytearray((run / STATE_FILE).read_bytes())
    for i in random.Random(1).sample(range(len(state) // 2, len(state)), 50):
        state[i] ^= 0x5A
    (run / STATE_FILE).write_bytes(bytes(state))
    one_line_error(invoke(["train", "--resume", str(run), "--epochs", "3"]), "damaged")
    (run / "config.yaml").write_text("")
    one_line_error(invoke(["train", "--resume", str(run), "--epochs", "3"]), "is empty")


def test_crafted_header_is_refused(finished: Path, tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    best = finished / "best.safetensors"
    with safe_open(str(best), "pt") as fh:
        header = json.loads(fh.metadata()["revgnn_dgl"])
    from revgnn_dgl.zoo.checkpoint import config_sha256

    header["arguments"]["hidden"] = 1048576
    save_file(load_file(str(best)), str(tmp_path / "evil.safetensors"), metadata={"revgnn_dgl": json.dumps(header)})
    one_line_error(
        invoke(["evaluate", "--checkpoint", str(tmp_path / "evil.safetensors"), "--device", "cpu"]), "checksum"
    )
    header["sha256"] = config_sha256(header)  # crafted with a matching checksum: the sizes are still refused
    save_file(load_file(str(best)), str(tmp_path / "evil.safetensors"), metadata={"revgnn_dgl": json.dumps(header)})
    one_line_error(
        invoke(["evaluate", "--checkpoint", str(tmp_path / "evil.safetensors"), "--device", "cpu"]),
        "header describes a model",
    )


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"hello, this is a text file\n", "text"),
        (json.dumps({"a": 1}).encode(), "JSON"),
        (b"\x93NUMPY" + bytes(100), "NumPy"),
        (bytes(random.Random(2).randrange(256) for _ in range(2048)), "unrecognised"),
    ],
    ids=["text", "json", "npy", "random"],
)
def test_zoo_import_says_what_a_file_is(content: bytes, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    one_line_error(
        invoke(["zoo", "import", str(path), "--model", "deep", "--out", str(tmp_path / "o.safetensors")]), needle
    )
    assert not (tmp_path / "o.safetensors").exists()


def test_zoo_import_of_a_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    save_file({"w": torch.zeros(2)}, str(path))
    one_line_error(invoke(["zoo", "import", str(path), "--model", "deep"]), "safetensors")


def test_evaluate_on_another_dataset_does_not_inherit_its_options(finished: Path, tmp_path: Path) -> None:
    path = graph_file(tmp_path / "g.bin")
    result = invoke(["evaluate", "--run", str(finished), "--dataset", str(path), "--device", "cpu"])
    # The run's num_nodes option does not reach the graph file's loader; the model's widths then do not fit.
    one_line_error(result, "does not fit dataset")
    assert "num_nodes" not in result.output


def test_chance_level_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Every validation node of one class: any model is 'at chance' (the majority rate, 1.0)."""

    def one_val_class(g: dgl.DGLGraph) -> None:
        g.ndata["label"][g.ndata["val_mask"]] = 3

    path = graph_file(tmp_path / "g.bin", one_val_class)
    config = TrainConfig(model="wide", dataset=str(path), num_layers=2, hidden=8, train_parts=1, eval_parts=1,
                         epochs=4, chance_patience=3, device="cpu", out=str(tmp_path / "run"))  # fmt: skip
    train(config, progress=False)
    lines = capsys.readouterr().out.splitlines()
    warnings = [line for line in lines if line.startswith("warning: the validation accuracy (")]
    assert len(warnings) == 1 and "at epoch 3) has stayed at or below chance level (1.0000, always" in warnings[0], (
        lines
    )
    assert "for 3 evaluations" in warnings[0]


def test_package_warnings_are_one_line(tmp_path: Path) -> None:
    """A graph file with an ignored key: `warning: ...` on one line, no Python source line."""
    import subprocess
    import sys

    def extra_key(g: dgl.DGLGraph) -> None:
        g.ndata["unused_key"] = torch.zeros(g.num_nodes())

    path = graph_file(tmp_path / "g.bin", extra_key)
    proc = subprocess.run(
        [sys.executable, "-m", "revgnn_dgl", "train", "--model", "wide", "--dataset", str(path), "--num-layers", "2",
         "--hidden", "8", "--train-parts", "1", "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "unused_key" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "warnings.warn" not in proc.stderr, proc.stderr


def test_two_trainings_on_one_out(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from revgnn_dgl.train.rundir import RunLock
            with RunLock({str(out)!r}):
                print("locked", flush=True)
                sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        one_line_error(invoke(["train", *SMALL, *PROTEINS, "--epochs", "1", "--out", str(out)]), f"pid {holder.pid}")
    finally:
        holder.communicate("\n", timeout=30)
    assert not (out / "metrics.jsonl").exists()


def test_a_closed_pipe_is_no_error() -> None:
    """`revgnn-dgl zoo list | head -1`: the reader leaves early; exit 0 and no error line."""
    import subprocess
    import sys

    # A reader that closes its end at once, then a writer with more than a pipe buffer to say.
    code = (
        "import sys; from revgnn_dgl.cli import cli; from revgnn_dgl.zoo import register_model;"
        "[register_model({'name': f'pipe-{i:04d}', 'architecture': 'mlp', 'arguments': {}}) for i in range(3000)];"
        "cli(['zoo', 'list'], prog_name='revgnn-dgl')"
    )
    proc = subprocess.run(f"{sys.executable} -c \"{code}\" | head -1", shell=True, executable="/bin/bash",
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.stdout.startswith("name"), proc.stdout[:200]
    status = subprocess.run(f"set -o pipefail; {sys.executable} -c \"{code}\" | head -1 > /dev/null", shell=True,
                            executable="/bin/bash", capture_output=True, text=True, timeout=120)  # fmt: skip
    assert status.returncode == 0 and "Error" not in status.stderr and "Broken pipe" not in status.stderr, status.stderr


def test_did_you_mean_for_models_and_datasets() -> None:
    from click.testing import CliRunner

    from revgnn_dgl.cli import cli

    result = CliRunner().invoke(cli, ["zoo", "show", "revgnn-dep"])
    assert result.exit_code == 1 and "Did you mean revgnn-deep" in result.output
    result = CliRunner().invoke(cli, ["train", "--dataset", "cor", "--model", "wide"])
    assert result.exit_code == 1 and "Did you mean cora?" in result.output


@pytest.mark.slow
def test_ctrl_c_exits_130_and_leaves_a_resumable_run(tmp_path: Path) -> None:
    """SIGINT to a one-process `train`: exit 130, a line saying what was kept and how to go on."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "revgnn_dgl", "train", "--model", "wide", "--dataset", "synthetic-proteins",
         "--dataset-option", "num_nodes=200", "--num-layers", "2", "--hidden", "8", "--epochs", "500",
         "--threads", "1", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() or len((out / "metrics.jsonl").read_text().splitlines()) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert last.startswith(f"Interrupted ({out}: epochs 1-") and f"--resume {out}" in last, stderr[-2000:]
    assert "Traceback" not in stderr and "Aborted" not in stderr
