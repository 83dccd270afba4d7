"""What the three typed clients share: a bound web3 contract, reads through the retrying RPC, sends through the
account's `TransactionSender`, and event queries by block range."""

from __future__ import annotations

from typing import Any

from web3.contract import Contract
from web3.types import TxReceipt

from zoo_node.chain.artifacts import load_artifact
from zoo_node.chain.errors import ChainError
from zoo_node.chain.rpc import Rpc
from zoo_node.chain.sender import TransactionSender

# Most public RPCs refuse eth_getLogs over more than a few thousand to ten thousand blocks.
LOG_CHUNK_BLOCKS = 5_000


class ContractClient:
    """Base of `NodeRegistryClient`, `RunRegistryClient` and `RewardsClient`."""

    contract_name = ""

    def __init__(self, rpc: Rpc, address: str, sender: TransactionSender | None = None) -> None:
        self.rpc = rpc
        self.address = address
        self.sender = sender
        self.contract: Contract = rpc.w3.eth.contract(address=address, abi=load_artifact(self.contract_name).abi)

    def _read(self, name: str, *args: Any) -> Any:
        fn = self.contract.functions[name](*args)
        return self.rpc.call(fn.call, f"{self.contract_name}.{name}")

    def _send(self, name: str, *args: Any, value: int = 0) -> TxReceipt:
        if self.sender is None:
            raise ChainError(f"{self.contract_name}.{name}: this client has no account to send transactions with")
        return self.sender.transact(
            self.contract.functions[name](*args), value=value, what=f"{self.contract_name}.{name}"
        )

    def events_in_receipt(self, event: str, receipt: TxReceipt) -> list[dict[str, Any]]:
        """Decoded `event` logs of this contract in a receipt."""
        from web3.logs import DISCARD

        logs = self.contract.events[event]().process_receipt(receipt, errors=DISCARD)
        return [_event_dict(log) for log in logs]

    def events(
        self,
        event: str,
        from_block: int,
        to_block: int | str = "latest",
        argument_filters: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Decoded `event` logs in `[from_block, to_block]`, queried in chunks, oldest first.

        Each is a dict of the event's arguments plus `event`, `blockNumber`, `transactionHash`, `logIndex`.
        """
        if to_block == "latest":
            to_block = self.rpc.call(lambda: self.rpc.w3.eth.block_number, "block number")
        assert isinstance(to_block, int)
        found: list[dict[str, Any]] = []
        start = from_block
        while start <= to_block:
            end = min(start + LOG_CHUNK_BLOCKS - 1, to_block)
            logs = self.rpc.call(
                lambda s=start, e=end: self.contract.events[event]().get_logs(
                    from_block=s, to_block=e, argument_filters=argument_filters
                ),
                f"{self.contract_name} {event} logs",
            )
            found.extend(_event_dict(log) for log in logs)
            start = end + 1
        return found


def _event_dict(log: Any) -> dict[str, Any]:
    return {
        **dict(log["args"]),
        "event": log["event"],
        "blockNumber": log["blockNumber"],
        "transactionHash": bytes(log["transactionHash"]),
        "logIndex": log["logIndex"],
    }
