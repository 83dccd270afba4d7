"""The Python reward tree: OpenZeppelin's leaf and pair hashing, proofs, and bad input."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from zoo_node.chain.merkle import MerkleError, RewardTree, hash_pair, leaf_hash, verify_proof


def _accounts(n: int) -> list[str]:
    return ["0x" + keccak(text=f"account {i}")[-20:].hex() for i in range(n)]


def test_leaf_is_double_hashed_abi_encoding():
    account = _accounts(1)[0]
    expected = keccak(keccak(encode(["address", "uint256"], [account, 12345])))
    assert leaf_hash(account, 12345) == expected
    assert leaf_hash(account, 12345) != keccak(encode(["address", "uint256"], [account, 12345]))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1001])
def test_every_proof_verifies_and_root_ignores_order(n):
    leaves = {a: (i + 1) * 10**15 for i, a in enumerate(_accounts(n))}
    tree = RewardTree.build(leaves)
    assert RewardTree.build(list(reversed(list(leaves.items())))).root == tree.root
    assert tree.total == sum(leaves.values())
    for account, amount in leaves.items():
        proof = tree.proof(account)
        assert verify_proof(proof, tree.root, leaf_hash(account, amount))
        assert not verify_proof(proof, tree.root, leaf_hash(account, amount + 1))
        assert len(proof) <= max(1, (n - 1).bit_length())


def test_two_leaves_root_is_their_sorted_pair_hash():
    a, b = _accounts(2)
    tree = RewardTree.build({a: 1, b: 2})
    assert tree.root == hash_pair(leaf_hash(a, 1), leaf_hash(b, 2)) == hash_pair(leaf_hash(b, 2), leaf_hash(a, 1))


def test_bad_leaves_are_refused_with_the_reason():
    a = _accounts(1)[0]
    with pytest.raises(MerkleError, match="appears twice"):
        RewardTree.build([(a, 1), (a.upper().replace("0X", "0x"), 2)])
    with pytest.raises(MerkleError, match="not an address"):
        RewardTree.build({"0x1234": 1})
    with pytest.raises(MerkleError, match="cumulative amount"):
        RewardTree.build({a: -1})
    with pytest.raises(MerkleError, match="at least one leaf"):
        RewardTree.build({})
    with pytest.raises(MerkleError, match="not in the reward tree"):
        RewardTree.build({a: 1}).proof(_accounts(2)[1])
