"""Acceptance of issue 5 with real `zoo-node join` processes against the anvil dev chain:

- three nodes on loopback list each other in `zoo-node status --json`; kill -9 of one is noticed within the peer
  timeout; restarted, it is back with its journal intact;
- kill -9 of a worker with a real p2pd: restarted, and no orphaned p2pd process or socket file remains;
- SIGTERM drains and exits 0; SIGHUP reloads; systemd hears READY, RELOADING, STOPPING.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.control.joins import REPO, JoinProcess, chain_home, clean_env, create_run, gone, joins  # noqa: F401
from zoo_node.config import read_config_file, write_config
from zoo_node.control.worker_process import WorkerSpec
from zoo_node.proto import worker_pb2
from zoo_node.worker.supervisor_link import SupervisorLink

pytestmark = pytest.mark.slow
# The devnet preset: heartbeats every 2 s, a peer silent for 10 s is gone.
PEER_TIMEOUT_S = 10.0


def alive_peers(status: dict) -> set[str]:
    return {p["peer_id"] for p in status["peers"] if p["alive"]}


def test_three_nodes_find_each_other_notice_a_death_and_a_return(make_home, devchain, joins) -> None:  # noqa: F811
    run_id = create_run(devchain)
    homes = [chain_home(make_home, name, devchain) for name in ("a", "b", "c")]
    args = ["--register", "--stake", "1", "--worker-mode", "lifecycle"]
    for home in homes:
        joins.append(JoinProcess(home, *args, "--password-file", str(home / "password")).start())
    statuses = [join.wait_running() for join in joins]
    ids = [s["node"]["peer_id"] for s in statuses]
    assert all(s["node"]["run_id"] == run_id for s in statuses)
    # The rewards figures are read from the chain in the background: none posted yet, and said so plainly.
    rewards = joins[0].wait(lambda s: s["rewards"]["age_s"] >= 0, 30, "a's rewards to be read")["rewards"]
    assert rewards["run_id"] == run_id and rewards["epoch"] == 0 and rewards["problem"] == "no root posted yet"
    assert rewards["account"] == statuses[0]["node"]["operator"] and rewards["epochs"] == []

    # Each lists the other two within 10 s of all three running.
    for join, me in zip(joins, ids, strict=True):
        others = set(ids) - {me}
        join.wait(lambda s, o=others: alive_peers(s) >= o, 10, f"{join.home.name} to list {sorted(others)}")
    # ... and so does the CLI.
    out = subprocess.run(
        [sys.executable, "-m", "zoo_node", "status", "--home", str(homes[0]), "--json"],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert alive_peers(json.loads(out.stdout)) == {ids[1], ids[2]}

    # A receipt acknowledged by c's supervisor...
    c = joins[2]
    c_status = c.wait(lambda s: s["worker"]["health"] == "serving", 60, "c's worker serving")
    link = SupervisorLink(str(homes[2] / "run" / "worker.sock"), c_status["worker"]["incarnation"])
    receipt = worker_pb2.Receipt(
        run_id=run_id, shard="stage/0", round=1, members=[worker_pb2.ReceiptMember(peer_id="d", samples=1)]
    )
    receipt_id, _ = link.submit_receipt(receipt)
    link.close()
    c_worker = c_status["worker"]["pid"]

    # ... then kill -9 of c: the others mark it gone within the timeout.
    c.kill9()
    for join in joins[:2]:
        join.wait(lambda s: ids[2] not in alive_peers(s), PEER_TIMEOUT_S + 5, f"{join.home.name} to mark c gone")
        gone_entry = [p for p in join.status()["peers"] if p["peer_id"] == ids[2]]
        assert gone_entry and not gone_entry[0]["alive"]
    # Its worker noticed its supervisor was gone and exited by itself.
    deadline = time.monotonic() + 30
    while not gone(c_worker):
        assert time.monotonic() < deadline, "the orphaned worker did not exit"
        time.sleep(0.2)

    # Restarted, c is back, with its journal intact.
    restarted = JoinProcess(homes[2], "--worker-mode", "lifecycle", "--password-file", str(homes[2] / "password"))
    joins.append(restarted.start())
    status = restarted.wait_running()
    assert status["journal"]["receipts"] == 1 and receipt_id == 1
    assert status["node"]["peer_id"] == ids[2]
    for join in joins[:2]:
        join.wait(lambda s: ids[2] in alive_peers(s), 30, f"{join.home.name} to see c back")

    # SIGTERM: drain and exit 0, worker gone.
    workers = [join.status()["worker"]["pid"] for join in (joins[0], joins[1], restarted)]
    for join in (joins[0], joins[1], restarted):
        assert join.terminate() == 0, join.log()[-2000:]
    assert all(gone(pid) for pid in workers if pid)
    assert "Joining the run's gossip and starting the worker: done" in joins[0].log()


def test_a_killed_worker_leaves_no_orphans_and_the_daemon_speaks_systemd(make_home, devchain, joins) -> None:  # noqa: F811
    create_run(devchain)
    home = chain_home(make_home, "p", devchain)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(home / "notify"))
    notify.settimeout(0.5)
    received: list[dict[str, str]] = []

    def read_notifications() -> None:  # as systemd does: read everything, promptly
        while notify.fileno() != -1:
            try:
                datagram = notify.recv(4096)
            except (TimeoutError, OSError):
                continue
            received.append(dict(line.split("=", 1) for line in datagram.decode().splitlines()))

    threading.Thread(target=read_notifications, daemon=True).start()

    def next_notification(key: str, timeout_s: float = 60) -> dict[str, str]:
        """The first notification with `key` not consumed yet (consumes everything up to it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            while received:
                fields = received.pop(0)
                if key in fields:
                    return fields
            time.sleep(0.05)
        raise AssertionError(f"no {key} notification within {timeout_s:.0f} s")

    env = {"NOTIFY_SOCKET": str(home / "notify")}
    join = JoinProcess(home, "--register", "--stake", "1", "--password-file", str(home / "password"), env=env).start()
    joins.append(join)
    join.wait_running()
    assert next_notification("READY")["STATUS"].startswith("running: run 1")

    def p2pd_up(status: dict) -> bool:
        worker = status["worker"]
        return worker["health"] == "serving" and bool(worker["resources"]["child_pids"])

    first = join.wait(p2pd_up, 120, "the worker's p2pd")["worker"]
    p2pd_pids = first["resources"]["child_pids"]
    sockets = first["resources"]["socket_paths"]
    assert sockets and all(os.path.exists(path) for path in sockets)
    assert all(not gone(pid) for pid in p2pd_pids)

    os.kill(first["pid"], signal.SIGKILL)
    second = join.wait(lambda s: s["worker"]["incarnation"] == 2 and p2pd_up(s), 120, "the restarted worker")["worker"]
    assert second["restarts"] == 1 and second["last_exit_code"] == -signal.SIGKILL
    assert all(gone(pid) for pid in p2pd_pids), "an orphaned p2pd survived its worker"
    assert not any(os.path.exists(path) for path in sockets), "a socket of the dead worker was left behind"
    temp_dir = WorkerSpec(home=home, socket_path=home / "run" / "worker.sock").temp_dir
    assert temp_dir.is_dir() and not any(temp_dir.iterdir())  # wiped after the dead worker
    # The data-plane PeerID stays the node's (same key, new p2pd).
    assert second["resources"]["data_multiaddrs"][0].endswith(first["resources"]["data_multiaddrs"][0].split("/")[-1])

    # SIGHUP re-reads config.toml and applies what it can.
    layer = read_config_file(home / "config.toml")
    layer["swarm"] = {**layer["swarm"], "peer_timeout_s": 12.5}
    write_config(home / "config.toml", layer)
    join.proc.send_signal(signal.SIGHUP)
    assert next_notification("RELOADING")["RELOADING"] == "1"
    assert next_notification("READY")["READY"] == "1"
    assert "config reloaded: swarm.peer_timeout_s" in join.log()

    assert join.terminate() == 0
    assert next_notification("STOPPING")["STOPPING"] == "1"
    notify.close()
    assert gone(second["pid"]) and all(gone(pid) for pid in second["resources"]["child_pids"])
    assert not any(os.path.exists(path) for path in second["resources"]["socket_paths"])
