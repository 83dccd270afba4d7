"""Sending transactions from one local account: nonces, gas, fees, receipts, reverts.

- Nonces are allocated under a lock, so concurrent senders get consecutive nonces; a nonce is only used up once a
  node accepted the transaction. After an uncertain send (the RPC vanished) the next send asks the chain again.
- A send that fails to reach the RPC is retried with the same signed bytes (same nonce, same hash): if the first
  attempt did arrive, the retry is answered "already known" / "nonce too low" and we find our hash on chain, so a
  transaction is never sent twice.
- Gas is the node's estimate times a margin; the estimate is where most reverts surface, before anything is sent.
- A mined transaction that reverted is replayed as a call at its block to recover the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3RPCError
from web3.types import TxReceipt

from zoo_node.chain.errors import ChainError, ContractRevert, RpcUnavailable, TransactionTimeout
from zoo_node.chain.revert import decode_revert, revert_from_exception
from zoo_node.chain.rpc import Rpc, is_connection_error, short_error

log = logging.getLogger(__name__)

GAS_MARGIN = 1.2
_ALREADY_SENT = ("already known", "known transaction", "already imported", "nonce too low", "alreadyknown")


class TransactionSender:
    """Signs with `account` and sends through `rpc`; one instance per account and process."""

    def __init__(
        self,
        rpc: Rpc,
        account: LocalAccount,
        *,
        gas_margin: float = GAS_MARGIN,
        receipt_timeout_s: float = 120.0,
        poll_interval_s: float = 0.05,
    ) -> None:
        self.rpc = rpc
        self.account = account
        self.gas_margin = gas_margin
        self.receipt_timeout_s = receipt_timeout_s
        self.poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._next_nonce: int | None = None
        self._chain_id: int | None = None

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def w3(self) -> Web3:
        return self.rpc.w3

    def transact(self, fn: Any, *, value: int = 0, what: str = "transaction") -> TxReceipt:
        """Estimate, sign, send and await `fn` (a bound contract function or constructor); return the receipt.

        Raises `ContractRevert` (with the reason), `RpcUnavailable` or `TransactionTimeout`.
        """
        params = {"from": self.address, "value": value}
        estimate = self.rpc.call(lambda: fn.estimate_gas(params), f"{what}: estimate gas")
        gas = int(estimate * self.gas_margin) + 10_000
        tx_hash = self._sign_and_send(fn, params, gas, what)
        receipt = self.wait_for_receipt(tx_hash, what=what)
        if receipt["status"] != 1:
            raise self._revert_reason(fn, params, receipt, what)
        return receipt

    def _sign_and_send(self, fn: Any, params: dict[str, Any], gas: int, what: str) -> bytes:
        with self._lock:
            if self._chain_id is None:
                self._chain_id = self.rpc.call(lambda: self.w3.eth.chain_id, "chain id")
            for _ in range(2):  # a second round only after someone else used our nonce
                if self._next_nonce is None:
                    self._next_nonce = self.rpc.call(
                        lambda: self.w3.eth.get_transaction_count(self.address, "pending"), f"{what}: nonce"
                    )
                nonce = self._next_nonce
                tx = self.rpc.call(
                    lambda nonce=nonce: fn.build_transaction(
                        {**params, "nonce": nonce, "gas": gas, "chainId": self._chain_id}
                    ),
                    f"{what}: build",
                )
                signed = self.account.sign_transaction(tx)
                outcome = self._send_raw(signed.raw_transaction, signed.hash, nonce, what)
                if outcome == "sent":
                    self._next_nonce = nonce + 1
                    return bytes(signed.hash)
                self._next_nonce = None  # "nonce too low" for a transaction that is not ours: resynchronise
            raise ChainError(f"{what}: the nonce of {self.address} keeps being taken by another sender")

    def _send_raw(self, raw: bytes, tx_hash: bytes, nonce: int, what: str) -> str:
        """Send `raw`, retrying on connection errors; "sent" once the node has it, "nonce-taken" if not ours."""
        delays = self.rpc.policy.delays()
        maybe_arrived = False
        for attempt in range(len(delays) + 1):
            try:
                self.w3.eth.send_raw_transaction(raw)
                return "sent"
            except Web3RPCError as exc:
                message = str(exc).lower()
                if any(marker in message for marker in _ALREADY_SENT):
                    if self._is_known(tx_hash):
                        log.info("chain: %s: %s was already sent (nonce %d)", what, Web3.to_hex(tx_hash), nonce)
                        return "sent"
                    if "nonce too low" in message:
                        return "nonce-taken"
                revert = revert_from_exception(exc)
                raise ChainError(f"{what}: the node refused the transaction: {revert or exc}") from None
            except Exception as exc:
                if not is_connection_error(exc):
                    revert = revert_from_exception(exc)
                    if revert is not None:
                        raise revert from None
                    raise
                maybe_arrived = True
                if attempt == len(delays):
                    break
                log.warning("chain: %s: send: %s; retry %d/%d", what, short_error(exc), attempt + 1, len(delays))
                time.sleep(delays[attempt])
        if maybe_arrived:
            self._next_nonce = None  # it may have arrived: ask the chain next time
        raise RpcUnavailable(
            f"{self.rpc.url}: {what}: the RPC is unreachable after {len(delays) + 1} attempts; transaction "
            f"{Web3.to_hex(tx_hash)} (nonce {nonce}) may or may not have been received: check it before resending"
        )

    def _is_known(self, tx_hash: bytes) -> bool:
        try:
            self.rpc.call(lambda: self.w3.eth.get_transaction(tx_hash), "look up a transaction")
        except TransactionNotFound:
            return False
        return True

    def wait_for_receipt(self, tx_hash: bytes, *, what: str = "transaction") -> TxReceipt:
        """Poll for the receipt until `receipt_timeout_s`; connection errors are retried within the policy."""
        deadline = time.monotonic() + self.receipt_timeout_s
        while True:
            try:
                return self.rpc.call(lambda: self.w3.eth.get_transaction_receipt(tx_hash), f"{what}: receipt")
            except TransactionNotFound:
                pass
            if time.monotonic() >= deadline:
                raise TransactionTimeout(
                    f"{what}: no receipt for {Web3.to_hex(tx_hash)} after {self.receipt_timeout_s:g} s "
                    "(it may still be mined; do not resend it with a new nonce)"
                )
            time.sleep(self.poll_interval_s)

    def _revert_reason(self, fn: Any, params: dict[str, Any], receipt: TxReceipt, what: str) -> ContractRevert:
        """The reason a mined transaction reverted: from the node's call trace where it has one (anvil, geth),
        else by replaying it as a call on the state before, then after, its block (eth-tester has no tracer)."""
        tx_hash = Web3.to_hex(receipt["transactionHash"])
        try:
            trace = self.rpc.call(
                lambda: self.w3.provider.make_request("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}]),
                f"{what}: trace",
            )
            output = (trace.get("result") or {}).get("output")
            if output:
                return decode_revert(output)
        except (ChainError, Web3RPCError, NotImplementedError, ValueError):
            pass
        for block in (max(receipt["blockNumber"] - 1, 0), receipt["blockNumber"]):
            try:
                self.rpc.call(lambda b=block: fn.call(params, block_identifier=b), f"{what}: replay")
            except ContractRevert as revert:
                return revert
            except (ChainError, Web3RPCError, AttributeError):  # AttributeError: a constructor has no .call
                break
        return ContractRevert(
            f"{what}: transaction {tx_hash} reverted (gas used {receipt['gasUsed']}); no reason could be recovered"
        )
