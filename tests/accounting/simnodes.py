"""Nodes with real keys for settlement tests: a control key (registered PeerID), a data-plane key (co-signs rounds),
an owner account, and the worker binding signed by the control key as the heartbeats carry it.

Rounds are co-signed with the real data-plane keys, exactly as workers do; what these helpers do not do is train:
the sample counts are chosen by the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from zoo_node.control.messages import ControlKey, sign_worker_binding
from zoo_node.coordinator.nodes import RegisteredNode, StaticNodeDirectory, WorkerBindings
from zoo_node.coordinator.settlement import Announcement
from zoo_node.receipts import Receipt, RoundBody, cosign, signer_peer_id


@dataclass(eq=False)  # hashable by identity: nodes key dicts of samples
class SimNode:
    control: ControlKey
    data_key: Ed25519PrivateKey
    owner: str
    gpu_model: str = "NVIDIA H100 80GB HBM3"
    gpu_count: int = 1

    @classmethod
    def new(cls, gpu_model: str = "NVIDIA H100 80GB HBM3", gpu_count: int = 1, owner: str | None = None) -> SimNode:
        return cls(
            ControlKey.from_seed(os.urandom(32)),
            Ed25519PrivateKey.from_private_bytes(os.urandom(32)),
            owner or Account.create().address,
            gpu_model,
            gpu_count,
        )

    @property
    def peer_id(self) -> str:
        return self.control.peer_id

    @property
    def worker(self) -> str:
        return signer_peer_id(self.data_key)

    def registered(self) -> RegisteredNode:
        return RegisteredNode(self.peer_id, self.owner, self.gpu_model, self.gpu_count)

    def bind(self, bindings: WorkerBindings, run_id: int) -> None:
        """Verify and record this node's signed worker binding, as the coordinator does from a heartbeat."""
        bindings.add_signed(sign_worker_binding(self.control, run_id, self.worker), self.peer_id, run_id)


def directory_of(registered: Iterable[SimNode], bound: Iterable[SimNode], run_id: int) -> StaticNodeDirectory:
    bindings = WorkerBindings()
    for node in bound:
        node.bind(bindings, run_id)
    return StaticNodeDirectory([n.registered() for n in registered], bindings)


def cosigned_round(
    run_id: int,
    shard: str,
    round: int,
    samples: Mapping[SimNode, int],
    *,
    seconds: float = 10.0,
    signers: Iterable[SimNode] | None = None,
) -> dict[SimNode, Receipt]:
    """Each member's own copy of one averaging round, co-signed by `signers` (default: every member)."""
    body = RoundBody.of(run_id, shard, round, {n.worker: s for n, s in samples.items()})
    signatures = {n.worker: cosign(body, n.data_key) for n in (samples if signers is None else signers)}
    return {
        n: Receipt(body, signatures, tokens=s * 64, flops=0.0, seconds=seconds, device=f"{n.gpu_model} x{n.gpu_count}")
        for n, s in samples.items()
    }


def announce(copies: Mapping[SimNode, Receipt]) -> list[Announcement]:
    """Every member announces its own copy (as each supervisor gossips what its worker journaled)."""
    return [Announcement(node.peer_id, receipt.to_bytes()) for node, receipt in copies.items()]
