"""Epochs are settled once and no receipt is lost, across kill -9 of the coordinator.

The daemon test kills a real `zoo-node coordinator run` with SIGKILL between epochs and restarts it; the keeper tests
stop a settlement at each step where a crash could leave half a settlement behind (after the intent, after the
root's transaction, after the ledger's commit) and start over from the files, as a restarted process would. The
chain is a real anvil; the receipts are co-signed with the nodes' real data-plane keys.
"""

from __future__ import annotations

import pytest
from web3 import Web3

from tests.coordinator.harness import EPOCH_S, PeerProcess, SimNode, cosigned
from tests.fixtures.polling import wait_until
from zoo_node.coordinator.epochs import EpochKeeper
from zoo_node.coordinator.gossip_in import heard_receipt
from zoo_node.coordinator.ledger import SettlementLedger
from zoo_node.coordinator.store import CoordinatorStore

COIN = 10**18
REWARD = 3 * COIN  # the run file's reward_per_epoch


def root_posts(chain, run_id: int) -> list[int]:
    """The epochs of every RootPosted event of the run, in order (an epoch posted twice would show twice)."""
    events = chain.client().rewards.events("RootPosted", chain.deployment.block, argument_filters={"runId": run_id})
    return [int(e["epoch"]) for e in events]


def _settled(client) -> dict[int, int]:
    return {e.epoch: e.accepted for e in client.list_epochs().epochs}


def test_kill_9_and_restart_settle_every_epoch_once_and_lose_no_receipt(devchain, coordinator_factory, make_home,
                                                                       tmp_path):  # fmt: skip
    coordinator = coordinator_factory(devchain).start()
    with coordinator.client() as client:
        run_id = client.get_run().run_id
        addrs = list(client.get_run().coordinator_multiaddrs)
    nodes = [SimNode(*make_home(f"n{i}"), devchain, run_id) for i in range(3)]
    a, b, c = nodes
    peers = [PeerProcess(n.home, run_id, addrs, tmp_path / f"peer{i}.log") for i, n in enumerate(nodes)]
    try:
        for peer in peers:
            peer.wait_ready().set(shard="stage/0", throughput=10.0)
        with coordinator.client() as client:
            wait_until(lambda: client.list_nodes().alive == 3, 20, "3 nodes alive")

            # Epoch 1: one round, announced by each member.
            round1 = cosigned(run_id, "stage/0", 1, {a: 4, b: 6, c: 8})
            for peer, node in zip(peers, nodes, strict=True):
                peer.announce(round1[node])
            wait_until(lambda: client.get_run().receipts.heard == 3, 20, "3 receipts heard")
            devchain.increase_time(EPOCH_S)
            wait_until(lambda: _settled(client) == {1: 3}, 30, "epoch 1 settled with 3 receipts")

            # Epoch 2's receipts are heard (committed), then the coordinator dies without warning.
            round2 = cosigned(run_id, "stage/1", 1, {a: 2, b: 2, c: 2})
            for peer, node in zip(peers, nodes, strict=True):
                peer.announce(round2[node])
            wait_until(lambda: client.get_run().receipts.heard == 6, 20, "6 receipts heard")
        coordinator.kill9()
        devchain.increase_time(EPOCH_S)  # epoch 2 ends while nobody is settling

        coordinator.start()
        with coordinator.client() as client:
            # The restarted coordinator settles epoch 2 with the receipts heard before the kill ...
            wait_until(lambda: _settled(client) == {1: 3, 2: 3}, 30, "epoch 2 settled after the restart")
            # ... finds its nodes again (it dials the addresses their heartbeats announced) and hears new receipts.
            wait_until(lambda: client.list_nodes().alive == 3, 30, "3 nodes alive after the restart")
            round3 = cosigned(run_id, "stage/0", 2, {a: 1, b: 1, c: 1})
            for peer, node in zip(peers, nodes, strict=True):
                peer.announce(round3[node])
            wait_until(lambda: client.get_run().receipts.heard == 9, 20, "9 receipts heard")
            devchain.increase_time(EPOCH_S)
            wait_until(lambda: _settled(client) == {1: 3, 2: 3, 3: 3}, 30, "epoch 3 settled")
            run = client.get_run()
            epoch2 = client.get_epoch(2)
    finally:
        for peer in peers:
            peer.kill()
        coordinator.stop()

    assert root_posts(devchain, run_id) == [1, 2, 3]  # each epoch's root posted exactly once
    assert devchain.client().rewards.pool(run_id).allocated == 3 * REWARD
    assert (run.receipts.heard, run.receipts.pending, run.receipts.accepted, run.receipts.rejected) == (9, 0, 9, 0)
    # CPU nodes: 9 credited rounds of 10 s each; the series counted the receipts as they came
    assert (run.gpu_hours, run.cpu_hours) == (0.0, pytest.approx(9 * 10.0 / 3600))
    assert max(p.value for p in run.receipts_series) == 9 and max(p.value for p in run.tokens_series) == run.tokens
    assert {o.owner for o in epoch2.owners} == {a.owner, b.owner, c.owner}
    assert sum(int(o.amount_wei) for o in epoch2.owners) == REWARD
    store = CoordinatorStore(coordinator.home / "coordinator.sqlite3")
    try:
        assert store.epoch_of_receipts(run_id) == {1: 3, 2: 3, 3: 3}  # every receipt in exactly one epoch
        assert store.unfinished_intent(run_id) is None
    finally:
        store.close()


# ---- crashes inside one settlement ---------------------------------------------------------------------------
class Crash(Exception):
    """Stands for the process dying at this point (its in-memory state is dropped; the files remain)."""


class CrashingRewards:
    """The rewards client, dying just before or just after `postRoot` is sent."""

    def __init__(self, real, when: str) -> None:
        self.real = real
        self.when = when

    def pool(self, run_id: int):
        return self.real.pool(run_id)

    def post_root(self, *args, **kwargs):
        if self.when == "before_post":
            raise Crash("before postRoot")
        receipt = self.real.post_root(*args, **kwargs)
        raise Crash(f"after postRoot (tx {Web3.to_hex(receipt['transactionHash'])})")


FLOPS = {"stage/0": 1_000_000, "stage/1": 2_000_000}


@pytest.mark.parametrize("crash", ["before_post", "after_post", "after_commit"])
def test_a_settlement_interrupted_anywhere_finishes_once_after_a_restart(devchain, make_home, tmp_path, crash):
    operator = devchain.accounts[1]
    run_id, _ = devchain.client(operator).runs.create_run(
        spec_hash=b"\x07" * 32, coordinator=operator.address, epoch_length_s=EPOCH_S, reward_per_epoch=REWARD,
        funding=10 * REWARD,
    )  # fmt: skip
    nodes = [SimNode(*make_home(f"n{i}"), devchain, run_id) for i in range(3)]

    def open_keeper() -> EpochKeeper:
        """What a (re)started coordinator has: the files, a new chain connection, nothing in memory."""
        store = CoordinatorStore(tmp_path / "coordinator.sqlite3")
        ledger = SettlementLedger(tmp_path / "settlement.sqlite3")
        return EpochKeeper(devchain.client(operator), ledger, store, run_id=run_id, flops_per_sample=FLOPS,
                           min_nodes=2, claims_dir=tmp_path / "claims")  # fmt: skip

    def hear(keeper: EpochKeeper, rounds) -> None:
        for copies in rounds:
            for node, receipt in copies.items():
                heard = heard_receipt(receipt.to_proto())
                keeper.store.add_receipt(
                    run_id=run_id, announcer=node.peer_id, digest=heard.digest, shard=heard.shard, round=heard.round,
                    tokens=heard.tokens, flops=heard.flops, seconds=heard.seconds, device=heard.device,
                    receipt=heard.blob,
                )  # fmt: skip

    keeper = open_keeper()
    for node in nodes:
        keeper.store.add_binding(node.worker, node.peer_id, run_id)
    a, b, c = nodes
    hear(keeper, [cosigned(run_id, "stage/0", 1, {a: 3, b: 5, c: 7}), cosigned(run_id, "stage/1", 1, {a: 1, b: 1})])
    devchain.increase_time(EPOCH_S)
    if crash == "after_commit":
        real_finish = keeper.store.finish_intent

        def finish_then_die(*args, **kwargs):
            raise Crash("after the ledger's commit, before the receipts are marked")

        keeper.store.finish_intent = finish_then_die
    else:
        keeper.chain.rewards = CrashingRewards(keeper.chain.rewards, crash)
    with pytest.raises(Crash):
        keeper.settle_due()
    assert keeper.store.unfinished_intent(run_id)[0] == 1
    assert root_posts(devchain, run_id) == ([] if crash == "before_post" else [1])
    assert keeper.ledger.last_epoch(run_id) == (1 if crash == "after_commit" else 0)
    if crash == "after_commit":
        keeper.store.finish_intent = real_finish
    keeper.store.close()
    keeper.ledger.close()

    # A late receipt arrives after the crash: it must not slip into the interrupted epoch.
    restarted = open_keeper()
    hear(restarted, [cosigned(run_id, "stage/0", 2, {a: 2, b: 2})])
    (outcome,) = restarted.settle_due()
    assert outcome.epoch == 1 and outcome.recovered and outcome.receipts == 5 and outcome.accepted == 5
    assert outcome.posted == (crash == "before_post")  # posted now only if the crash came before the post
    assert root_posts(devchain, run_id) == [1]
    assert restarted.ledger.last_epoch(run_id) == 1
    assert restarted.store.unfinished_intent(run_id) is None
    assert restarted.settle_due() == []  # nothing left: no epoch settled twice

    devchain.increase_time(EPOCH_S)
    (second,) = restarted.settle_due()
    assert (second.epoch, second.receipts, second.accepted, second.recovered) == (2, 2, 2, False)
    assert root_posts(devchain, run_id) == [1, 2]
    assert restarted.store.epoch_of_receipts(run_id) == {1: 5, 2: 2}
    pool = devchain.client().rewards.pool(run_id)
    assert pool.epoch == 2 and pool.allocated == 2 * REWARD
