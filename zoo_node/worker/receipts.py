"""Receipts: what each averaging round of a shard did, attested by the group that averaged.

A receipt lists the round's group members with each one's samples, tokens, FLOPs and seconds, as gathered through
hivemind's all-gather (every member sees the same list). Its digest (sha256 of the canonical JSON) is what group
members will co-sign with their data-plane keys (`signatures`, filled by the work-accounting layer).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class MemberWork:
    peer: str
    samples: int
    tokens: int
    flops: float
    seconds: float


@dataclass(frozen=True)
class Receipt:
    run: str
    shard: str
    round: int
    members: tuple[MemberWork, ...]
    averaged: bool  # False: no groupmate was found and the replica stepped on its own gradients
    signatures: dict[str, str] = field(default_factory=dict)  # peer -> signature of `digest` (co-signing, later)

    def body(self) -> dict:
        data = asdict(self)
        data.pop("signatures")
        data["members"] = sorted(data["members"], key=lambda m: m["peer"])
        return data

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.body(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def to_json(self) -> str:
        return json.dumps({**self.body(), "digest": self.digest, "signatures": self.signatures}, sort_keys=True)


ReceiptSink = Callable[[Receipt], None]


def receipt_samples(receipt: Receipt) -> dict[str, int]:
    """{member PeerID: samples}, the averaging weights every member gathered (the co-signed body's content)."""
    return {m.peer: m.samples for m in receipt.members}


class JsonlReceiptLog:
    """Appends receipts to a JSON-lines file (the worker's own record; the supervisor gets them via its hook)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, receipt: Receipt) -> None:
        with self._lock, self.path.open("a") as out:
            out.write(receipt.to_json() + "\n")


def read_receipts(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
