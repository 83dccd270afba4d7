"""Deploy the three contracts and wire them together."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo_node.chain.artifacts import load_artifact
from zoo_node.chain.deployment import Deployment
from zoo_node.chain.errors import ChainError
from zoo_node.chain.rpc import Rpc
from zoo_node.chain.sender import TransactionSender

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

# Defaults of `zoo-node chain deploy`: one coin of stake, a week of unbonding.
DEFAULT_MIN_STAKE_WEI = 10**18
DEFAULT_UNBONDING_PERIOD_S = 7 * 24 * 3600


def deploy_contracts(
    rpc: Rpc,
    account: LocalAccount,
    *,
    min_stake_wei: int = DEFAULT_MIN_STAKE_WEI,
    unbonding_period_s: int = DEFAULT_UNBONDING_PERIOD_S,
    sender: TransactionSender | None = None,
) -> Deployment:
    """RunRegistry, then RewardsDistributor(runRegistry), `setRewardPool`, then NodeRegistry(runRegistry, ...).

    `account` pays and owns the registries (it may sweep slashed stake). Returns the deployment (not yet written).
    """
    if min_stake_wei < 0 or unbonding_period_s < 0:
        raise ChainError("min stake and unbonding period must not be negative")
    sender = sender or TransactionSender(rpc, account)
    w3 = rpc.w3

    def deploy(name: str, *args: object) -> tuple[str, int]:
        art = load_artifact(name)
        factory = w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        receipt = sender.transact(factory.constructor(*args), what=f"deploy {name}")
        return receipt["contractAddress"], receipt["blockNumber"]

    run_registry, first_block = deploy("RunRegistry")
    distributor, _ = deploy("RewardsDistributor", run_registry)
    registry = w3.eth.contract(address=run_registry, abi=load_artifact("RunRegistry").abi)
    sender.transact(registry.functions.setRewardPool(distributor), what="RunRegistry.setRewardPool")
    node_registry, _ = deploy("NodeRegistry", run_registry, min_stake_wei, unbonding_period_s)
    return Deployment(
        chain_id=rpc.call(lambda: w3.eth.chain_id, "chain id"),
        node_registry=node_registry,
        run_registry=run_registry,
        rewards_distributor=distributor,
        block=first_block,
        deployer=account.address,
        min_stake_wei=min_stake_wei,
        unbonding_period_s=unbonding_period_s,
        rpc_url=rpc.url,
    )
