"""Gas goals of the issue that are properties of the contracts (deterministic, so tests, not benchmarks)."""

from __future__ import annotations

from eth_utils import keccak

from zoo_node.chain.gas import execution_gas
from zoo_node.chain.merkle import RewardTree

COIN = 10**18


def _tree(n: int, real: list[str]) -> RewardTree:
    leaves = {"0x" + keccak(text=f"operator {i}")[-20:].hex(): 10**12 + i for i in range(n - len(real))}
    leaves.update({a: 10**15 for a in real})
    return RewardTree.build(leaves)


def test_posting_a_root_costs_the_same_for_10_and_10000_operators_and_a_claim_under_80k(devchain):
    owners = [a.address for a in devchain.accounts[5:8]]
    creator, coordinator = devchain.client(devchain.accounts[1]), devchain.client(devchain.accounts[2])
    runs = [
        creator.runs.create_run(
            spec_hash=bytes([i + 1]) * 32, coordinator=devchain.accounts[2].address, epoch_length_s=60,
            reward_per_epoch=10 * COIN, funding=20 * COIN,
        )[0]
        for i in range(2)
    ]  # fmt: skip
    trees = [_tree(10, owners), _tree(10_000, owners)]
    devchain.increase_time(60)
    gas = []
    for run_id, tree in zip(runs, trees, strict=True):
        receipt = coordinator.rewards.post_root(run_id, 1, tree.root, tree.total, f"file:///claims/{run_id}.json")
        gas.append(execution_gas(receipt, coordinator.w3.eth.get_transaction(receipt["transactionHash"])))
    assert gas[0] == gas[1], f"postRoot execution gas depends on the tree: {gas}"

    tree, run_id = trees[1], runs[1]
    client = devchain.client(devchain.accounts[5])
    client.rewards.claim(run_id, owners[0], 10**15, tree.proof(owners[0]))  # the run's first claim
    deepest = max(owners[1:], key=lambda a: len(tree.proof(a)))
    assert len(tree.proof(deepest)) == 14
    paid, receipt = client.rewards.claim(run_id, deepest, 10**15, tree.proof(deepest))
    assert paid == 10**15
    assert receipt["gasUsed"] < 80_000, f"a claim with a 14-step proof used {receipt['gasUsed']} gas"
