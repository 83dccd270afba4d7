"""Acceptance: a dev chain, `zoo-node coordinator run` and three real `zoo-node join` nodes on loopback.

The nodes register and join the run on chain by themselves; the coordinator finds them through the NodeRegistry
(it dials the multiaddrs they publish) and lists all three, each with the shard its own `zoo-node status` reports,
within 15 s of the last one being up. A node killed with SIGKILL shows as gone.

The nodes run `--worker-mode lifecycle` (a worker that registers and reports but does not train): the data plane's
training is not plugged into `join` yet, so these nodes hold no shard and report no loss; the coordinator's view of
shards, throughput and receipts from gossip is covered with control-plane peers in test_swarm_view and
test_settlement_restart.
"""

from __future__ import annotations

import time

import pytest

from tests.control.joins import JoinProcess, chain_home
from tests.fixtures.polling import wait_until
from zoo_node.config import CONFIG_FILE, read_config_file, write_config


@pytest.fixture
def joins():
    started: list[JoinProcess] = []
    yield started
    for join in started:
        join.reap()  # SIGTERM, and SIGKILL for whatever its workers left


def _fast_heartbeats(home) -> None:
    path = home / CONFIG_FILE
    layer = read_config_file(path)
    layer["swarm"] = {**layer.get("swarm", {}), "heartbeat_interval_s": 0.5}
    write_config(path, layer)


def test_three_joined_nodes_are_listed_within_15_s_and_a_killed_one_shows_gone(
    devchain, coordinator_factory, make_home, joins
) -> None:
    coordinator = coordinator_factory(devchain).start()
    with coordinator.client() as client:
        run_id = client.get_run().run_id
    for i in range(3):
        home = chain_home(make_home, f"node{i}", devchain)
        _fast_heartbeats(home)
        join = JoinProcess(home, "--run", str(run_id), "--register", "--stake", "1", "--password-file",
                           str(home / "password"), "--worker-mode", "lifecycle")  # fmt: skip
        joins.append(join.start())
    statuses = [join.wait_running(timeout_s=120) for join in joins]
    up_at = time.monotonic()
    expected = {s["node"]["peer_id"]: s["worker"]["shard"] for s in statuses}

    with coordinator.client() as client:

        def listed() -> bool:
            return {n.peer_id: n.shard for n in client.list_nodes().nodes if n.alive} == expected

        wait_until(listed, 15.0 - (time.monotonic() - up_at), "ListNodes to show the 3 joined nodes")
        views = {n.peer_id: n for n in client.list_nodes().nodes}
        for status in statuses:
            view = views[status["node"]["peer_id"]]
            assert view.operator == status["node"]["operator"]
            assert view.data_peer_id == status["node"]["data_peer_id"]  # from the signed worker binding

        victim = statuses[1]["node"]["peer_id"]
        joins[1].kill9()
        wait_until(
            lambda: not {n.peer_id: n for n in client.list_nodes().nodes}[victim].alive, 20, "the killed node gone"
        )
        run = client.get_run()
        assert (run.nodes_alive, run.nodes_gone) == (2, 1)
