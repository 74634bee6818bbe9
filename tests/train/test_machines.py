"""One machine of many (``--ip-config``): reading DGL's ip_config, and the one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from revgnn_dgl.cli import cli
from revgnn_dgl.errors import ConfigError
from revgnn_dgl.train.machines import Machines, is_local_address


def test_layout_of_each_machine() -> None:
    lines = ["10.0.0.1 30050", "10.0.0.2 30050", "10.0.0.3"]
    for m in range(3):
        layout = Machines.parse(lines, machine=m)
        assert layout.count == 3 and layout.master_addr == "10.0.0.1" and layout.master_port == 29500
        assert layout.trainers(6) == 2 and layout.first_rank(6) == 2 * m
        assert layout.server_ids(2) == [2 * m, 2 * m + 1]  # DGL's ids: machine m's servers
    with pytest.raises(ConfigError, match="--nproc 4 trainers cannot be shared evenly by the 3 machines"):
        Machines.parse(lines, machine=0).trainers(4)


def test_this_machine_is_found_by_its_address() -> None:
    assert is_local_address("127.0.0.1") and not is_local_address("192.0.2.7")  # TEST-NET-1: nobody's
    assert Machines.parse(["192.0.2.7 30050", "127.0.0.1 30050"]).machine == 1
    with pytest.raises(
        ConfigError, match=r"none of the addresses in ip_config \(192.0.2.7, 192.0.2.8\) is this machine's"
    ):
        Machines.parse(["192.0.2.7 30050", "192.0.2.8 30050"])


@pytest.mark.parametrize("lines, message", [
    ([], "names no machine"),
    (["10.0.0.1 30050", ""], "line 2: expected 'IP PORT'"),  # DGL reads no blank line
    (["10.0.0.1 port"], "line 1: expected 'IP PORT'"),
    (["host-a 30050"], "'host-a' is not an IPv4 address"),
    (["10.0.0.1 30050", "10.0.0.1 30051"], "names an address twice"),
])  # fmt: skip
def test_a_bad_ip_config_is_one_line(lines, message) -> None:
    with pytest.raises(ConfigError, match=message):
        Machines.parse(lines, machine=0)


def test_cli_refusals_are_one_line(tmp_path: Path) -> None:
    ip_config = tmp_path / "ip_config.txt"
    ip_config.write_text("192.0.2.7 30050\n192.0.2.8 30050\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--master-port", "29501", "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "--master-port goes with --ip-config" in result.output
    result = runner.invoke(cli, ["train", "--ip-config", str(ip_config), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "is this machine's" in errors[0], result.output
    assert not (tmp_path / "b").exists()


def test_ip_config_needs_partitions_and_one_partition_per_machine(tmp_path: Path) -> None:
    from distgraph_jobs import make_partition

    ip_config = tmp_path / "ip_config.txt"
    ip_config.write_text("127.0.0.1 30050\n192.0.2.8 30050\n")
    runner = CliRunner()
    common = ["--model", "wide", "--num-layers", "2", "--hidden", "8", "--device", "cpu", "--nproc", "2"]
    result = runner.invoke(cli, ["train", "--ip-config", str(ip_config), "--dataset", "synthetic-proteins", *common,
                                 "--out", str(tmp_path / "a")])  # fmt: skip
    assert result.exit_code == 1 and "give --partitions too" in result.output, result.output
    one = make_partition(tmp_path / "parts")  # one partition, two machines named
    result = runner.invoke(cli, ["train", "--ip-config", str(ip_config), "--partitions", one, *common,
                                 "--out", str(tmp_path / "b")])  # fmt: skip
    assert result.exit_code == 1 and "has 1 partition(s) and" in result.output and "names 2 machine(s)" in result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_evaluation_parts_of_a_run_over_machines_stay_within_each_machine() -> None:
    import numpy as np
    import torch

    from revgnn_dgl.data import load_dataset
    from revgnn_dgl.train.data import DeviceData
    from revgnn_dgl.train.evaluation import Evaluator

    data = DeviceData.on(load_dataset("synthetic-proteins", num_nodes=300), torch.device("cpu"))
    order = np.random.default_rng(0).permutation(300)  # a partition's original ids: any order
    machines = [order[:140], order[140:]]
    evaluator = Evaluator(data, 3, 2, seed=0, machines=machines)
    assert len(evaluator.views) == 2
    for view in evaluator.views:
        nodes = [part.numpy() for _, part in view]
        assert len(nodes) == 6 and sorted(np.concatenate(nodes).tolist()) == list(range(300))  # each node once
        homes = [{int(m) for m, members in enumerate(machines) if np.isin(part, members).all()} for part in nodes]
        assert all(len(home) == 1 for home in homes)  # a part never spans two machines
    whole = Evaluator(data, 1, 2, seed=0, machines=machines)  # one part per machine: its nodes
    assert [sorted(part.tolist()) for _, part in whole.views[0]] == [sorted(m.tolist()) for m in machines]
