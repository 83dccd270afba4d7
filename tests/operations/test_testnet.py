"""`zoo-node testnet`: the whole network as real processes (anvil, coordinator, `zoo-node join` nodes with workers).

One short run end to end (3 nodes, 1 epoch): loss falls, the epoch is settled, every node's claim is paid and the
claims add up to the epoch's reward to the wei; afterwards no process it started is alive and its ports are free.
Then the two other ways out: Ctrl-C (SIGINT) of a foreground run, and `testnet down` of a detached one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.fixtures.polling import wait_until
from tests.foundation.cli_runner import REPO, cli_env, run_cli
from zoo_node.testnet.processes import group_members, pid_alive

pytestmark = pytest.mark.slow


def read_state(folder: Path) -> dict:
    try:
        return json.loads((folder / "testnet.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def port_free(port: int) -> bool:
    """A server could listen on `port` again (SO_REUSEADDR, as servers bind: the closed connections' TIME_WAIT
    entries do not count as taken)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def assert_all_gone(state: dict) -> None:
    """Every process the testnet recorded is dead, with its whole group, and anvil's and the API's ports are free."""
    assert state["processes"], state
    for name, pid in state["processes"].items():
        assert not pid_alive(pid), f"{name} (pid {pid}) is still alive"
        assert group_members(pid) == [], f"{name}'s group still has {group_members(pid)}"
    assert not pid_alive(state["pid"])
    ports = [urlparse(state["rpc_url"]).port]
    if state.get("coordinator"):
        ports.append(int(state["coordinator"].rsplit(":", 1)[1]))
    for port in ports:
        assert port_free(port), f"port {port} is still taken"


def test_testnet_up_trains_settles_pays_and_cleans_up(tmp_path: Path) -> None:
    folder = tmp_path / "testnet"
    result = run_cli(
        "testnet", "up", "--nodes", "3", "--steps", "12", "--epochs", "1", "--dir", str(folder), "--json",
        timeout=1500,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-6000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["nodes"] == 3 and summary["steps"] >= 12
    assert summary["loss_first"] is not None and summary["loss_last"] < summary["loss_first"]
    assert summary["epochs_settled"] == 1
    assert summary["claims_paid"] == 3, summary
    assert int(summary["rewards_paid_wei"]) == int(summary["epochs_reward_wei"]) > 0
    assert summary["receipts_rejected"] == 0 and summary["receipts_accepted"] > 0
    assert summary["receipts_journaled"] >= summary["receipts_accepted"] and summary["receipts_lost"] == 0
    assert summary["tokens"] > 0 and summary["device_hours"] > 0 and summary["device_kind"] == "cpu"
    assert 0 < summary["mfu"] < 1
    state = read_state(folder)
    assert state["status"] == "finished"
    assert_all_gone(state)


def _started_up_to_a_node(folder: Path) -> dict:
    return wait_until(
        lambda: (s := read_state(folder)).get("processes", {}).get("node-0") and s,
        300,
        "the testnet to start its first node",
    )


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    folder = tmp_path / "testnet"
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo_node", "testnet", "up", "--nodes", "2", "--dir", str(folder), "--json"],
        cwd=REPO,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _started_up_to_a_node(folder)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2 and "interrupted" in stderr
    state = read_state(folder)
    assert state["status"] == "failed"
    assert_all_gone(state)


def test_detached_testnet_status_and_down(tmp_path: Path) -> None:
    folder = tmp_path / "testnet"
    started = run_cli("testnet", "up", "--nodes", "2", "--detach", "--dir", str(folder), "--json")
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["pid"]
    try:
        _started_up_to_a_node(folder)
        status = run_cli("testnet", "status", "--dir", str(folder), "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["alive"] is True
        down = run_cli("testnet", "down", "--dir", str(folder), "--json", timeout=180)
        assert down.returncode == 0, down.stderr
        assert json.loads(down.stdout)["killed_leftovers"] == []  # `up` cleaned up after itself
        assert_all_gone(read_state(folder))
    finally:
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)


def test_status_and_down_without_a_testnet_are_clear_errors(tmp_path: Path) -> None:
    for command in ("status", "down"):
        result = run_cli("testnet", command, "--dir", str(tmp_path / "none"))
        assert result.returncode == 2 and "no testnet in" in result.stderr
