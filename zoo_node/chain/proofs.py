"""The claims file of one posted epoch: every account's cumulative amount and proof, published by the coordinator
at the `proofsURI` of its `RootPosted` event, read by `zoo-node rewards show|claim`.

JSON: `{"version": 1, "run_id": 1, "epoch": 3, "root": "0x..", "allocated": "123",
"claims": {"0xAccount": {"amount": "100", "proof": ["0x..", ...]}}}` (amounts are decimal strings: JSON numbers
lose precision above 2**53 in many readers).
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from eth_utils import is_address, to_checksum_address
from web3 import Web3

from zoo_node.chain.errors import ChainError
from zoo_node.chain.merkle import RewardTree, leaf_hash, verify_proof

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Claim:
    amount: int
    proof: list[bytes]


@dataclass(frozen=True)
class EpochClaims:
    run_id: int
    epoch: int
    root: bytes
    allocated: int
    claims: dict[str, Claim]  # checksummed account -> claim

    @classmethod
    def from_tree(cls, run_id: int, epoch: int, tree: RewardTree) -> EpochClaims:
        claims = {
            to_checksum_address(account): Claim(amount, tree.proof(account)) for account, amount in tree.amounts.items()
        }
        return cls(run_id, epoch, tree.root, tree.total, claims)

    def claim_of(self, account: str) -> Claim | None:
        return self.claims.get(to_checksum_address(account))

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "run_id": self.run_id,
            "epoch": self.epoch,
            "root": Web3.to_hex(self.root),
            "allocated": str(self.allocated),
            "claims": {
                account: {"amount": str(c.amount), "proof": [Web3.to_hex(p) for p in c.proof]}
                for account, c in sorted(self.claims.items())
            },
        }

    def write(self, path: Path) -> Path:
        """Write the claims file atomically; returns its absolute path (`.as_uri()` is what `postRoot` takes)."""
        path = Path(path).absolute()
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            raise ChainError(f"{path}: cannot write the claims file: {exc.strerror}") from None
        return path

    @classmethod
    def from_dict(cls, data: Any, source: str) -> EpochClaims:
        try:
            if data["version"] != FORMAT_VERSION:
                raise ChainError(f"{source}: unsupported claims file version {data['version']!r}")
            claims = {}
            for account, entry in data["claims"].items():
                if not is_address(account):
                    raise ChainError(f"{source}: not an address: {account!r}")
                claims[to_checksum_address(account)] = Claim(
                    int(entry["amount"]), [bytes.fromhex(p.removeprefix("0x")) for p in entry["proof"]]
                )
            return cls(
                int(data["run_id"]),
                int(data["epoch"]),
                bytes.fromhex(data["root"].removeprefix("0x")),
                int(data["allocated"]),
                claims,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ChainError(f"{source}: malformed claims file ({type(exc).__name__}: {exc})") from None

    def check(self, account: str) -> Claim:
        """The account's claim, after checking its proof against the root; `ChainError` if absent or invalid."""
        claim = self.claim_of(account)
        if claim is None:
            raise ChainError(f"{account} has no reward in run {self.run_id} epoch {self.epoch}")
        if not verify_proof(claim.proof, self.root, leaf_hash(account, claim.amount)):
            raise ChainError(f"the claims file's proof for {account} does not match root {Web3.to_hex(self.root)}")
        return claim


def load_claims(location: str, *, timeout_s: float = 10.0) -> EpochClaims:
    """Read a claims file from a path, a `file://` URI or an `http(s)://` URL."""
    parsed = urlparse(location)
    try:
        if parsed.scheme in ("http", "https"):
            with urllib.request.urlopen(location, timeout=timeout_s) as response:
                text = response.read().decode()
        elif parsed.scheme in ("", "file"):
            text = Path(unquote(parsed.path) if parsed.scheme else location).read_text()
        else:
            raise ChainError(f"{location}: unsupported claims file location (use a path, file:// or http(s)://)")
    except OSError as exc:
        raise ChainError(f"{location}: cannot read the claims file: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ChainError(f"{location}: the claims file is not valid JSON") from None
    return EpochClaims.from_dict(data, location)
