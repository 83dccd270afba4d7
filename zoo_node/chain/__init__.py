"""Chain clients (web3.py) for NodeRegistry, RunRegistry and RewardsDistributor, Merkle trees and the dev chain.

Layering: never imports torch or hivemind.
"""
