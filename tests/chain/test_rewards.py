"""RewardsDistributor: cumulative roots, claims paying exactly the delta, and a 1,000-leaf tree on chain."""

from __future__ import annotations

import pytest
import requests
from eth_utils import keccak
from web3 import Web3

from zoo_node.chain.errors import ContractRevert
from zoo_node.chain.merkle import RewardTree
from zoo_node.chain.revert import decode_revert

MIN = 10**18
EPOCH_S = 60


@pytest.fixture
def run(devchain):
    """Run 1: coordinator accounts[2], 1 coin per 60 s epoch, funded with 10 coins."""
    run_id, _ = devchain.client(devchain.accounts[1]).runs.create_run(
        spec_hash=b"\x01" * 32, coordinator=devchain.accounts[2].address, epoch_length_s=EPOCH_S,
        reward_per_epoch=MIN, funding=10 * MIN,
    )  # fmt: skip
    return run_id


def _post(devchain, run_id, epoch, tree, coordinator=2):
    devchain.increase_time(EPOCH_S)
    return devchain.client(devchain.accounts[coordinator]).rewards.post_root(
        run_id, epoch, tree.root, tree.total, f"file:///claims/{epoch}.json"
    )


def test_claim_pays_the_delta_once(devchain, run):
    alice, bob, relayer = devchain.accounts[5], devchain.accounts[6], devchain.client(devchain.accounts[7])
    tree1 = RewardTree.build({alice.address: MIN // 4, bob.address: MIN // 2})
    _post(devchain, run, 1, tree1)
    before = relayer.balance(alice.address)
    paid, _ = relayer.rewards.claim(run, alice.address, MIN // 4, tree1.proof(alice.address))  # a relayer pays gas
    assert paid == MIN // 4 and relayer.balance(alice.address) == before + MIN // 4
    with pytest.raises(ContractRevert) as err:
        relayer.rewards.claim(run, alice.address, MIN // 4, tree1.proof(alice.address))
    assert err.value.error == "NothingToClaim"
    assert relayer.balance(alice.address) == before + MIN // 4  # the second claim paid nothing

    tree2 = RewardTree.build({alice.address: MIN // 4 + MIN // 2, bob.address: MIN})
    _post(devchain, run, 2, tree2)
    paid, _ = relayer.rewards.claim(run, alice.address, tree2.amount(alice.address), tree2.proof(alice.address))
    assert paid == MIN // 2  # only the difference to what alice already took
    assert relayer.rewards.claimed(run, alice.address) == MIN // 4 + MIN // 2
    paid, _ = relayer.rewards.claim(run, bob.address, MIN, tree2.proof(bob.address))  # skipped epoch 1: gets both
    assert paid == MIN
    pool = relayer.rewards.pool(run)
    assert pool.epoch == 2 and pool.allocated == tree2.total and pool.balance == 10 * MIN - tree2.total
    posted = relayer.rewards.latest_root(run)
    assert posted.epoch == 2 and posted.root == tree2.root and posted.proofs_uri == "file:///claims/2.json"


def test_wrong_amount_or_proof_reverts(devchain, run):
    alice, bob = devchain.accounts[5], devchain.accounts[6]
    tree = RewardTree.build({alice.address: MIN // 4, bob.address: MIN // 2})
    _post(devchain, run, 1, tree)
    client = devchain.client(alice)
    with pytest.raises(ContractRevert, match="InvalidProof"):
        client.rewards.claim(run, alice.address, MIN // 2, tree.proof(alice.address))  # bob's amount
    with pytest.raises(ContractRevert, match="InvalidProof"):
        client.rewards.claim(run, alice.address, MIN // 4, tree.proof(bob.address))
    with pytest.raises(ContractRevert, match="InvalidProof"):
        client.rewards.claim(run, bob.address, MIN // 4, tree.proof(alice.address))
    assert client.rewards.claimed(run, alice.address) == 0


def test_only_the_coordinator_posts_roots_and_within_the_schedule(devchain, run):
    tree = RewardTree.build({devchain.accounts[5].address: MIN // 2})
    coordinator = devchain.client(devchain.accounts[2])
    with pytest.raises(ContractRevert, match="EpochNotEnded"):
        coordinator.rewards.post_root(run, 1, tree.root, tree.total)
    devchain.increase_time(EPOCH_S)
    for stranger in (1, 5):
        with pytest.raises(ContractRevert, match="NotCoordinator"):
            devchain.client(devchain.accounts[stranger]).rewards.post_root(run, 1, tree.root, tree.total)
    big = RewardTree.build({devchain.accounts[5].address: MIN + 1})
    with pytest.raises(ContractRevert, match="AllocationExceedsSchedule"):
        coordinator.rewards.post_root(run, 1, big.root, big.total)
    coordinator.rewards.post_root(run, 1, tree.root, tree.total)
    with pytest.raises(ContractRevert, match="EpochNotIncreasing"):
        coordinator.rewards.post_root(run, 1, tree.root, tree.total)
    devchain.increase_time(EPOCH_S)
    with pytest.raises(ContractRevert, match="AllocationDecreased"):
        coordinator.rewards.post_root(run, 2, tree.root, tree.total - 1)
    coordinator.runs.pause_run(run)
    with pytest.raises(ContractRevert, match="RunNotActive"):
        coordinator.rewards.post_root(run, 2, tree.root, tree.total)


def test_a_root_can_not_promise_more_than_the_pool(devchain):
    run_id, _ = devchain.client(devchain.accounts[1]).runs.create_run(
        spec_hash=b"\x01" * 32, coordinator=devchain.accounts[2].address, epoch_length_s=EPOCH_S,
        reward_per_epoch=5 * MIN, funding=MIN,
    )  # fmt: skip
    tree = RewardTree.build({devchain.accounts[5].address: 2 * MIN})
    devchain.increase_time(EPOCH_S)
    with pytest.raises(ContractRevert, match="AllocationExceedsFunds"):
        devchain.client(devchain.accounts[2]).rewards.post_root(run_id, 1, tree.root, tree.total)


def test_close_then_creator_reclaims_only_the_unallocated(devchain, run):
    tree = RewardTree.build({devchain.accounts[5].address: MIN})
    _post(devchain, run, 1, tree)
    coordinator, creator = devchain.client(devchain.accounts[2]), devchain.client(devchain.accounts[1])
    with pytest.raises(ContractRevert, match="RunNotClosed"):
        creator.rewards.reclaim(run)
    coordinator.runs.close_run(run)
    with pytest.raises(ContractRevert, match="NotRunCreator"):
        coordinator.rewards.reclaim(run)
    creator.rewards.reclaim(run)
    assert creator.rewards.pool(run).balance == MIN  # what the root promised stays claimable
    paid, _ = creator.rewards.claim(run, devchain.accounts[5].address, MIN, tree.proof(devchain.accounts[5].address))
    assert paid == MIN


def test_every_proof_of_a_1000_leaf_tree_verifies_on_chain(devchain, run):
    leaves = {"0x" + keccak(text=f"operator {i}")[-20:].hex(): 10**12 + i for i in range(1000)}
    tree = RewardTree.build(leaves)
    _post(devchain, run, 1, tree)
    distributor = devchain.client().rewards.contract

    def eth_call(i: int, account: str, amount: int, proof: list[bytes]) -> dict:
        data = distributor.encode_abi("claim", [run, Web3.to_checksum_address(account), amount, proof])
        return {"jsonrpc": "2.0", "id": i, "method": "eth_call", "params": [{"to": distributor.address, "data": data}]}

    # One JSON-RPC batch of 1,000 eth_calls of claim: a call that returns means the proof verified on chain (and the
    # payment would go through); one that reverts carries the error's selector.
    batch = [eth_call(i, a, tree.amount(a), tree.proof(a)) for i, a in enumerate(tree.amounts)]
    account = next(iter(tree.amounts))
    batch.append(eth_call(len(batch), account, tree.amount(account) + 1, tree.proof(account)))
    answers = sorted(requests.post(devchain.rpc_url, json=batch, timeout=60).json(), key=lambda r: r["id"])
    assert len(answers) == 1001
    failed = [a for a in answers[:1000] if "error" in a]
    assert failed == [], f"{len(failed)} proofs were rejected on chain, e.g. {failed[0]}"
    assert decode_revert(answers[1000]["error"]["data"]).error == "InvalidProof"
