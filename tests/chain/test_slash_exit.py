"""Exit, unbonding and withdrawal; slashing only by the coordinator of a run the node joined."""

from __future__ import annotations

import pytest

from zoo_node.chain.errors import ContractRevert
from zoo_node.chain.node_registry import Hardware, NodeStatus

MIN = 10**18
EVIDENCE = b"\x11" * 32


@pytest.fixture
def node(devchain):
    """A registered node (owner accounts[1], operator accounts[2], stake 3 coins) and a run (coordinator acc. 4)."""
    owner, operator, coordinator = devchain.accounts[1], devchain.accounts[2], devchain.accounts[4]
    node_id, _ = devchain.client(owner).nodes.register(
        operator=operator.address, peer_id="12D3KooWSlash", hardware=Hardware("cpu", 0, 0), metadata_uri="",
        stake=3 * MIN,
    )  # fmt: skip
    run_id, _ = devchain.client(devchain.accounts[3]).runs.create_run(
        spec_hash=b"\x01" * 32, coordinator=coordinator.address, epoch_length_s=60, reward_per_epoch=MIN,
        funding=10 * MIN,
    )  # fmt: skip
    return node_id, run_id


def test_heartbeat_only_from_the_operator(devchain, node):
    node_id, _ = node
    operator = devchain.client(devchain.accounts[2])
    before = operator.nodes.get_node(node_id).last_heartbeat
    devchain.increase_time(5)
    operator.nodes.heartbeat(node_id)
    assert operator.nodes.get_node(node_id).last_heartbeat >= before + 5
    with pytest.raises(ContractRevert, match="NotNodeOperator"):
        devchain.client(devchain.accounts[1]).nodes.heartbeat(node_id)


def test_withdraw_only_after_the_unbonding_period(devchain, node):
    node_id, _ = node
    owner = devchain.client(devchain.accounts[1])
    with pytest.raises(ContractRevert, match="NotExiting"):
        owner.nodes.withdraw(node_id)
    owner.nodes.request_exit(node_id)
    info = owner.nodes.get_node(node_id)
    assert info.status is NodeStatus.EXITING and not owner.nodes.is_active(node_id)
    assert owner.nodes.active_nodes() == []
    with pytest.raises(ContractRevert) as err:
        owner.nodes.withdraw(node_id)
    assert err.value.error == "StillUnbonding" and err.value.args_["unbondingEndsAt"] == info.unbonding_ends_at
    devchain.increase_time(devchain.deployment.unbonding_period_s)
    with pytest.raises(ContractRevert, match="NotNodeOwner"):
        devchain.client(devchain.accounts[2]).nodes.withdraw(node_id)  # the operator cannot take the stake
    balance = owner.balance(owner.account.address)
    receipt = owner.nodes.withdraw(node_id)
    cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert owner.balance(owner.account.address) == balance + 3 * MIN - cost
    assert owner.nodes.get_node(node_id).status is NodeStatus.WITHDRAWN
    with pytest.raises(ContractRevert, match="NotExiting"):
        owner.nodes.withdraw(node_id)


def test_only_the_coordinator_of_a_joined_run_can_slash(devchain, node):
    node_id, run_id = node
    coordinator = devchain.client(devchain.accounts[4])
    with pytest.raises(ContractRevert, match="NotInRun"):
        coordinator.nodes.slash(node_id, run_id, MIN, EVIDENCE)
    devchain.client(devchain.accounts[2]).nodes.join_run(node_id, run_id)
    for stranger in (devchain.accounts[1], devchain.accounts[2], devchain.accounts[3]):
        with pytest.raises(ContractRevert) as err:
            devchain.client(stranger).nodes.slash(node_id, run_id, MIN, EVIDENCE)
        assert err.value.error == "NotCoordinator" and err.value.args_["caller"] == stranger.address
    coordinator.nodes.slash(node_id, run_id, MIN, EVIDENCE)
    assert coordinator.nodes.get_node(node_id).stake == 2 * MIN
    assert coordinator.nodes.slashed_balance() == MIN
    with pytest.raises(ContractRevert, match="EvidenceUsed"):
        coordinator.nodes.slash(node_id, run_id, MIN, EVIDENCE)
    with pytest.raises(ContractRevert, match="SlashTooLarge"):
        coordinator.nodes.slash(node_id, run_id, 3 * MIN, b"\x22" * 32)
    (event,) = coordinator.nodes.events("Slashed", devchain.deployment.block, argument_filters={"nodeId": node_id})
    assert event["evidenceHash"] == EVIDENCE and event["coordinator"] == devchain.accounts[4].address
    # Slashed below the minimum stake: no longer active.
    coordinator.nodes.slash(node_id, run_id, 2 * MIN - 1, b"\x33" * 32)
    assert not coordinator.nodes.is_active(node_id)


def test_an_exiting_node_can_still_be_slashed(devchain, node):
    node_id, run_id = node
    devchain.client(devchain.accounts[2]).nodes.join_run(node_id, run_id)
    devchain.client(devchain.accounts[1]).nodes.request_exit(node_id)
    devchain.client(devchain.accounts[4]).nodes.slash(node_id, run_id, MIN, EVIDENCE)
    assert devchain.client().nodes.get_node(node_id).stake == 2 * MIN
