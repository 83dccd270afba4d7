"""Rebalancing over real worker processes: a worker whose shard becomes the best covered moves, on its own, to the
least covered one, loads that shard's state from the replica there, and stops announcing the old one."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures.polling import wait_until
from tests.worker.conftest import small_spec
from zoo_node.config import load_config
from zoo_node.worker.node import WorkerNode, WorkerOptions
from zoo_node.worker.records import read_servers
from zoo_node.worker.shards import shard_names

pytestmark = pytest.mark.slow


def test_a_worker_on_the_best_covered_shard_moves_to_the_least_covered_and_loads_its_state(swarm_factory, make_home):
    spec = small_spec("rebalance", max_steps=4, routing={"rebalance_period_s": 1.0}, data={"micro_batches_per_step": 1})
    everything = shard_names(spec)
    swarm = swarm_factory(spec)
    # One worker serves every shard and trains a few steps alone: every shard has one replica, past round 0.
    anchor = swarm.start("anchor", everything)
    anchor.wait_started()
    wait_until(lambda: (anchor.status(spec.name).get("driver") or {}).get("finished"), 240, "the anchor's 4 steps")
    wait_until(
        lambda: all(info["round"] >= 1 for info in anchor.status(spec.name)["shards"].values()),
        60,
        "a round on each of the anchor's shards",
    )

    # The mover chooses one shard (least covered: all tie on replicas) and takes its state from the anchor.
    mover = swarm.start("mover", None, peers=[anchor.maddr], num_shards=1, drive=False)
    (first,) = mover.wait_started()["shards"]
    # A third worker is pinned to that shard: three replicas there, one everywhere else. The mover moves.
    extra = swarm.start("extra", [first], peers=[anchor.maddr], drive=False)
    extra.wait_started()
    moved = wait_until(
        lambda: (shards := mover.status(spec.name).get("shards", {})) and first not in shards and shards,
        60,
        f"the mover to leave {first}",
    )
    ((target, info),) = moved.items()
    assert target in everything and target != first
    assert info["state_loads"] >= 1 and info["round"] == anchor.status(spec.name)["shards"][target]["round"]

    home, _ = make_home("client")
    client = WorkerNode(
        home, load_config(home), spec, WorkerOptions(initial_peers=[anchor.maddr], shards=[], drive=False)
    )
    client.start()
    try:
        # Its records follow it: announced on the new shard, withdrawn from the old one.
        wait_until(
            lambda: (
                mover.peer in {r.peer for r in read_servers(client.dht, spec.name, target)}
                and mover.peer not in {r.peer for r in read_servers(client.dht, spec.name, first)}
            ),
            30,
            "the mover's records to follow it",
        )
        # It serves the anchor's parameters of that shard, exactly.
        mine, theirs = client.inspect(mover.peer, target), client.inspect(anchor.peer, target)
        assert set(mine) == set(theirs)
        for name, (param, _) in mine.items():
            assert torch.equal(param, theirs[name][0]), f"{target} {name}"
    finally:
        client.drain()
