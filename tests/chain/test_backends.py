"""One error type and one client API whether the chain is anvil or in-process py-evm."""

from __future__ import annotations

import pytest

from zoo_node.chain.errors import ContractRevert
from zoo_node.chain.merkle import RewardTree
from zoo_node.chain.node_registry import Hardware

COIN = 10**18


@pytest.fixture(params=["anvil", "py-evm"])
def chain(request):
    return request.getfixturevalue("devchain" if request.param == "anvil" else "evm_chain")


def test_reverts_are_one_error_type_with_the_decoded_reason(chain):
    client = chain.client(chain.accounts[1])
    with pytest.raises(ContractRevert) as err:
        client.nodes.register(
            operator=chain.accounts[2].address, peer_id="12D3KooWX", hardware=Hardware("cpu", 0, 0),
            metadata_uri="", stake=COIN - 1,
        )  # fmt: skip
    assert err.value.error == "StakeTooLow"
    assert err.value.args_ == {"sent": COIN - 1, "minimum": COIN}
    assert str(err.value) == f"StakeTooLow(sent={COIN - 1}, minimum={COIN})"
    # A revert inside a nested call (the distributor asks the RunRegistry) arrives with the inner error.
    with pytest.raises(ContractRevert) as err:
        client.rewards.post_root(7, 1, b"\x01" * 32, 0)
    assert err.value.error == "UnknownRun" and err.value.args_ == {"runId": 7}


def test_a_full_reward_cycle(chain):
    creator, coordinator, owner = (chain.client(chain.accounts[i]) for i in (1, 2, 3))
    run_id, _ = creator.runs.create_run(
        spec_hash=b"\x05" * 32, coordinator=chain.accounts[2].address, epoch_length_s=10, reward_per_epoch=COIN,
        funding=2 * COIN,
    )  # fmt: skip
    tree = RewardTree.build({chain.accounts[3].address: COIN // 3, chain.accounts[4].address: COIN // 3})
    chain.increase_time(10)
    coordinator.rewards.post_root(run_id, 1, tree.root, tree.total, "file:///tmp/claims.json")
    before = owner.balance(chain.accounts[3].address)
    account = chain.accounts[3].address
    paid, receipt = owner.rewards.claim(run_id, account, COIN // 3, tree.proof(account))
    assert paid == COIN // 3
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert owner.balance(chain.accounts[3].address) == before + paid - fee
    assert owner.rewards.latest_root(run_id).proofs_uri == "file:///tmp/claims.json"
