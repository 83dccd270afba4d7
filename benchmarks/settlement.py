#!/usr/bin/env python3
"""Cost of settling an epoch's receipts, against the floor of the work: verifying their Ed25519 co-signatures.

An epoch of R averaging rounds in groups of G nodes is announced G times per round (every member gossips its copy),
each copy carrying G co-signatures. Settlement must at least verify each distinct signature once (R x G Ed25519
verifications: the peer, measured in the same run). The ratio `settle / floor` shows what settlement costs beyond
the cryptography (parsing, checks, sharing, the Merkle tree); the goal is under 4x.

Usage: python benchmarks/settlement.py [--rounds 300] [--group 3] [--write docs/benchmarks/accounting.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from zoo_node.control.messages import ControlKey, ed25519_public_from_peer_id, sign_worker_binding
from zoo_node.coordinator.nodes import RegisteredNode, StaticNodeDirectory, WorkerBindings
from zoo_node.coordinator.settlement import Announcement, EpochTerms, settle_epoch
from zoo_node.receipts import Receipt, RoundBody, cosign, signer_peer_id

GOAL = 4.0


def build(rounds: int, group: int, nodes: int) -> tuple[list[Announcement], StaticNodeDirectory, list[tuple]]:
    controls = [ControlKey.from_seed(os.urandom(32)) for _ in range(nodes)]
    datas = [Ed25519PrivateKey.from_private_bytes(os.urandom(32)) for _ in range(nodes)]
    bindings = WorkerBindings()
    for control, data in zip(controls, datas, strict=True):
        bindings.add_signed(sign_worker_binding(control, 1, signer_peer_id(data)), control.peer_id, 1)
    registered = [RegisteredNode(c.peer_id, Account.create().address, "NVIDIA H100 80GB HBM3", 8) for c in controls]
    announcements: list[Announcement] = []
    signatures: list[tuple] = []
    for rnd in range(rounds):
        members = [(rnd + i) % nodes for i in range(group)]
        body = RoundBody.of(1, "stage/0", rnd, {signer_peer_id(datas[m]): 16 + m for m in members})
        sigs = {signer_peer_id(datas[m]): cosign(body, datas[m]) for m in members}
        signatures += [(peer, body.digest, sig) for peer, sig in sigs.items()]
        for m in members:
            receipt = Receipt(body, sigs, tokens=1024, seconds=30.0, device="NVIDIA H100 80GB HBM3 x8")
            announcements.append(Announcement(controls[m].peer_id, receipt.to_bytes()))
    return announcements, StaticNodeDirectory(registered, bindings), signatures


def measure(rounds: int, group: int, nodes: int) -> dict[str, float]:
    announcements, directory, signatures = build(rounds, group, nodes)
    terms = EpochTerms(1, 1, 10**21, 3600.0, {"stage/0": 10**9})
    # The floor: each distinct co-signature verified once (key decoded from the PeerID, as settlement does).
    start = time.perf_counter()
    for peer, digest, sig in signatures:
        ed25519_public_from_peer_id(peer).verify(sig, digest)
    floor = time.perf_counter() - start
    start = time.perf_counter()
    settlement = settle_epoch(terms, announcements, directory)
    settle = time.perf_counter() - start
    assert len(settlement.credits) == len(announcements) and not settlement.rejections
    return {
        "announcements": len(announcements),
        "signatures": len(signatures),
        "floor_s": floor,
        "settle_s": settle,
        "ratio": settle / floor,
        "per_receipt_ms": 1000 * settle / len(announcements),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--group", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--write", type=Path, help="write the figures as a Markdown page")
    args = parser.parse_args()
    f = measure(args.rounds, args.group, args.nodes)
    verdict = "meets" if f["ratio"] <= GOAL else "MISSES"
    lines = [
        f"settle {f['announcements']:.0f} announced receipts ({args.rounds} rounds x {args.group} copies, "
        f"{args.nodes} nodes): {f['settle_s']:.3f} s ({f['per_receipt_ms']:.2f} ms per receipt)",
        f"peer: verify the {f['signatures']:.0f} distinct co-signatures once: {f['floor_s']:.3f} s",
        f"ratio settle / peer: {f['ratio']:.2f} ({verdict} the goal of {GOAL:g}x)",
    ]
    print("\n".join(lines))
    if args.write:
        args.write.write_text(
            "# Accounting benchmarks\n\n"
            "`python benchmarks/settlement.py` (settlement of one epoch's receipts against the floor of verifying\n"
            "their co-signatures once, measured in the same run):\n\n"
            + "".join(f"- {line}\n" for line in lines)
            + f"\nMachine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.\n"
        )
    return 0 if f["ratio"] <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
