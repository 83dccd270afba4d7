"""`ChainClient`: the three contract clients over one RPC connection, optionally with an account that sends."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from web3 import Web3
from web3.types import TxReceipt

from zoo_node.chain.deployment import Deployment, load_deployment
from zoo_node.chain.errors import ChainError
from zoo_node.chain.node_registry import NodeRegistryClient
from zoo_node.chain.rewards import RewardsClient
from zoo_node.chain.rpc import RetryPolicy, Rpc, connect_http
from zoo_node.chain.run_registry import RunRegistryClient
from zoo_node.chain.sender import TransactionSender

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from zoo_node.config import NodeConfig


class ChainClient:
    """`nodes`, `runs` and `rewards` clients; transactions are sent by `account` (None: read-only)."""

    def __init__(
        self,
        rpc: Rpc,
        deployment: Deployment,
        account: LocalAccount | None = None,
        *,
        receipt_timeout_s: float = 120.0,
    ) -> None:
        self.rpc = rpc
        self.deployment = deployment
        self.account = account
        self.sender = TransactionSender(rpc, account, receipt_timeout_s=receipt_timeout_s) if account else None
        self.nodes = NodeRegistryClient(rpc, deployment.node_registry, self.sender)
        self.runs = RunRegistryClient(rpc, deployment.run_registry, self.sender)
        self.rewards = RewardsClient(rpc, deployment.rewards_distributor, self.sender)

    @classmethod
    def connect(
        cls,
        rpc_url: str,
        deployment: Deployment | Path,
        account: LocalAccount | None = None,
        *,
        timeout_s: float = 10.0,
        policy: RetryPolicy | None = None,
        receipt_timeout_s: float = 120.0,
        check: bool = True,
    ) -> ChainClient:
        """Connect over HTTP; with `check`, verify the chain id and that the contracts exist."""
        if not isinstance(deployment, Deployment):
            deployment = load_deployment(deployment)
        rpc = Rpc(connect_http(rpc_url, timeout_s=timeout_s), rpc_url, policy)
        client = cls(rpc, deployment, account, receipt_timeout_s=receipt_timeout_s)
        if check:
            client.check_deployment()
        return client

    @classmethod
    def from_config(
        cls, config: NodeConfig, home: Path, account: LocalAccount | None = None, *, check: bool = True
    ) -> ChainClient:
        """Connect as `config.chain` says (RPC URL, deployment file relative to the home, timeouts, retries)."""
        from zoo_node.config import resolve_in_home

        chain = config.chain
        if chain.deployment_file is None:
            raise ChainError(
                "chain.deployment_file is not set: point it at the deployment file of `zoo-node chain deploy` "
                "(or ZOO_NODE_CHAIN__DEPLOYMENT_FILE)"
            )
        return cls.connect(
            chain.rpc_url,
            resolve_in_home(Path(home), chain.deployment_file),
            account,
            timeout_s=chain.request_timeout_s,
            policy=RetryPolicy(max_retries=chain.max_retries),
            receipt_timeout_s=chain.receipt_timeout_s,
            check=check,
        )

    @property
    def w3(self) -> Web3:
        return self.rpc.w3

    def check_deployment(self) -> None:
        """`ChainError` if the RPC serves another chain than the deployment's, or the contracts are not there."""
        chain_id = self.rpc.call(lambda: self.w3.eth.chain_id, "chain id")
        if chain_id != self.deployment.chain_id:
            raise ChainError(
                f"{self.rpc.url} serves chain id {chain_id}, the deployment is for chain id {self.deployment.chain_id}"
            )
        for name, address in (
            ("NodeRegistry", self.deployment.node_registry),
            ("RunRegistry", self.deployment.run_registry),
            ("RewardsDistributor", self.deployment.rewards_distributor),
        ):
            code = self.rpc.call(lambda a=address: self.w3.eth.get_code(a), "get code")
            if len(code) == 0:
                raise ChainError(
                    f"{self.rpc.url}: no {name} contract at {address} (wrong deployment file, or the chain was reset?)"
                )

    def block_number(self) -> int:
        return self.rpc.call(lambda: self.w3.eth.block_number, "block number")

    def balance(self, address: str) -> int:
        return self.rpc.call(lambda: self.w3.eth.get_balance(address), "balance")

    def transfer(self, to: str, amount: int) -> TxReceipt:
        """Send `amount` wei of the native coin to `to`."""
        if self.sender is None:
            raise ChainError("transfer: this client has no account to send transactions with")
        return self.sender.transact(_ValueTransfer(self.w3, to), value=amount, what=f"transfer to {to}")


class _ValueTransfer:
    """A plain coin transfer, shaped like a contract function for `TransactionSender.transact`."""

    def __init__(self, w3: Web3, to: str) -> None:
        self.w3 = w3
        self.to = Web3.to_checksum_address(to)

    def estimate_gas(self, params: dict[str, Any]) -> int:
        return self.w3.eth.estimate_gas({**params, "to": self.to})

    def build_transaction(self, params: dict[str, Any]) -> dict[str, Any]:
        base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas", 0)
        tip = self.w3.eth.max_priority_fee
        return {**params, "to": self.to, "maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base_fee + tip}
