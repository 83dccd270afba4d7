"""An in-process chain (py-evm through eth-tester) with the contracts deployed: for tests that need no other
process. eth-tester is a dev dependency; the API matches the dev chain's where it can (`client`, `accounts`,
`snapshot`/`revert`, `increase_time`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo_node.chain.client import ChainClient
from zoo_node.chain.deploy import deploy_contracts
from zoo_node.chain.deployment import Deployment
from zoo_node.chain.devchain import DEV_MIN_STAKE_WEI, DEV_UNBONDING_PERIOD_S
from zoo_node.chain.rpc import RetryPolicy, Rpc

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

IN_PROCESS_URL = "in-process:py-evm"


class InProcessChain:
    """py-evm in this process, contracts deployed by `accounts[0]`; every account holds 1,000,000 coins."""

    def __init__(
        self,
        *,
        accounts: int = 10,
        min_stake_wei: int = DEV_MIN_STAKE_WEI,
        unbonding_period_s: int = DEV_UNBONDING_PERIOD_S,
    ) -> None:
        from eth_account import Account
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import Web3
        from web3.providers.eth_tester import EthereumTesterProvider

        self.backend = PyEVMBackend.from_mnemonic(
            "test test test test test test test test test test test junk", num_accounts=accounts
        )
        self.tester = EthereumTester(self.backend)
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        self.rpc = Rpc(self.w3, IN_PROCESS_URL, RetryPolicy(max_retries=0))
        self.accounts: list[LocalAccount] = [Account.from_key(k.to_bytes()) for k in self.backend.account_keys]
        self.deployment: Deployment = deploy_contracts(
            self.rpc, self.accounts[0], min_stake_wei=min_stake_wei, unbonding_period_s=unbonding_period_s
        )

    @property
    def deployer(self) -> LocalAccount:
        return self.accounts[0]

    def client(self, account: LocalAccount | None = None) -> ChainClient:
        """A `ChainClient` that sends as `account` (None: read-only)."""
        return ChainClient(self.rpc, self.deployment, account, receipt_timeout_s=10.0)

    def snapshot(self) -> int:
        return self.tester.take_snapshot()

    def revert(self, snapshot_id: int) -> None:
        self.tester.revert_to_snapshot(snapshot_id)

    def increase_time(self, seconds: int) -> None:
        """Move the clock forward and mine a block carrying the new time."""
        latest = self.w3.eth.get_block("latest")["timestamp"]
        self.tester.time_travel(latest + int(seconds))

    def fund(self, address: str, amount_wei: int) -> None:
        """Give `address` `amount_wei` more (a transfer from `accounts[-1]`)."""
        self.client(self.accounts[-1]).transfer(address, amount_wei)
