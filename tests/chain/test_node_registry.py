"""NodeRegistry on a real anvil: registration rules, heartbeats, exit and unbonding, slashing."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from zoo_node.chain.errors import ContractRevert
from zoo_node.chain.metadata import decode_metadata_uri, encode_metadata_uri
from zoo_node.chain.node_registry import Hardware, NodeStatus, node_id_of

MIN = 10**18
H100 = Hardware("NVIDIA H100 80GB HBM3", 8, 81559)


def _register(client, operator, peer_id="12D3KooWNodeA", stake=MIN, addrs=("/ip4/127.0.0.1/tcp/4001",)):
    return client.nodes.register(
        operator=operator, peer_id=peer_id, hardware=H100, metadata_uri=encode_metadata_uri(list(addrs)), stake=stake
    )


def test_register_records_the_node_and_lists_it_active(devchain):
    owner, operator = devchain.accounts[1], devchain.accounts[2]
    client = devchain.client(owner)
    node_id, _ = _register(client, operator.address)
    assert node_id == node_id_of("12D3KooWNodeA") == keccak(text="12D3KooWNodeA")
    node = client.nodes.get_node("12D3KooWNodeA")
    assert node.owner == owner.address and node.operator == operator.address
    assert node.status is NodeStatus.ACTIVE and node.stake == MIN
    assert node.hardware == H100
    assert node.multiaddrs == ["/ip4/127.0.0.1/tcp/4001"]
    assert [n.peer_id for n in client.nodes.active_nodes()] == ["12D3KooWNodeA"]
    assert client.nodes.node_of_operator(operator.address).node_id == node_id
    assert client.nodes.get_node("12D3KooWUnknown") is None
    (event,) = client.nodes.events("NodeRegistered", devchain.deployment.block)
    assert event["nodeId"] == node_id and event["owner"] == owner.address and event["stake"] == MIN


def test_too_little_stake_reverts_with_the_reason(devchain):
    client = devchain.client(devchain.accounts[1])
    with pytest.raises(ContractRevert) as err:
        _register(client, devchain.accounts[2].address, stake=MIN - 1)
    assert err.value.error == "StakeTooLow"
    assert err.value.args_ == {"sent": MIN - 1, "minimum": MIN}
    assert client.nodes.get_node("12D3KooWNodeA") is None


def test_registering_twice_or_someone_elses_node_reverts(devchain):
    owner, operator, other = devchain.accounts[1], devchain.accounts[2], devchain.accounts[3]
    _register(devchain.client(owner), operator.address)
    with pytest.raises(ContractRevert, match=r"AlreadyRegistered\(nodeId=0x"):
        _register(devchain.client(owner), operator.address)
    with pytest.raises(ContractRevert) as err:
        _register(devchain.client(other), other.address)
    assert err.value.error == "NodeOwnedByAnother" and err.value.args_["owner"] == owner.address
    with pytest.raises(ContractRevert, match="OperatorInUse"):
        _register(devchain.client(other), operator.address, peer_id="12D3KooWNodeB")


def test_metadata_uri_roundtrip():
    addrs = ["/ip4/10.0.0.1/tcp/31330", "/ip6/::1/tcp/31330"]
    assert decode_metadata_uri(encode_metadata_uri(addrs)) == addrs
    assert decode_metadata_uri("") == []
