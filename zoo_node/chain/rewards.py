"""Typed client of the RewardsDistributor: post cumulative roots, claim, read pools and posted roots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.types import TxReceipt

from zoo_node.chain.contract import ContractClient


@dataclass(frozen=True)
class PoolInfo:
    root: bytes
    epoch: int
    allocated: int
    balance: int
    unallocated: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": Web3.to_hex(self.root),
            "epoch": self.epoch,
            "allocated_wei": str(self.allocated),
            "balance_wei": str(self.balance),
            "unallocated_wei": str(self.unallocated),
        }


@dataclass(frozen=True)
class PostedRoot:
    run_id: int
    epoch: int
    root: bytes
    allocated: int
    proofs_uri: str
    block: int


class RewardsClient(ContractClient):
    contract_name = "RewardsDistributor"

    def pool(self, run_id: int) -> PoolInfo:
        root, epoch, allocated, balance, unallocated = self._read("getPool", run_id)
        return PoolInfo(bytes(root), epoch, allocated, balance, unallocated)

    def claimed(self, run_id: int, account: str) -> int:
        return self._read("claimed", run_id, Web3.to_checksum_address(account))

    def latest_root(self, run_id: int, from_block: int = 0) -> PostedRoot | None:
        """The `RootPosted` event of the run's current root (it carries the claims file's URI), or None."""
        epoch = self.pool(run_id).epoch
        if epoch == 0:
            return None
        events = self.events("RootPosted", from_block, argument_filters={"runId": run_id, "epoch": epoch})
        if not events:
            return None
        e = events[-1]
        return PostedRoot(e["runId"], e["epoch"], bytes(e["root"]), e["allocated"], e["proofsURI"], e["blockNumber"])

    def post_root(self, run_id: int, epoch: int, root: bytes, allocated: int, proofs_uri: str = "") -> TxReceipt:
        """Post epoch `epoch`'s cumulative root (coordinator only); `allocated` is the sum of the tree's leaves."""
        return self._send("postRoot", run_id, epoch, root, allocated, proofs_uri)

    def claim(self, run_id: int, account: str, cumulative_amount: int, proof: list[bytes]) -> tuple[int, TxReceipt]:
        """Claim for `account` (any sender; the coin goes to `account`); returns (amount paid, receipt)."""
        receipt = self._send("claim", run_id, Web3.to_checksum_address(account), cumulative_amount, proof)
        paid = self.events_in_receipt("Claimed", receipt)
        return (paid[0]["amount"] if paid else 0), receipt

    def fund(self, run_id: int, amount: int) -> TxReceipt:
        return self._send("fund", run_id, value=amount)

    def reclaim(self, run_id: int) -> TxReceipt:
        return self._send("reclaim", run_id)
