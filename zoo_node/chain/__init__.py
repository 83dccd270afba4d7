"""Chain clients (web3.py) for NodeRegistry, RunRegistry and RewardsDistributor, Merkle trees and the dev chain.

Entry points: `client.ChainClient` (`.nodes`, `.runs`, `.rewards`), `merkle.RewardTree`, `proofs.EpochClaims`,
`operator` (register / deregister / withdraw / rewards), `devchain.start_devchain`, `evm.InProcessChain`,
`errors` (`ContractRevert`, `RpcUnavailable`, ...). docs/chain.md describes the contracts and formats.

Layering: never imports torch or hivemind.
"""
