"""Typed client of the NodeRegistry: register, heartbeat, exit, withdraw, slash, and look nodes up."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak
from web3.types import TxReceipt

from zoo_node.chain.contract import ContractClient
from zoo_node.chain.errors import ContractRevert
from zoo_node.chain.metadata import decode_metadata_uri

PAGE = 200


class NodeStatus(enum.IntEnum):
    NONE = 0
    ACTIVE = 1
    EXITING = 2
    WITHDRAWN = 3


@dataclass(frozen=True)
class Hardware:
    """The hardware summary a node registers: GPU model, count and memory per GPU (MiB); a CPU node says "cpu", 0."""

    gpu_model: str
    gpu_count: int
    gpu_memory_mib: int

    def as_tuple(self) -> tuple[str, int, int]:
        return (self.gpu_model, self.gpu_count, self.gpu_memory_mib)


@dataclass(frozen=True)
class NodeInfo:
    node_id: bytes
    owner: str
    operator: str
    status: NodeStatus
    registered_at: int
    last_heartbeat: int
    unbonding_ends_at: int
    stake: int
    peer_id: str
    metadata_uri: str
    hardware: Hardware

    @property
    def multiaddrs(self) -> list[str]:
        """The multiaddrs published in the metadata URI (`ChainError` if it is not in our format)."""
        return decode_metadata_uri(self.metadata_uri)

    def as_dict(self) -> dict[str, Any]:
        return {
            "node_id": "0x" + self.node_id.hex(),
            "owner": self.owner,
            "operator": self.operator,
            "status": self.status.name.lower(),
            "registered_at": self.registered_at,
            "last_heartbeat": self.last_heartbeat,
            "unbonding_ends_at": self.unbonding_ends_at,
            "stake_wei": str(self.stake),
            "peer_id": self.peer_id,
            "metadata_uri": self.metadata_uri,
            "hardware": {
                "gpu_model": self.hardware.gpu_model,
                "gpu_count": self.hardware.gpu_count,
                "gpu_memory_mib": self.hardware.gpu_memory_mib,
            },
        }

    @classmethod
    def from_tuple(cls, node_id: bytes, raw: Any) -> NodeInfo:
        owner, operator, status, registered, heartbeat, unbonding, stake, peer_id, uri, hw = raw
        return cls(
            node_id=bytes(node_id),
            owner=owner,
            operator=operator,
            status=NodeStatus(status),
            registered_at=registered,
            last_heartbeat=heartbeat,
            unbonding_ends_at=unbonding,
            stake=stake,
            peer_id=peer_id,
            metadata_uri=uri,
            hardware=Hardware(*hw),
        )


def node_id_of(peer_id: str) -> bytes:
    """The NodeRegistry's key of a control-plane PeerID: keccak256 of its text."""
    return keccak(text=peer_id)


class NodeRegistryClient(ContractClient):
    contract_name = "NodeRegistry"

    # ---- reads
    def min_stake(self) -> int:
        return self._read("minStake")

    def unbonding_period(self) -> int:
        return self._read("unbondingPeriod")

    def get_node(self, node: bytes | str) -> NodeInfo | None:
        """The node with this id or control-plane PeerID, or None if it never registered."""
        node_id = node_id_of(node) if isinstance(node, str) else node
        try:
            return NodeInfo.from_tuple(node_id, self._read("getNode", node_id))
        except ContractRevert as exc:
            if exc.error == "UnknownNode":
                return None
            raise

    def node_of_operator(self, operator: str) -> NodeInfo | None:
        node_id = self._read("nodeOfOperator", operator)
        return None if node_id == b"\0" * 32 else self.get_node(node_id)

    def is_active(self, node: bytes | str) -> bool:
        return self._read("isActive", node_id_of(node) if isinstance(node, str) else node)

    def joined_run(self, node: bytes | str, run_id: int) -> bool:
        return self._read("joinedRun", node_id_of(node) if isinstance(node, str) else node, run_id)

    def active_node_ids(self) -> list[bytes]:
        ids: list[bytes] = []
        while True:
            page = self._read("activeNodeIds", len(ids), PAGE)
            ids.extend(bytes(i) for i in page)
            if len(page) < PAGE:
                return ids

    def active_nodes(self) -> list[NodeInfo]:
        """Every active node (status Active, stake at least minStake)."""
        ids = self.active_node_ids()
        nodes = []
        for start in range(0, len(ids), PAGE):
            chunk = ids[start : start + PAGE]
            nodes.extend(
                NodeInfo.from_tuple(i, raw) for i, raw in zip(chunk, self._read("getNodes", chunk), strict=True)
            )
        return nodes

    def slashed_balance(self) -> int:
        return self._read("slashedBalance")

    # ---- transactions
    def register(
        self, *, operator: str, peer_id: str, hardware: Hardware, metadata_uri: str, stake: int
    ) -> tuple[bytes, TxReceipt]:
        """Register a node owned by the sending account, staking `stake` wei; returns (node id, receipt)."""
        receipt = self._send("register", operator, peer_id, hardware.as_tuple(), metadata_uri, value=stake)
        return node_id_of(peer_id), receipt

    def update_metadata(self, node_id: bytes, metadata_uri: str) -> TxReceipt:
        return self._send("updateMetadata", node_id, metadata_uri)

    def heartbeat(self, node_id: bytes) -> TxReceipt:
        return self._send("heartbeat", node_id)

    def join_run(self, node_id: bytes, run_id: int) -> TxReceipt:
        return self._send("joinRun", node_id, run_id)

    def request_exit(self, node_id: bytes) -> TxReceipt:
        return self._send("requestExit", node_id)

    def withdraw(self, node_id: bytes) -> TxReceipt:
        return self._send("withdraw", node_id)

    def slash(self, node_id: bytes, run_id: int, amount: int, evidence_hash: bytes) -> TxReceipt:
        return self._send("slash", node_id, run_id, amount, evidence_hash)

    def sweep_slashed(self, to: str) -> TxReceipt:
        return self._send("sweepSlashed", to)
