"""Cumulative reward Merkle trees, compatible with OpenZeppelin's MerkleProof (and its StandardMerkleTree).

A leaf is `keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))))` (hashed twice, so that a leaf
can never be mistaken for an inner node), inner nodes hash their two children in sorted order, and a proof lists the
siblings from the leaf up. Leaves are sorted by hash before building, so the root does not depend on input order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from eth_utils import keccak, to_checksum_address

from zoo_node.errors import ZooError

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class MerkleError(ZooError):
    """Bad leaves (duplicate or invalid account, negative amount) or an account that is not in the tree."""


def leaf_hash(account: str, cumulative_amount: int) -> bytes:
    """OpenZeppelin's standard leaf of `(address account, uint256 cumulativeAmount)`."""
    # abi.encode(address, uint256) is two 32-byte words; packing them by hand is ~20x faster than eth_abi.encode,
    # which matters for trees of 10,000s of operators (tests compare the two).
    word = bytes(12) + bytes.fromhex(account[-40:]) + cumulative_amount.to_bytes(32, "big")
    return keccak(keccak(word))


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


def verify_proof(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """What `MerkleProof.verify` computes, in Python."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root


@dataclass(frozen=True)
class RewardTree:
    """A tree over `account -> cumulative amount (wei)`; build it with `RewardTree.build`."""

    amounts: Mapping[str, int]  # lower-case 0x account -> cumulative amount
    layers: tuple[tuple[bytes, ...], ...]  # layers[0]: sorted leaf hashes; layers[-1]: (root,)
    _index: Mapping[bytes, int] = field(repr=False)

    @classmethod
    def build(cls, leaves: Mapping[str, int] | Iterable[tuple[str, int]]) -> RewardTree:
        items = leaves.items() if isinstance(leaves, Mapping) else leaves
        amounts: dict[str, int] = {}
        for account, amount in items:
            # Accounts are taken case-insensitively (no EIP-55 checksum check: a keccak per leaf would double the
            # time to build a tree of 10,000s of operators).
            if not isinstance(account, str) or not _ADDRESS.fullmatch(account):
                raise MerkleError(f"not an address: {account!r}")
            if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount < 2**256:
                raise MerkleError(f"{account}: the cumulative amount must be an integer in [0, 2**256), got {amount!r}")
            key = account.lower()
            if key in amounts:
                raise MerkleError(f"{to_checksum_address(key)}: appears twice")
            amounts[key] = amount
        if not amounts:
            raise MerkleError("a reward tree needs at least one leaf")
        level = tuple(sorted(leaf_hash(a, v) for a, v in amounts.items()))
        layers = [level]
        while len(level) > 1:
            pairs = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                pairs.append(level[-1])  # an odd node moves up unchanged (it simply has no sibling on this level)
            level = tuple(pairs)
            layers.append(level)
        return cls(amounts, tuple(layers), {h: i for i, h in enumerate(layers[0])})

    @property
    def root(self) -> bytes:
        return self.layers[-1][0]

    @property
    def total(self) -> int:
        """Sum of all leaves: what `postRoot` calls `allocated`."""
        return sum(self.amounts.values())

    def amount(self, account: str) -> int:
        try:
            return self.amounts[account.lower()]
        except (KeyError, AttributeError):
            raise MerkleError(f"{account}: not in the reward tree") from None

    def proof(self, account: str) -> list[bytes]:
        """Siblings from the leaf of `account` up to the root."""
        index = self._index[leaf_hash(account, self.amount(account))]
        proof = []
        for layer in self.layers[:-1]:
            sibling = index ^ 1
            if sibling < len(layer):
                proof.append(layer[sibling])
            index //= 2
        return proof
